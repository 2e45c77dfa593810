"""MNIST rate-distortion benchmark: one codec per λ with the tutorial's settings.

Trains λ ∈ {2000, 500, 300} (Adam 1e-3, batch 128, 15 epochs, full MNIST train split), then
compresses and decompresses the whole test split (10,000 digits) with real strings and writes
  benchmarks/results/mnist_rd.json  list of per-λ objects (see KEYS below)
  benchmarks/results/mnist_rd.png   MAE vs bits/digit next to the tutorial's published points
Each JSON object: lambda, decoder_input, coder, bits_per_digit (actual: 8 × string bytes, mean over
the test set), same_latents_bits_per_digit (the same model re-exported with the framed
`portable` rANS and `tfc` range coders: their strings of the same latents, format byte
included), information_bits (−log2 p̃ under the continuous prior), coding_overhead_bits, mae
([0,1] pixels), psnr, train_seconds, compress_per_s / decompress_per_s (digits/s), tutorial_*
comparison fields, environment.
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

from codec.data.datasets import mnist_arrays  # noqa: E402
from codec.eval.evaluation import evaluate_codec  # noqa: E402
from codec.models.mnist_train import (MnistTrainConfig, reexport_mnist_codec,  # noqa: E402
                                      train_mnist)
from codec.saved_codec import SavedCodec  # noqa: E402
from codec.eval.figures import TUTORIAL_POINTS, rd_plot  # noqa: E402



def tutorial_mae_at(bits: float) -> float | None:
    """The tutorial's R-D curve (piecewise linear in bits) at `bits`; None outside its range.

    No extrapolation: R-D curves are convex, so extending the end segments would flatter or
    penalize either side arbitrarily.
    """
    ref = sorted(TUTORIAL_POINTS, key=lambda p: p["bits"])
    xs, ys = [p["bits"] for p in ref], [p["mae"] for p in ref]
    if not xs[0] <= bits <= xs[-1]:
        return None
    return float(np.interp(bits, xs, ys))


def compare_with_tutorial(row: dict) -> dict:
    """Derived fields: where our point sits relative to the tutorial's point and curve."""
    ref = {p["lambda"]: p for p in TUTORIAL_POINTS}.get(int(row["lambda"]), {})
    curve = tutorial_mae_at(row["bits_per_digit"])
    framed = row.get("same_latents_bits_per_digit") or {}
    return {
        "coding_overhead_bits": row["bits_per_digit"] - row["information_bits"],
        "same_latents_overhead_bits": {coder: bits - row["information_bits"]
                                       for coder, bits in framed.items()},
        "tutorial_bits": ref.get("bits"),
        "tutorial_mae": ref.get("mae"),
        "tutorial_curve_mae_at_our_rate": curve,
        "on_or_below_tutorial_curve": None if curve is None else bool(row["mae"] <= curve),
        "dominates_tutorial_point": bool(ref) and bool(
            row["bits_per_digit"] <= ref["bits"] and row["mae"] <= ref["mae"]),
    }


def write_report(rows: list[dict], results: Path) -> None:
    """Writes mnist_rd.json + mnist_rd.png and prints the table (README's source)."""
    for row in rows:
        row.update(compare_with_tutorial(row))
    results.mkdir(parents=True, exist_ok=True)
    (results / "mnist_rd.json").write_text(json.dumps(rows, indent=2) + "\n")
    rd_plot(rows, results / "mnist_rd.png",
            title="MNIST: rdpipe (actual coded bits, 10k test digits) vs TFC tutorial")
    print("| decoder input | λ | bits/digit (coded) | information bits | MAE | PSNR dB | "
          "train s | compress digits/s | decompress digits/s | tutorial (bits @ MAE) | "
          "tutorial curve MAE at our rate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tut = f"{r['tutorial_bits']:.2f} @ {r['tutorial_mae']:.4f}" if r["tutorial_bits"] else "–"
        curve = r["tutorial_curve_mae_at_our_rate"]
        print(f"| {r['decoder_input']} | {r['lambda']:g} | {r['bits_per_digit']:.2f} | "
              f"{r['information_bits']:.2f} | {r['mae']:.4f} | {r['psnr']:.2f} | "
              f"{r['train_seconds']:.0f} | {r['compress_per_s']:,.0f} | "
              f"{r['decompress_per_s']:,.0f} | {tut} | "
              f"{'outside its range' if curve is None else f'{curve:.4f}'} |")
    print(f"→ {results / 'mnist_rd.json'}, {results / 'mnist_rd.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[2000, 500, 300])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--decoder-inputs", nargs="+", default=["noisy"],
                        choices=["quantized", "noisy"],
                        help="training variants: noisy (the tutorial, rdpipe default) and/or "
                             "quantized (straight-through decoder input)")
    parser.add_argument("--workdir", default=str(ROOT / "workspace" / "bench" / "mnist"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--report-only", action="store_true",
                        help="recompute derived fields, table and plot from the existing JSON")
    args = parser.parse_args()
    results = Path(args.results)
    if args.report_only:
        write_report(json.loads((results / "mnist_rd.json").read_text()), results)
        return

    test_images, _ = mnist_arrays("test")
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(),
            "tensorflow": tf.__version__, "date": time.strftime("%Y-%m-%d")}
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
        # The same weights and tables under the framed coders: strings of the same latents.
        framed = {}
        for coder in ("portable", "tfc"):
            reexport_mnist_codec(out, out / f"saved_model_{coder}", coder=coder)
            strings, _ = SavedCodec(out / f"saved_model_{coder}").compress(test_images)
            framed[coder] = float(np.mean([8 * len(s) for s in strings]))
        row = {
            "lambda": lmbda,
            "decoder_input": variant,
            **{key: result[key] for key in ("bits_per_digit", "information_bits", "mae",
                                            "psnr", "compress_per_s", "decompress_per_s")},
            "coder": config.coder,
            "same_latents_bits_per_digit": framed,
            "train_seconds": summary["train_seconds"],
            "num_test_digits": result["num_images"],
            "epochs": args.epochs,
            "environment": meta,
        }
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)

    write_report(rows, results)


if __name__ == "__main__":
    main()
