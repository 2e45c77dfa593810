"""Kodak benchmark of the Ballé 2017 codec against classical codecs and published curves.

1. Trains one model per λ (`--lambdas`) on ../shared/data/photos-train, sized for the CPU
   budget: the `--anchor` λ from scratch for `--epochs` × `--steps-per-epoch` steps of
   `--batch-size` × `--patch-size`² crops, every other λ warm-started from it for
   `--finetune-epochs`; models already trained under `--models-dir` resume or are reused.
2. Evaluates every model on all 24 Kodak images (actual bytes, RGB PSNR, MS-SSIM, encode and
   decode seconds per image) and JPEG, JPEG 2000, WebP, AVIF at Pillow quality sweeps.
3. BD-rate (PSNR and MS-SSIM dB) of rdpipe against each baseline and the published curves in
   benchmarks/reference/kodak_published.json.

Writes benchmarks/results/kodak.json (top-level `bd_rate_psnr` with keys jpeg, jpeg2000, webp,
avif, bls2017_published — percent; null where the curves do not overlap or there are < 4
models), kodak.md (tables) and kodak.png (R-D plots). Run: `make bench-kodak` (0.6–0.75 s per
step at 128² patches on 2 cores: ~45 min for the anchor's 4,000 steps, ~22 min for each other
λ's 2,000).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from codec import image_eval  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
PHOTOS = ROOT.parent / "shared" / "data" / "photos-train"
REFERENCE = ROOT / "benchmarks" / "reference" / "kodak_published.json"
BASELINES = ("jpeg", "jpeg2000", "webp", "avif")


def _db(ms_ssim: float) -> float:
    return float(-10 * np.log10(max(1 - ms_ssim, 1e-10)))


def bd_rates(ours: list[dict], curves: dict) -> tuple[dict, dict]:
    """BD-rate (%) of `ours` against each curve, PSNR and MS-SSIM (dB); None if impossible."""
    def safe(reference, test):
        try:
            return image_eval.bd_rate(reference, test)
        except ValueError:
            return None
    psnr, ssim = {}, {}
    ours_psnr = [(p["bpp"], p["psnr"]) for p in ours]
    ours_ssim = [(p["bpp"], _db(p["ms_ssim"])) for p in ours]
    for name, points in curves.items():
        psnr[name] = safe([(p["bpp"], p["psnr"]) for p in points], ours_psnr)
        if all("ms_ssim" in p for p in points):
            ssim[name] = safe([(p["bpp"], _db(p["ms_ssim"])) for p in points], ours_ssim)
    return psnr, ssim


def published_curves() -> dict:
    data = json.loads(REFERENCE.read_text())["curves"]
    out = {}
    for name, curve in data.items():
        out[name] = [{"bpp": b, "psnr": p, **({"ms_ssim": s} if s is not None else {})}
                     for b, p, s in zip(curve["bpp"], curve["psnr"],
                                        curve.get("ms_ssim", [None] * len(curve["bpp"])))]
    return out


def train_models(args) -> list[Path]:
    """Trains the `--anchor` λ from scratch for `--epochs`, then every other λ for
    `--finetune-epochs` warm-started from the anchor (all at the same step budget from scratch
    does not fit ~1 h per λ on 2 cores). `--anchor 0` trains every λ from scratch."""
    from codec.bls2017_train import ImageTrainConfig, train_image_codec  # pylint: disable=import-outside-toplevel
    anchor = args.anchor if args.anchor in args.lambdas else None
    order = sorted(args.lambdas, key=lambda lmbda: lmbda != anchor)   # anchor first
    dirs = {}
    for lmbda in order:
        out = Path(args.models_dir) / f"lmbda_{lmbda:g}"
        warm = anchor is not None and lmbda != anchor
        epochs = args.finetune_epochs if warm else args.epochs
        summary_file = out / "summary.json"
        done = summary_file.exists() and json.loads(summary_file.read_text())["config"][
            "epochs"] >= epochs
        if not done:
            print(f"training λ={lmbda:g} → {out}" + (f" (warm start from λ={anchor:g})"
                                                      if warm else ""), flush=True)
            config = ImageTrainConfig(
                lmbda=lmbda, filters=args.filters, patch_size=args.patch_size,
                batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
                epochs=epochs, learning_rate=args.learning_rate, train_dir=str(PHOTOS),
                init_from=str(dirs[anchor]) if warm else "")
            train_image_codec(config, out)
        dirs[lmbda] = out
    return [dirs[lmbda] for lmbda in sorted(args.lambdas)]


def plot(results: dict, reference: dict, path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, points in {**results, **reference}.items():
        points = sorted(points, key=lambda p: p["bpp"])
        style = "o-" if name in results else "--"
        axes[0].plot([p["bpp"] for p in points], [p["psnr"] for p in points], style, label=name)
        if all("ms_ssim" in p for p in points):
            axes[1].plot([p["bpp"] for p in points], [_db(p["ms_ssim"]) for p in points], style,
                         label=name)
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR (dB)", title="Kodak, RGB PSNR",
                xlim=(0, 2.5))
    axes[1].set(xlabel="bits per pixel", ylabel="MS-SSIM (dB)", title="Kodak, MS-SSIM",
                xlim=(0, 2.5))
    for ax in axes:
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(bd_psnr: dict, bd_ssim: dict, ours: list[dict]) -> str:
    def fmt(value):
        return "n/a" if value is None else f"{value:+.1f} %"
    lines = ["| rdpipe vs | BD-rate (PSNR) | BD-rate (MS-SSIM) |", "|---|---|---|"]
    for name in bd_psnr:
        lines.append(f"| {name} | {fmt(bd_psnr[name])} | {fmt(bd_ssim.get(name))} |")
    lines += ["", "| model | bpp | PSNR dB | MS-SSIM | encode s | decode s |",
              "|---|---|---|---|---|---|"]
    for p in ours:
        lines.append(f"| {p['parameter']} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                     f"{p['ms_ssim']:.4f} | {p['encode_seconds']:.2f} | "
                     f"{p['decode_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[.0016, .004, .01, .03])
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "bls2017"))
    parser.add_argument("--filters", type=int, default=128)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the anchor λ")
    parser.add_argument("--anchor", type=float, default=.01,
                        help="λ trained from scratch; the others warm-start from it (0: all "
                             "from scratch)")
    parser.add_argument("--finetune-epochs", type=int, default=10,
                        help="epochs of each warm-started λ")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the models already in --models-dir")
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kodak.json"))
    args = parser.parse_args(argv)

    if args.no_train:
        model_dirs = sorted(p for p in Path(args.models_dir).iterdir()
                            if (p / "saved_model" / "saved_model.pb").exists())
    else:
        model_dirs = train_models(args)
    images = image_eval.load_images(KODAK, args.limit)
    log = lambda line: print(line, flush=True)  # noqa: E731
    ours = [image_eval.evaluate_model(str(d), images, progress=log)._asdict()
            for d in model_dirs]
    baselines = {name: [p._asdict() for p in image_eval.evaluate(name, images, progress=log)]
                 for name in BASELINES}
    reference = published_curves()
    curves = {**baselines,
              "bls2017_published": reference["bmshj2018_factorized_paper"],
              "compressai_factorized": reference["compressai_bmshj2018_factorized"]}
    bd_psnr, bd_ssim = bd_rates(ours, curves)
    result = {
        "bd_rate_psnr": bd_psnr, "bd_rate_ms_ssim": bd_ssim,
        "targets_bd_rate_psnr": {"jpeg": "<= -40", "jpeg2000": "<= -10", "webp": "<= -5",
                                 "bls2017_published": "<= +10"},
        "max_encode_seconds": max((p["encode_seconds"] for p in ours), default=None),
        "max_decode_seconds": max((p["decode_seconds"] for p in ours), default=None),
        "rdpipe": ours, "baselines": baselines,
        "reference_note": "bls2017_published is the closest machine-readable published curve of "
                          "the model family (bmshj2018 factorized, see "
                          "benchmarks/reference/kodak_published.json)",
        "images": len(images), "command": "make bench-kodak",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(bd_psnr, bd_ssim, ours))
    plot({"rdpipe": ours, **baselines}, {"bls2017 family (published)": curves["bls2017_published"],
                                         "CompressAI factorized": curves["compressai_factorized"]},
         out.with_suffix(".png"))
    print(markdown(bd_psnr, bd_ssim, ours))
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
