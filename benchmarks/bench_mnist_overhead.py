"""Where the coded bits of MNIST strings go beyond their information content.

For each model trained by `make bench-mnist` (workspace/bench/mnist/noisy_lmbda_<λ>, rebuilt
from its checkpoint with the current code) on the first `--digits` test digits: information
under the continuous prior, under the integer CDF tables, escapes per digit, and actual bits
written by the portable coder. Then synthetic 50-symbol strings through the same coder, to
see what the one-lane rANS layout (state starting at 1) does to short strings: a peaked table
with 0–8 rare symbols, and a moderate table (p = .6/.3/.1) with k symbols of p = .3.

Writes benchmarks/results/mnist_overhead.json. Run: `make bench-mnist-overhead` (~1 min, after
`make bench-mnist`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def model_overhead(model_dir: Path, lmbda: float, digits: np.ndarray) -> dict:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from codec.models.mnist import MNISTCodec, to_unit_float  # pylint: disable=import-outside-toplevel
    from codec.models.mnist_train import MnistTrainConfig, build_trainer  # pylint: disable=import-outside-toplevel
    trainer = build_trainer(MnistTrainConfig(lmbda=lmbda))
    checkpoint = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    tf.train.Checkpoint(trainer=trainer).restore(checkpoint).expect_partial()
    codec = MNISTCodec(trainer)
    model = codec.entropy_model
    y = codec.analysis_transform(to_unit_float(tf.constant(digits)))
    _, continuous = model(y, training=False)
    symbols = model.symbols(y[:, None, :]).numpy()
    pmf_length = model._cdf_length.numpy() - 2  # pylint: disable=protected-access
    escapes = ((symbols < 0) | (symbols >= pmf_length[None, None, :])).sum(axis=(1, 2))
    coded = np.array([8 * len(s) for s in model.compress(y).numpy()])
    return {"lambda": lmbda, "digits": len(digits),
            "information_bits_continuous_prior": float(continuous.numpy().mean()),
            "information_bits_integer_tables": float(
                model.table_information_bits(y[:, None, :]).numpy().mean()),
            "escapes_per_digit": float(escapes.mean()), "coded_bits": float(coded.mean()),
            "dead_channels": int((pmf_length <= 3).sum()), "channels": int(len(pmf_length))}


def synthetic(pmf: list[float], counts: list[int], symbol: int) -> list[dict]:
    """50 channels with one table `pmf`: all symbols 0 except `count` of `symbol`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel
    from codec.entropy.coders import get_coder  # pylint: disable=import-outside-toplevel
    precision, channels = 12, 50
    cdf = tco.pmf_to_quantized_cdf(np.append(np.float32(pmf), 0.).astype(np.float32),
                                   precision=precision).numpy()
    table = np.concatenate([np.concatenate([[-precision], cdf]).astype(np.int32)] * channels)
    cost = -np.log2(np.diff(cdf) / 2 ** precision)
    rows = []
    for count in counts:
        symbols = np.zeros((1, 1, channels), np.int32)
        symbols[0, 0, :count] = symbol
        string = get_coder("portable").encode(tf.constant(symbols), tf.constant(table))
        rows.append({"pmf": pmf, "rare_symbol": symbol, "count": count,
                     "table_information_bits": float((channels - count) * cost[0]
                                                     + count * cost[symbol]),
                     "coded_bits": 8 * len(string.numpy()[0])})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(ROOT / "workspace" / "bench" / "mnist"))
    parser.add_argument("--digits", type=int, default=2000)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "mnist_overhead.json"))
    args = parser.parse_args(argv)
    from codec.data.datasets import mnist_arrays  # pylint: disable=import-outside-toplevel
    digits, _ = mnist_arrays(f"test[:{args.digits}]")
    models = []
    for model_dir in sorted(Path(args.workdir).glob("noisy_lmbda_*")):
        lmbda = float(model_dir.name.rsplit("_", 1)[1])
        models.append(model_overhead(model_dir, lmbda, digits))
        m = models[-1]
        print(f"λ={lmbda:g}: information {m['information_bits_continuous_prior']:.2f} bits "
              f"(tables {m['information_bits_integer_tables']:.2f}), escapes "
              f"{m['escapes_per_digit']:.3f}/digit, coded {m['coded_bits']:.2f} bits")
    strings = (synthetic([.95] + [.05 / 20] * 20, [0, 1, 2, 4, 8], 5)
               + synthetic([.6, .3, .1], [1, 2, 3, 6], 1))
    for row in strings:
        print(f"synthetic {row['count']} × symbol {row['rare_symbol']} of {row['pmf'][:3]}…: "
              f"information {row['table_information_bits']:.1f}, coded {row['coded_bits']}")
    if not models:
        print(f"no models under {args.workdir}: run `make bench-mnist` first")
    Path(args.output).write_text(json.dumps({
        "command": "make bench-mnist-overhead", "models": models, "synthetic": strings,
        "units": "bits per string (digit)"}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
