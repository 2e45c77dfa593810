"""MNIST rate-distortion benchmark: one codec per λ with the tutorial's settings.

Trains λ ∈ {2000, 500, 300} (Adam 1e-3, batch 128, 15 epochs, full MNIST train split), then
compresses and decompresses the whole test split (10,000 digits) with real strings and writes
  benchmarks/results/mnist_rd.json  list of per-λ objects (see KEYS below)
  benchmarks/results/mnist_rd.png   MAE vs bits/digit next to the tutorial's published points
Run: `make bench-mnist` (≈10–15 min on 2 cores). `--lambdas`/`--epochs` shrink it for trials.
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

from codec.datasets import mnist_arrays  # noqa: E402
from codec.evaluation import evaluate_codec  # noqa: E402
from codec.mnist_train import MnistTrainConfig, train_mnist  # noqa: E402
from codec.saved_codec import SavedCodec  # noqa: E402
from pipelines.figures import TUTORIAL_POINTS, rd_plot  # noqa: E402

KEYS = ("lambda", "decoder_input", "bits_per_digit", "information_bits", "coding_overhead_bits", "mae", "psnr",
        "train_seconds", "compress_per_s", "decompress_per_s", "num_test_digits", "epochs",
        "tutorial_bits", "tutorial_mae", "tutorial_curve_mae_at_our_rate")


def tutorial_mae_at(bits: float) -> float:
    """The tutorial's R-D curve (piecewise linear in bits, extrapolated at the ends) at `bits`."""
    ref = sorted(TUTORIAL_POINTS, key=lambda p: p["bits"])
    xs, ys = [p["bits"] for p in ref], [p["mae"] for p in ref]
    i = int(np.clip(np.searchsorted(xs, bits) - 1, 0, len(xs) - 2))
    return float(ys[i] + (ys[i + 1] - ys[i]) * (bits - xs[i]) / (xs[i + 1] - xs[i]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[2000, 500, 300])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--decoder-inputs", nargs="+", default=["quantized"],
                        choices=["quantized", "noisy"],
                        help="training variants: quantized (rdpipe default) and/or noisy "
                             "(the tutorial's exact recipe)")
    parser.add_argument("--workdir", default=str(ROOT / "workspace" / "bench" / "mnist"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    test_images, _ = mnist_arrays("test")
    tutorial = {p["lambda"]: p for p in TUTORIAL_POINTS}
    rows = []
    runs = [(variant, lmbda) for variant in args.decoder_inputs for lmbda in args.lambdas]
    for variant, lmbda in runs:
        out = Path(args.workdir) / f"{variant}_lmbda_{lmbda:g}"
        config = MnistTrainConfig(lmbda=lmbda, epochs=args.epochs, verbose=2,
                                  decoder_input=variant)
        print(f"=== λ={lmbda:g}, decoder input {variant}: training {args.epochs} epochs → "
              f"{out}", flush=True)
        summary = train_mnist(config, out)
        result = evaluate_codec(SavedCodec(out), test_images)
        ref = tutorial.get(int(lmbda), {})
        row = {
            "lambda": lmbda,
            "decoder_input": variant,
            "bits_per_digit": result["bits_per_digit"],
            "information_bits": result["information_bits"],
            "coding_overhead_bits": result["bits_per_digit"] - result["information_bits"],
            "mae": result["mae"],
            "psnr": result["psnr"],
            "train_seconds": summary["train_seconds"],
            "compress_per_s": result["compress_per_s"],
            "decompress_per_s": result["decompress_per_s"],
            "num_test_digits": result["num_images"],
            "epochs": args.epochs,
            "tutorial_bits": ref.get("bits"),
            "tutorial_mae": ref.get("mae"),
            "tutorial_curve_mae_at_our_rate": tutorial_mae_at(result["bits_per_digit"]),
        }
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(),
            "tensorflow": tf.__version__, "date": time.strftime("%Y-%m-%d")}
    for row in rows:
        row["environment"] = meta
    (results / "mnist_rd.json").write_text(json.dumps(rows, indent=2) + "\n")
    rd_plot(rows, results / "mnist_rd.png",
            title="MNIST: rdpipe (actual coded bits, 10k test digits) vs TFC tutorial")
    print(f"\n{'variant':>9} {'λ':>6} {'bits/digit':>10} {'info':>7} {'MAE':>7} {'tutorial':>16} "
          f"{'curve MAE@ours':>14}")
    for r in rows:
        tut = (f"{r['tutorial_bits']:.2f} @ {r['tutorial_mae']:.4f}"
               if r["tutorial_bits"] else "-")
        print(f"{r['decoder_input']:>9} {r['lambda']:>6g} {r['bits_per_digit']:>10.2f} {r['information_bits']:>7.2f} "
              f"{r['mae']:>7.4f} {tut:>16} {r['tutorial_curve_mae_at_our_rate']:>14.4f}")
    print(f"→ {results / 'mnist_rd.json'}, {results / 'mnist_rd.png'}")


if __name__ == "__main__":
    main()
