"""Truncated-SVD benchmark: randomized range finder vs full `tf.linalg.svd`.

Cases (ranks r ∈ {10, 50, 100}):
 (a) a batch of 3 channels of 1024×1024 (a Kodak image, 768×512, upscaled ×2 with bicubic
     resampling and cropped — natural-image spectrum at the requested size);
 (b) 1,000 MNIST test digits (28×28; every r here exceeds min(m, n)/4, so `truncated_svd` takes
     the exact path — reported as such; r ≥ 28 is invalid and skipped).
Per case and rank: wall time of `truncated_svd` (the serving path) against `tf.linalg.svd` +
truncated reconstruction (measured once per case: its cost does not depend on r), best of
`--repeats`, same process, inside tf.function; and the squared Frobenius error of the
reconstruction relative to the optimal Σ_{i>r} σ_i² (exact float64 spectrum).

Then the SVD codec's rate–distortion on Kodak next to JPEG and JPEG 2000 (`rdpipe eval`, actual
bytes): benchmarks/results/svd_rd.json and svd_rd.png.

Writes benchmarks/results/svd.json (top-level `min_speedup_r_le_100`,
`max_error_ratio_r_le_100`, over the 1024² case) and svd.png.
Targets (issue 7): ≥ 5× faster than the full SVD at r ≤ 100 with error ≤ 1.01× optimal.
Run: `make bench-svd` (≈ 3 min on 2 cores).
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
from PIL import Image  # noqa: E402

from codec.linalg.randomized_svd import full_truncated_svd, reconstruct, truncated_svd, use_randomized  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
RANKS = (10, 50, 100)


def kodak_1024() -> np.ndarray:
    """float32 `[3, 1024, 1024]`: kodim01 upscaled ×2 (bicubic), cropped, channels first."""
    image = Image.open(sorted(KODAK.glob("*.png"))[0]).convert("RGB")
    big = image.resize((image.width * 2, image.height * 2), Image.BICUBIC)
    array = np.asarray(big, np.float32)[:1024, :1024]
    return np.ascontiguousarray(np.transpose(array, (2, 0, 1)))


def mnist_1000() -> np.ndarray:
    from codec.data.datasets import mnist_arrays  # pylint: disable=import-outside-toplevel
    digits, _ = mnist_arrays("test[:1000]")
    return digits[..., 0].astype(np.float32)


def best_time(fn, repeats: int) -> float:
    fn()  # trace + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(x: np.ndarray, rank: int, repeats: int, full_s: float, spectrum: np.ndarray) -> dict:
    """One rank: `truncated_svd` timing and error; `full_s`/`spectrum` are per case (the full
    SVD's cost and the exact singular values do not depend on r)."""
    a = tf.constant(x)
    fast = tf.function(lambda: reconstruct(truncated_svd(a, rank)))
    fast_s = best_time(lambda: fast().numpy(), repeats)
    optimal = float((spectrum[..., rank:] ** 2).sum())
    error = float(tf.reduce_sum((tf.cast(a, tf.float64) - tf.cast(fast(), tf.float64)) ** 2))
    m, n = x.shape[-2:]
    return {"rank": rank, "randomized": bool(use_randomized(rank, m, n)),
            "truncated_svd_seconds": fast_s, "full_svd_seconds": full_s,
            "speedup": full_s / fast_s, "error": error, "optimal_error": optimal,
            "error_ratio": error / optimal if optimal > 0 else 1.0}


def full_svd_seconds(x: np.ndarray, repeats: int) -> float:
    """`tf.linalg.svd` (with vectors) + a rank-10 truncated reconstruction."""
    a = tf.constant(x)
    full = tf.function(lambda: reconstruct(full_truncated_svd(a, 10)))
    return best_time(lambda: full().numpy(), repeats)


def plot(results: dict, path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for case, label in (("kodak_1024", "3×1024×1024"), ("mnist_1000", "1000×28×28")):
        rows = results[case]
        axes[0].plot([r["rank"] for r in rows], [r["speedup"] for r in rows], "o-", label=label)
        axes[1].plot([r["rank"] for r in rows], [r["error_ratio"] for r in rows], "o-",
                     label=label)
    axes[0].axhline(5, color="gray", ls="--", label="target 5×")
    axes[0].set(xlabel="rank r", ylabel="full SVD time / truncated_svd time",
                title="speed-up (CPU)", yscale="log")
    axes[1].axhline(1.01, color="gray", ls="--", label="target 1.01×")
    axes[1].set(xlabel="rank r", ylabel="‖A − A_r‖² / Σ_{i>r} σ_i²", title="error vs optimal")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rd-images", type=int, default=None,
                        help="Kodak images for the R-D comparison (default all 24; 0 skips)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "svd.json"))
    args = parser.parse_args(argv)
    results: dict = {}
    for case, x in (("kodak_1024", kodak_1024()), ("mnist_1000", mnist_1000())):
        results[case] = []
        full_s = full_svd_seconds(x, args.repeats)
        spectrum = tf.linalg.svd(tf.constant(x, tf.float64), compute_uv=False).numpy()
        for rank in RANKS:
            if rank > min(x.shape[-2:]):
                continue
            row = measure(x, rank, args.repeats, full_s, spectrum)
            results[case].append(row)
            print(f"{case:11s} r={rank:3d} {'randomized' if row['randomized'] else 'exact':10s} "
                  f"{row['truncated_svd_seconds']:8.3f} s vs full {row['full_svd_seconds']:8.3f} s"
                  f"  speed-up {row['speedup']:6.2f}×  error ratio {row['error_ratio']:.5f}",
                  flush=True)
    big = results["kodak_1024"]
    summary = {
        "min_speedup_r_le_100": min(r["speedup"] for r in big),
        "max_error_ratio_r_le_100": max(r["error_ratio"] for r in big),
        "targets": {"min_speedup_r_le_100": ">= 5", "max_error_ratio_r_le_100": "<= 1.01"},
        **results,
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "cpus": os.cpu_count()},
        "command": "make bench-svd",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, out.with_suffix(".png"))
    print(f"min_speedup_r_le_100 {summary['min_speedup_r_le_100']:.2f} (target ≥ 5), "
          f"max_error_ratio_r_le_100 {summary['max_error_ratio_r_le_100']:.5f} (target ≤ 1.01)")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    if args.rd_images != 0:
        from cli.images import cmd_eval  # pylint: disable=import-outside-toplevel
        cmd_eval(argparse.Namespace(images=str(KODAK), limit=args.rd_images, models=[],
                                    codec=["svd", "jpeg", "jpeg2000", "webp", "avif"],
                                    bd_codec="svd", reference="none",
                                    output=str(out.with_name("svd_rd.json"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
