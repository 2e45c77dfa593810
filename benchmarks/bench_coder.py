"""Entropy-coder benchmark: `portable` (core TF ops rANS) vs `tfc` (TFC's C++ range coder).

Both coders get the same integer symbols and the same CDF tables:
 (a) MNIST: the 10,000 test digits' latents (50 symbols each) of a trained tutorial codec
     (λ = 2000, `--epochs` epochs; cached under .cache/bench_coder/), one string per digit;
 (b) Kodak-size: `--kodak-images` × 48×32 positions × 192 channels (294,912 symbols per
     string), drawn from discretized Laplace priors with log-uniform scales (a trained image
     codec's latents look like this), tables quantized from the same priors, with rare escapes.
Per coder: bytes per string vs the tables' information content (bits), encode and decode
throughput (symbols/s, best of `--repeats`, both inside tf.function as in an export).
Then a soak fuzz: `--fuzz` random / mutated strings through the portable decoder (the process
surviving is the crash check; the check's acceptance rate is reported).

Writes benchmarks/results/coder.json — top-level `kodak_size_ratio` (portable / TFC bytes),
`kodak_throughput_ratio` (portable / TFC, encode+decode symbols/s), `mnist_extra_bytes_per_string`
(portable − TFC, mean bytes) — and coder.png.
Targets (issue 5): kodak_size_ratio ≤ 1.01, mnist_extra_bytes_per_string ≤ 1,
kodak_throughput_ratio ≥ 1.0. Run: `make bench-coder` (≈ 5 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from codec.entropy.coders import get_coder  # noqa: E402

CODERS = ("portable", "tfc")


def information_bits(symbols: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Ideal code length (bits) per string `[B]` of table symbols `[B, M, C]` under `cdf`:
    −log2(freq / 2^P) per in-range symbol; escapes cost the escape symbol plus the overflow's
    4-bit chunks (what both coders must spend at least, up to their chunk layout)."""
    starts = np.flatnonzero(cdf < 0)
    precision = -cdf[starts[0]]
    rows = [cdf[s + 1:e] for s, e in zip(starts, list(starts[1:]) + [len(cdf)])]
    bits = np.zeros(symbols.shape[0])
    for c, row in enumerate(rows):
        freq = np.diff(row)                       # pmf_length regular symbols + escape
        s = symbols[:, :, c]
        escape = (s < 0) | (s >= len(freq) - 1)
        index = np.where(escape, len(freq) - 1, s)
        cost = precision - np.log2(freq[index])
        s64 = s.astype(np.int64)
        over = np.maximum(np.where(s64 < 0, -2 * s64 - 1, 2 * (s64 - len(freq) + 1)), 0)
        cost = cost + np.where(escape, 4 * np.ceil(np.log2(over + 2) / 4), 0)
        bits += cost.sum(axis=1)
    return bits


def time_coder(name: str, symbols: np.ndarray, cdf: tf.Tensor, repeats: int) -> dict:
    """Bytes and throughput of one coder on `symbols[B, M, C]` (round trip verified)."""
    coder = get_coder(name)
    batch, positions, channels = symbols.shape
    encode = tf.function(lambda s: coder.encode(s, cdf))
    decode = tf.function(lambda t: coder.decode(t, positions, channels, cdf))
    symbols_tensor = tf.constant(symbols)
    strings = encode(symbols_tensor)
    decoded, ok = decode(strings)                 # also warms up both traces
    if not (ok.numpy().all() and np.array_equal(decoded.numpy(), symbols)):
        raise AssertionError(f"{name}: round trip failed")
    encode_s, decode_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(symbols_tensor).numpy()
        encode_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode(strings)[0].numpy()
        decode_s.append(time.perf_counter() - start)
    lengths = np.array([len(s) for s in strings.numpy()])
    n = symbols.size
    return {"bytes_per_string": float(lengths.mean()), "total_bytes": int(lengths.sum()),
            "encode_seconds": min(encode_s), "decode_seconds": min(decode_s),
            "encode_symbols_per_s": n / min(encode_s), "decode_symbols_per_s": n / min(decode_s),
            "round_trip_symbols_per_s": n / (min(encode_s) + min(decode_s))}


def compare(symbols: np.ndarray, cdf_np: np.ndarray, repeats: int) -> dict:
    cdf = tf.constant(cdf_np)
    info = information_bits(symbols, cdf_np)
    out = {"strings": int(symbols.shape[0]), "symbols_per_string": int(symbols[0].size),
           "information_bytes_per_string": float(info.mean() / 8)}
    for name in CODERS:
        out[name] = time_coder(name, symbols, cdf, repeats)
        print(f"  {name:8s} {out[name]['bytes_per_string']:10.2f} B/string  "
              f"enc {out[name]['encode_symbols_per_s'] / 1e6:7.2f} M sym/s  "
              f"dec {out[name]['decode_symbols_per_s'] / 1e6:7.2f} M sym/s", flush=True)
    return out


def mnist_case(args) -> tuple[np.ndarray, np.ndarray]:
    """Latent symbols `[10000, 1, 50]` of the MNIST test set and the model's CDF tables."""
    from codec.data.datasets import mnist_arrays
    from codec.models.mnist import MNISTCodec
    from codec.models.mnist_train import MnistTrainConfig, build_trainer, train_mnist
    model_dir = Path(args.model_dir)
    config = MnistTrainConfig(lmbda=2000., epochs=args.epochs, verbose=2)
    if not (model_dir / "saved_model" / "saved_model.pb").exists():
        print(f"training the MNIST codec ({args.epochs} epochs) into {model_dir}", flush=True)
        train_mnist(config, model_dir)
    trainer = build_trainer(config)
    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer)
    checkpoint.restore(tf.train.latest_checkpoint(str(model_dir / "checkpoints"))).expect_partial()
    codec = MNISTCodec(trainer)
    digits, _ = mnist_arrays("test")
    y = trainer.analysis_transform(tf.cast(digits, tf.float32) / 255.)
    return codec.entropy_model.symbols(y).numpy(), codec.entropy_model.tables.cdf.numpy()


def kodak_case(images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Kodak-size symbols `[images, 1536, 192]` and matching precision-12 tables."""
    import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    channels, positions = 192, 48 * 32
    scales = np.exp(rng.uniform(np.log(.2), np.log(8.), channels))
    rows, symbols = [], np.empty((images, positions, channels), np.int32)
    for c, scale in enumerate(scales):
        half = int(np.ceil(scale * np.log(2 ** 8)))          # tail mass ≈ 2^-8 each side
        grid = np.arange(-half, half + 1)
        pmf = np.exp(-np.abs(grid) / scale)
        pmf = pmf / pmf.sum() * (1 - 2 ** -8)
        cdf = tco.pmf_to_quantized_cdf(np.append(pmf, 2 ** -8).astype(np.float32), precision=12)
        rows.append(np.concatenate([[-12], cdf.numpy()]))
        symbols[:, :, c] = np.round(rng.laplace(0, scale, (images, positions))) + half
    return symbols, np.concatenate(rows).astype(np.int32)


def _mutate(rng, strings: list[bytes], count: int) -> list[bytes]:
    out = []
    for i in range(count):
        s = bytearray(strings[i % len(strings)])
        kind = i % 3
        if kind == 0 and s:
            s[int(rng.integers(len(s)))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            s = s[:int(rng.integers(len(s) + 1))]
        else:
            s += rng.bytes(int(rng.integers(1, 4)))
        out.append(bytes(s))
    return out


def soak_fuzz(symbols: np.ndarray, cdf_np: np.ndarray, count: int, seed: int = 1) -> dict:
    """`count` random + `count` mutated MNIST-size strings through the portable decoder."""
    rng = np.random.default_rng(seed)
    coder, cdf = get_coder("portable"), tf.constant(cdf_np)
    decode = tf.function(lambda t: coder.decode(t, 1, symbols.shape[2], cdf))
    valid = list(coder.encode(symbols[:2000], cdf).numpy())
    random = [bytes([0x20 | int(rng.integers(32))]) + rng.bytes(int(n))
              for n in rng.integers(0, 40, count)]
    mutated = _mutate(rng, valid, count)
    start = time.perf_counter()
    accepted = {}
    for label, strings in (("random", random), ("mutated", mutated)):
        accepted[label] = np.concatenate([decode(tf.constant(strings[i:i + 10_000]))[1].numpy()
                                          for i in range(0, len(strings), 10_000)])
    valid_set = set(valid)
    changed = np.array([m not in valid_set for m in mutated])
    return {"strings": 2 * count, "crashes": 0, "seconds": time.perf_counter() - start,
            "accepted_fraction_random": float(accepted["random"].mean()),
            # Mutations that left a valid string of the set (e.g. truncation at full length)
            # rightly pass; what matters is how often real damage slips through.
            "accepted_fraction_changed_mutations": float(accepted["mutated"][changed].mean()),
            "mutated_that_changed": int(changed.sum())}


def plot(results: dict, path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    cases = [("mnist", "MNIST (50 symbols)"), ("kodak", "Kodak-size (294,912 symbols)")]
    for ax, (case, title) in zip(axes[:2], cases):
        r = results[case]
        names = ["information"] + list(CODERS)
        values = [r["information_bytes_per_string"]] + [r[n]["bytes_per_string"] for n in CODERS]
        bars = ax.bar(names, values, color=["#999999", "#1f77b4", "#ff7f0e"])
        ax.bar_label(bars, fmt="%.1f")
        ax.set_title(f"{title}: bytes per string")
    ax = axes[2]
    x = np.arange(2)
    for i, name in enumerate(CODERS):
        k = results["kodak"][name]
        ax.bar(x + .4 * i, [k["encode_symbols_per_s"] / 1e6, k["decode_symbols_per_s"] / 1e6],
               .4, label=name)
    ax.set_xticks(x + .2, ["encode", "decode"])
    ax.set_yscale("log")
    ax.set_ylabel("M symbols / s (log)")
    ax.set_title("Kodak-size throughput (CPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default=str(ROOT / ".cache" / "bench_coder" / "mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--kodak-images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fuzz", type=int, default=100_000, help="random + as many mutated")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "coder.json"))
    args = parser.parse_args(argv)

    print("(a) MNIST test-set latents", flush=True)
    mnist_symbols, mnist_cdf = mnist_case(args)
    mnist = compare(mnist_symbols, mnist_cdf, args.repeats)
    print("(b) Kodak-size latents", flush=True)
    kodak = compare(*kodak_case(args.kodak_images), args.repeats)
    print(f"soak fuzz: {2 * args.fuzz} strings", flush=True)
    fuzz = soak_fuzz(mnist_symbols, mnist_cdf, args.fuzz)

    results = {
        "kodak_size_ratio": kodak["portable"]["total_bytes"] / kodak["tfc"]["total_bytes"],
        "kodak_throughput_ratio": (kodak["portable"]["round_trip_symbols_per_s"]
                                   / kodak["tfc"]["round_trip_symbols_per_s"]),
        "mnist_extra_bytes_per_string": (mnist["portable"]["bytes_per_string"]
                                         - mnist["tfc"]["bytes_per_string"]),
        "targets": {"kodak_size_ratio": "<= 1.01", "kodak_throughput_ratio": ">= 1.0",
                    "mnist_extra_bytes_per_string": "<= 1"},
        "mnist": mnist, "kodak": kodak, "fuzz": fuzz,
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "machine": platform.machine(), "cpus": os.cpu_count()},
        "command": "make bench-coder",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    for key in ("kodak_size_ratio", "kodak_throughput_ratio", "mnist_extra_bytes_per_string"):
        print(f"{key}: {results[key]:.4f}  (target {results['targets'][key]})")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
