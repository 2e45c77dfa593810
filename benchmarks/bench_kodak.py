"""Kodak benchmark of the Ballé 2017 codec against classical codecs and published curves.

1. Trains one model per λ (`--lambdas`) on ../shared/data/photos-train + photos-train-extra
   with the default recipe (codec/bls2017_train.ImageTrainConfig), sized for the CPU budget: an
   anchor model at λ = `--anchor` from scratch for `--epochs` × `--steps-per-epoch` steps of
   `--batch-size` × `--patch-size`² crops, then every λ of the sweep warm-started from it for
   `--finetune-epochs`; models already trained under `--models-dir` resume or are reused. The
   anchor's learning curve (actual bpp / PSNR on the first `--probe-images` Kodak images every
   `--probe-every` epochs) goes to kodak.json's `learning_curve`.
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

from codec.eval import image_eval, rd_report  # noqa: E402
from codec.eval import figures  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
TRAIN_DIRS = [ROOT.parent / "shared" / "data" / "photos-train",
              ROOT.parent / "shared" / "data" / "photos-train-extra"]
REFERENCE = ROOT / "benchmarks" / "reference" / "kodak_published.json"
BASELINES = ("jpeg", "jpeg2000", "webp", "avif")


def train_models(args) -> list[Path]:
    """Trains an anchor model at λ = `--anchor` from scratch for `--epochs` (under
    `anchor_lmbda_<λ>`), then every λ of the sweep for `--finetune-epochs` warm-started from it
    (`lmbda_<λ>`): a cold start per λ at the same total step count does not fit ~1 h per λ
    on 2 cores. `--anchor 0` trains every λ from scratch for `--epochs` instead."""
    from codec.models.bls2017_train import ImageTrainConfig, train_image_codec  # pylint: disable=import-outside-toplevel

    probe = image_eval.load_images(KODAK, args.probe_images) if args.probe_images else None

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
            learning_rate=args.learning_rate, train_dir=",".join(map(str, TRAIN_DIRS)),
            init_from=str(init_from) if init_from else "")
        train_image_codec(config, out, probe_images=None if init_from else probe,
                          probe_every_epochs=args.probe_every)
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
    parser.add_argument("--steps-per-epoch", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the anchor λ")
    parser.add_argument("--anchor", type=float, default=.01,
                        help="λ of the anchor model trained from scratch; every λ of the sweep "
                             "warm-starts from it (0: every λ from scratch)")
    parser.add_argument("--finetune-epochs", type=int, default=6,
                        help="epochs of each warm-started λ")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--probe-images", type=int, default=4,
                        help="Kodak images coded for the anchor's learning curve (0: none)")
    parser.add_argument("--probe-every", type=int, default=2, help="epochs between probes")
    parser.add_argument("--threads", type=int, default=0,
                        help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the models already in --models-dir")
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kodak.json"))
    args = parser.parse_args(argv)
    if args.threads:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

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
    curve = anchor_learning_curve(args, images, log)
    result = {
        "bd_rate_psnr": bd_psnr, "bd_rate_ms_ssim": bd_ssim,
        "bd_rate_psnr_interval_db": overlap,
        "targets_bd_rate_psnr": {"jpeg": "<= -15", "bls2017_published": "<= +50"},
        "max_encode_seconds": max((p["encode_seconds"] for p in ours), default=None),
        "max_decode_seconds": max((p["decode_seconds"] for p in ours), default=None),
        "target_seconds_per_image": {"encode": 0.15, "decode": 0.2},
        "learning_curve": curve,
        "rdpipe": ours, "baselines": baselines,
        "units": {"bpp": "bits per pixel (actual bytes)", "psnr": "dB, RGB, peak 255",
                  "ms_ssim": "tf.image.ssim_multiscale (linear); BD-rate in dB",
                  "bd_rate": "percent, negative = rdpipe needs fewer bits; null = curves do "
                             "not overlap in quality or < 4 points",
                  "seconds": "mean per Kodak image, one image per call, after a warm-up"},
        "training": training_summaries(model_dirs),
        "reference": "benchmarks/reference/kodak_published.json (sources cited there)",
        "images": len(images), "command": "make bench-kodak",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("output", "models_dir")},
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = rd_report.markdown_report(bd_psnr, bd_ssim, ours, overlap)
    out.with_suffix(".md").write_text(table)
    figures.image_rd_plot({"rdpipe (bls2017)": ours, **fronts}, out.with_suffix(".png"),
                          reference, title=f"Kodak ({len(images)} images)")
    if curve:
        learning_curve_plot(curve, out.with_name(out.stem + "_learning_curve.png"))
    print(table)
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


def anchor_learning_curve(args, images, log) -> dict | None:
    """The anchor's probe points (first `--probe-images` Kodak images) and its final
    evaluation on all `images`."""
    anchor = Path(args.models_dir) / f"anchor_lmbda_{args.anchor:g}"
    curve_file = anchor / "learning_curve.json"
    if not curve_file.exists():
        return None
    final = image_eval.evaluate_model(str(anchor), images, progress=log)
    summary = json.loads((anchor / "summary.json").read_text())
    steps = summary["config"]["epochs"] * summary["config"]["steps_per_epoch"]
    return {"model": anchor.name, "lmbda": args.anchor, "probe_images": args.probe_images,
            "points": json.loads(curve_file.read_text()),
            "final": {"step": steps, "images": len(images), "bpp": final.bpp,
                      "psnr": final.psnr, "ms_ssim": final.ms_ssim}}


def learning_curve_plot(curve: dict, path: Path) -> None:
    """Kodak PSNR and bpp of the anchor against training steps."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    points = curve["points"]
    fig, psnr_axis = plt.subplots(figsize=(7, 4))
    steps = [p["step"] for p in points]
    psnr_axis.plot(steps, [p["psnr"] for p in points], "o-", color="C0",
                   label=f"PSNR, first {curve['probe_images']} Kodak images")
    psnr_axis.plot([curve["final"]["step"]], [curve["final"]["psnr"]], "*", color="C0",
                   markersize=12, label=f"PSNR, all {curve['final']['images']} images")
    psnr_axis.set(xlabel="training step", ylabel="PSNR (dB)",
                  title=f"Anchor λ = {curve['lmbda']:g}: Kodak during training")
    rate_axis = psnr_axis.twinx()
    rate_axis.plot(steps, [p["bpp"] for p in points], "s--", color="C1", label="bpp (probe)")
    rate_axis.plot([curve["final"]["step"]], [curve["final"]["bpp"]], "*", color="C1",
                   markersize=12)
    rate_axis.set_ylabel("bits per pixel (actual)")
    lines = psnr_axis.get_legend_handles_labels()
    more = rate_axis.get_legend_handles_labels()
    psnr_axis.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    psnr_axis.grid(alpha=.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
