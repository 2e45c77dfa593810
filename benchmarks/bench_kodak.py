"""Kodak benchmark of the Ballé 2017 codec against classical codecs and published curves.

1. Trains one model per λ (`--lambdas`) on ../shared/data/photos-train, sized for the CPU
   budget: an anchor model at λ = `--anchor` from scratch for `--epochs` × `--steps-per-epoch`
   steps of `--batch-size` × `--patch-size`² crops, then every λ of the sweep warm-started from
   it for `--finetune-epochs`; models already trained under `--models-dir` resume or are
   reused.
2. Evaluates every model on all 24 Kodak images (actual bytes, RGB PSNR, MS-SSIM, encode and
   decode seconds per image) and JPEG, JPEG 2000, WebP, AVIF at Pillow quality sweeps.
3. BD-rate (PSNR and MS-SSIM dB) of rdpipe against each baseline and the published curves in
   benchmarks/reference/kodak_published.json.

Writes benchmarks/results/kodak.json (top-level `bd_rate_psnr` with keys jpeg, jpeg2000, webp,
avif, bls2017_published — percent; null where the curves do not overlap or there are < 4
models), kodak.md (tables) and kodak.png (R-D plots). Run: `make bench-kodak` (0.6–0.75 s per
step at 128² patches on 2 cores: ~45 min for the anchor's 4,000 steps, ~22 min for each λ's
2,000).
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

from codec import image_eval, rd_report  # noqa: E402
from pipelines import figures  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
PHOTOS = ROOT.parent / "shared" / "data" / "photos-train"
REFERENCE = ROOT / "benchmarks" / "reference" / "kodak_published.json"
BASELINES = ("jpeg", "jpeg2000", "webp", "avif")


def train_models(args) -> list[Path]:
    """Trains an anchor model at λ = `--anchor` from scratch for `--epochs` (under
    `anchor_lmbda_<λ>`), then every λ of the sweep for `--finetune-epochs` warm-started from it
    (`lmbda_<λ>`): a cold start per λ at the same total step count does not fit ~1 h per λ
    on 2 cores. `--anchor 0` trains every λ from scratch for `--epochs` instead."""
    from codec.bls2017_train import ImageTrainConfig, train_image_codec  # pylint: disable=import-outside-toplevel

    def train(lmbda: float, out: Path, epochs: int, init_from: Path | None) -> Path:
        summary_file = out / "summary.json"
        if summary_file.exists() and json.loads(summary_file.read_text())["config"][
                "epochs"] >= epochs:
            return out
        print(f"training λ={lmbda:g} → {out}" + (f" (warm start from {init_from.name})"
                                                  if init_from else ""), flush=True)
        config = ImageTrainConfig(
            lmbda=lmbda, filters=args.filters, patch_size=args.patch_size,
            batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch, epochs=epochs,
            learning_rate=args.learning_rate, train_dir=str(PHOTOS),
            init_from=str(init_from) if init_from else "")
        train_image_codec(config, out)
        return out

    root = Path(args.models_dir)
    anchor = None
    if args.anchor > 0:
        anchor = train(args.anchor, root / f"anchor_lmbda_{args.anchor:g}", args.epochs, None)
    return [train(lmbda, root / f"lmbda_{lmbda:g}",
                  args.finetune_epochs if anchor else args.epochs, anchor)
            for lmbda in sorted(args.lambdas)]


def training_summaries(model_dirs: list[Path]) -> list[dict]:
    """λ, steps, warm start and speed of each model's training (its summary.json)."""
    rows = []
    for directory in model_dirs:
        summary_file = directory / "summary.json"
        if not summary_file.exists():
            continue
        summary = json.loads(summary_file.read_text())
        config = summary["config"]
        rows.append({"model": str(directory.name), "lmbda": config["lmbda"],
                     "steps": config["epochs"] * config["steps_per_epoch"],
                     "patch_size": config["patch_size"], "batch_size": config["batch_size"],
                     "filters": config["filters"], "learning_rate": config["learning_rate"],
                     "warm_start_from": Path(config["init_from"]).name
                     if config.get("init_from") else None,
                     "steps_per_second_last_run": summary["steps_per_second"],
                     "final_train_bpp": summary["history"]["bpp"][-1],
                     "final_train_psnr": summary["history"]["psnr"][-1]})
    return rows


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
                        help="λ of the anchor model trained from scratch; every λ of the sweep "
                             "warm-starts from it (0: every λ from scratch)")
    parser.add_argument("--finetune-epochs", type=int, default=10,
                        help="epochs of each warm-started λ")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the models already in --models-dir")
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kodak.json"))
    args = parser.parse_args(argv)

    if args.no_train:
        model_dirs = sorted(p for p in Path(args.models_dir).glob("lmbda_*")
                            if (p / "saved_model" / "saved_model.pb").exists())
    else:
        model_dirs = train_models(args)
    images = image_eval.load_images(KODAK, args.limit)
    log = lambda line: print(line, flush=True)  # noqa: E731
    ours = [{**image_eval.evaluate_model(str(d), images, progress=log)._asdict(),
             "parameter": d.name} for d in model_dirs]
    baselines = {name: [p._asdict() for p in image_eval.evaluate(name, images, progress=log)]
                 for name in BASELINES}
    reference = rd_report.load_published_curves(REFERENCE)
    fronts = {name: [p._asdict() for p in image_eval.pareto_front(
        [image_eval.Point(**q) for q in points])] for name, points in baselines.items()}
    bd_psnr, bd_ssim, overlap = rd_report.bd_rate_table(ours, {**fronts, **reference})
    result = {
        "bd_rate_psnr": bd_psnr, "bd_rate_ms_ssim": bd_ssim,
        "bd_rate_psnr_interval_db": overlap,
        "targets_bd_rate_psnr": {"jpeg": "<= -40", "jpeg2000": "<= -10", "webp": "<= -5",
                                 "bls2017_published": "<= +10"},
        "max_encode_seconds": max((p["encode_seconds"] for p in ours), default=None),
        "max_decode_seconds": max((p["decode_seconds"] for p in ours), default=None),
        "target_seconds_per_image": 0.5,
        "rdpipe": ours, "baselines": baselines,
        "units": {"bpp": "bits per pixel (actual bytes)", "psnr": "dB, RGB, peak 255",
                  "ms_ssim": "tf.image.ssim_multiscale (linear); BD-rate in dB",
                  "bd_rate": "percent, negative = rdpipe needs fewer bits; null = curves do "
                             "not overlap in quality or < 4 points",
                  "seconds": "mean per Kodak image, one image per call, after a warm-up"},
        "training": training_summaries(model_dirs),
        "reference": "benchmarks/reference/kodak_published.json (sources cited there)",
        "images": len(images), "command": "make bench-kodak",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = rd_report.markdown_report(bd_psnr, bd_ssim, ours, overlap)
    out.with_suffix(".md").write_text(table)
    figures.image_rd_plot({"rdpipe (bls2017)": ours, **fronts}, out.with_suffix(".png"),
                          reference, title=f"Kodak ({len(images)} images)")
    print(table)
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
