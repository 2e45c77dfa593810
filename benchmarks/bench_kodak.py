"""Kodak benchmark of the Ballé 2017 codec against classical codecs and published curves.

1. Trains — or continues — the quality ladder (codec/ladder.py, the same job as `rdpipe
   train-zoo`: an anchor, then every λ fine-tuned from it, checkpoints in $RDPIPE_CACHE,
   `--hours` to stop and resume later), unless `--no-train`. Each model's learning curve
   (actual bpp / PSNR on the first 4 Kodak images during training) goes to kodak.json's
   `learning_curves` and a plot.
2. Evaluates every finished rung on all 24 Kodak images (actual bytes, RGB PSNR, MS-SSIM,
   encode and decode seconds per image) and JPEG, JPEG 2000, WebP, AVIF at Pillow quality
   sweeps.
3. BD-rate (PSNR and MS-SSIM dB) of rdpipe against each baseline and the published curves in
   benchmarks/reference/kodak_published.json.

Writes benchmarks/results/kodak.json (top-level `bd_rate_psnr` with keys jpeg, jpeg2000, webp,
avif, bls2017_published — percent; null where the curves do not overlap or there are < 4
models), kodak.md (tables), kodak.png (R-D plots) and kodak_learning_curve.png. Run:
`make bench-kodak` (the ladder's defaults: 150,000 anchor steps + 30,000 per λ, ≈ 8 h of
both cores in bfloat16; `BENCH_ARGS="--hours 2.5"` to do part of it per sitting).
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
REFERENCE = ROOT / "benchmarks" / "reference" / "kodak_published.json"
BASELINES = ("jpeg", "jpeg2000", "webp", "avif")


def train_models(args) -> list[Path]:
    """Runs (or continues) the ladder job; returns the finished rungs, lowest λ first."""
    from codec.ladder import LadderConfig, run_ladder  # pylint: disable=import-outside-toplevel
    config = LadderConfig()
    root = Path(args.ladder)
    if not args.no_train:
        probe = image_eval.load_images(KODAK, config.probe_images)
        run_ladder(config, root, hours=args.hours, probe_images=probe)
    return finished_rungs(root)


def finished_rungs(root: Path) -> list[Path]:
    """The ladder's rungs (`q<N>_l<λ>`) with an exported model, lowest λ first."""
    rungs = [d for d in Path(root).glob("q*_l*")
             if (d / "saved_model" / "saved_model.pb").exists() and (d / "summary.json").exists()]
    return sorted(rungs, key=lambda d: json.loads((d / "summary.json").read_text())[
        "config"]["lmbda"])


def training_summaries(model_dirs: list[Path]) -> list[dict]:
    """λ, steps, warm start and speed of each model's training (its summary.json)."""
    rows = []
    for directory in model_dirs:
        summary_file = directory / "summary.json"
        if not summary_file.exists():
            continue
        summary = json.loads(summary_file.read_text())
        config = summary["config"]
        history = summary.get("history") or {}
        rows.append({"model": str(directory.name), "lmbda": config["lmbda"],
                     "steps": summary.get("steps") or config["epochs"] * config[
                         "steps_per_epoch"],
                     "patch_size": config["patch_size"], "batch_size": config["batch_size"],
                     "filters": config["filters"], "learning_rate": config["learning_rate"],
                     "schedule": config.get("schedule", "constant"),
                     "precision": config.get("precision_policy") or "float32",
                     "train_dirs": config.get("train_dir", "").split(","),
                     "warm_start_from": Path(config["init_from"]).name
                     if config.get("init_from") else None,
                     "steps_per_second_last_run": summary["steps_per_second"],
                     "final_train_bpp": (history.get("bpp") or [None])[-1],
                     "final_train_psnr": (history.get("psnr") or [None])[-1]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ladder", default=None,
                        help="the ladder's directory (default $RDPIPE_CACHE/ladders/bls2017)")
    parser.add_argument("--hours", type=float, help="train the ladder for at most this long, "
                        "then evaluate what is finished")
    parser.add_argument("--threads", type=int, default=0,
                        help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the finished rungs of the ladder as they are")
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kodak.json"))
    parser.add_argument("--baselines-from", metavar="JSON",
                        help="reuse the classical codecs' points of an earlier kodak.json on the "
                             "same images (Pillow's codecs are deterministic; their timings are "
                             "that run's) instead of re-running them")
    parser.add_argument("--compare-with", action="append", default=[], metavar="NAME=JSON",
                        help="also BD-rate against the rdpipe points of an earlier kodak.json "
                             "(e.g. zoo=benchmarks/results/kodak.json)")
    args = parser.parse_args(argv)
    if args.threads:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    from codec.ladder import cache_root  # pylint: disable=import-outside-toplevel
    args.ladder = args.ladder or str(cache_root() / "ladders" / "bls2017")
    model_dirs = train_models(args)
    if not model_dirs:
        print(f"no finished rung in {args.ladder} yet (see its ladder.json)")
        return 3
    images = image_eval.load_images(KODAK, args.limit)
    log = lambda line: print(line, flush=True)  # noqa: E731
    ours = [{**image_eval.evaluate_model(str(d), images, progress=log)._asdict(),
             "parameter": d.name} for d in model_dirs]
    float16 = float16_weights_cost(model_dirs, ours, images, log)
    baselines = earlier_baselines(args.baselines_from, len(images)) if args.baselines_from \
        else {name: [p._asdict() for p in image_eval.evaluate(name, images, progress=log)]
              for name in BASELINES}
    reference = rd_report.load_published_curves(REFERENCE)
    fronts = {name: [p._asdict() for p in image_eval.pareto_front(
        [image_eval.Point(**q) for q in points])] for name, points in baselines.items()}
    earlier = dict(earlier_runs(args.compare_with))
    bd_psnr, bd_ssim, overlap = rd_report.bd_rate_table(ours, {**fronts, **reference, **earlier})
    curve = anchor_learning_curve(args, images, log)
    result = {
        "bd_rate_psnr": bd_psnr, "bd_rate_ms_ssim": bd_ssim,
        "bd_rate_psnr_interval_db": overlap,
        "targets_bd_rate_psnr": {"jpeg": "<= -30", "webp": "<= +10",
                                 "bls2017_published": "<= +40"},
        "max_encode_seconds": max((p["encode_seconds"] for p in ours), default=None),
        "max_decode_seconds": max((p["decode_seconds"] for p in ours), default=None),
        "target_seconds_per_image": {"encode": 0.07, "decode": 0.09},
        "learning_curve": curve,
        "learning_curves": learning_curves(Path(args.ladder)),
        "rdpipe": ours, "baselines": baselines,
        "units": {"bpp": "bits per pixel (actual bytes)", "psnr": "dB, RGB, peak 255",
                  "ms_ssim": "tf.image.ssim_multiscale (linear); BD-rate in dB",
                  "bd_rate": "percent, negative = rdpipe needs fewer bits; null = curves do "
                             "not overlap in quality or < 4 points",
                  "seconds": "mean per Kodak image, one image per call, after a warm-up"},
        "float16_weights": float16,
        "training": training_summaries(model_dirs),
        "reference": "benchmarks/reference/kodak_published.json (sources cited there)",
        "images": len(images), "command": "make bench-kodak",
        "family": ladder_name(Path(args.ladder)),
        "baselines_from": args.baselines_from, "compared_with": args.compare_with,
        "ladder": str(args.ladder),
        "arguments": {k: v for k, v in vars(args).items() if k not in ("output", "ladder")},
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = rd_report.markdown_report(bd_psnr, bd_ssim, ours, overlap)
    out.with_suffix(".md").write_text(table)
    figures.image_rd_plot({f"rdpipe ({ladder_name(Path(args.ladder))})": ours,
                           **{f"rdpipe {name}": points for name, points in earlier.items()},
                           **fronts}, out.with_suffix(".png"),
                          reference, title=f"Kodak ({len(images)} images)")
    if curve:
        learning_curve_plot(curve, out.with_name(out.stem + "_learning_curve.png"))
    print(table)
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


def ladder_name(root: Path) -> str:
    """The ladder's name (its ladder.json; else the directory's name)."""
    status = root / "ladder.json"
    return json.loads(status.read_text())["name"] if status.exists() else root.name


def earlier_baselines(path: str, images: int) -> dict:
    """The classical codecs' points of an earlier run, which must have coded as many images."""
    earlier = json.loads(Path(path).read_text())
    if earlier.get("images") != images:
        raise SystemExit(f"--baselines-from {path}: it coded {earlier.get('images')} images, "
                         f"this run {images}")
    return {name: earlier["baselines"][name] for name in BASELINES}


def earlier_runs(specs: list[str]) -> list[tuple[str, list[dict]]]:
    """`NAME=JSON` → (NAME, that run's rdpipe points)."""
    out = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--compare-with wants NAME=JSON, got {spec!r}")
        out.append((name, json.loads(Path(path).read_text())["rdpipe"]))
    return out


FLOAT16_MAX_PSNR_DROP_DB = 0.01    # what half-precision storage may cost (issue 18)


def float16_weights_cost(model_dirs: list[Path], ours: list[dict], images, log) -> dict:
    """Each rung exported again with its transforms' weights stored as float16 (half the
    SavedModel; decoding still computes in float32), evaluated on the same images: the PSNR
    (dB) and rate (bpp, actual bytes) it costs against the float32 export. `make zoo` ships
    float16 weights only when `ok` (no model loses more than 0.01 dB)."""
    from codec.models.bls2017_train import reexport_image_codec  # pylint: disable=import-outside-toplevel
    rows = []
    for directory, full in zip(model_dirs, ours):
        export = directory / "saved_model_float16"
        reexport_image_codec(directory, export, weights_dtype="float16")
        half = image_eval.evaluate_model(str(export), images, progress=log)._asdict()
        rows.append({"model": directory.name, "bpp": half["bpp"], "psnr": half["psnr"],
                     "ms_ssim": half["ms_ssim"],
                     "psnr_drop_db": full["psnr"] - half["psnr"],
                     "bpp_change_percent": 100 * (half["bpp"] / full["bpp"] - 1),
                     "saved_model_bytes": sum(f.stat().st_size for f in export.rglob("*")
                                              if f.is_file()),
                     "float32_saved_model_bytes": sum(
                         f.stat().st_size for f in (directory / "saved_model").rglob("*")
                         if f.is_file())})
    worst = max((r["psnr_drop_db"] for r in rows), default=None)
    return {"models": rows, "max_psnr_drop_db": worst,
            "limit_psnr_drop_db": FLOAT16_MAX_PSNR_DROP_DB,
            "ok": worst is not None and worst <= FLOAT16_MAX_PSNR_DROP_DB}


def anchor_learning_curve(args, images, log) -> dict | None:
    """The anchor's probe points (first 4 Kodak images) and its final evaluation on all
    `images`."""
    anchor = next(Path(args.ladder).glob("anchor_l*"), None)
    if anchor is None or not (anchor / "learning_curve.json").exists() or not (
            anchor / "summary.json").exists():
        return None
    final = image_eval.evaluate_model(str(anchor), images, progress=log)
    summary = json.loads((anchor / "summary.json").read_text())
    return {"model": anchor.name, "lmbda": summary["config"]["lmbda"], "probe_images": 4,
            "points": json.loads((anchor / "learning_curve.json").read_text()),
            "final": {"step": summary["steps"], "images": len(images), "bpp": final.bpp,
                      "psnr": final.psnr, "ms_ssim": final.ms_ssim}}


def learning_curves(root: Path) -> dict:
    """Every model's probe points (anchor and rungs, finished or not)."""
    return {d.name: json.loads((d / "learning_curve.json").read_text())
            for d in sorted(root.glob("*_l*")) if (d / "learning_curve.json").exists()}


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
