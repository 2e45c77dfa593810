"""The Ballé 2017 training recipe at fixed step counts: learning-rate schedule and data.

Default study (`make bench-recipe`; writes benchmarks/results/recipe.json + .md): λ = `--lmbda`,
8 × 128² crops, the same seed (hence the same initial weights and crop stream) for every run,
all 24 Kodak images with actual bytes. Each row changes one thing against its reference:
- schedule: today's constant 2·10⁻⁴ vs warm-up + cosine decay at peaks 5·10⁻⁴ and 10⁻³ (the
  highest that stays stable is kept), at two budgets (`--short`, `--long` steps);
- data: the cosine recipe on the old 51 photos (photos-train + photos-train-extra) vs all four
  folders (+ photos-train-large, photos-train-imagenet), at `--short` steps.
The figure of merit at a fixed λ is the rate–distortion loss `bpp + λ·MSE` (lower is better).
Runs resume from `--work-dir` (default $RDPIPE_CACHE/recipe): stop the bench at any time
(`--hours`) and run it again to continue. ~6 h of CPU on 2 cores in all.

`--ablation`: the older study of each recipe change at 2,000 steps (recipe_ablation.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from child_runs import run_children  # noqa: E402
DATA = ROOT.parent / "shared" / "data"
TRAIN_DIRS = f"{DATA / 'photos-train'},{DATA / 'photos-train-extra'}"

OLD = dict(parameterization="plain", kernel_init="glorot_uniform", last_analysis_bias=True,
           prior_lr_multiplier=1., legacy_prior_numerics=True, crop_sampling="per_file",
           flips=False)
# Cumulative: each step adds one change to the previous variant.
STEPS = [
    ("old recipe", {}),
    ("+ sign-at-zero fix, likelihood bound with gradient", dict(legacy_prior_numerics=False)),
    ("+ fan-in variance-scaling init (TFC)", dict(kernel_init="variance_scaling")),
    ("+ no bias on the last analysis conv", dict(last_analysis_bias=False)),
    ("+ RDFT kernel parameterization", dict(parameterization="rdft")),
    ("+ prior learning rate x10", dict(prior_lr_multiplier=10.)),
    ("+ area-weighted crops, random flips (new default)", dict(crop_sampling="area",
                                                               flips=True)),
]
EXTRA = [
    ("new default, but prior init scale 1 instead of its own lr",
     dict(prior_lr_multiplier=1., prior_init_scale=1.)),
    ("new default, but plain kernels", dict(parameterization="plain")),
]


def ablation_variants() -> list[tuple[str, dict]]:
    out, current = [], dict(OLD)
    for name, change in STEPS:
        current = {**current, **change}
        out.append((name, dict(current)))
    final = dict(current)
    out += [(name, {**final, **change}) for name, change in EXTRA]
    return out


def run_variant(index: int, args) -> dict:
    """Trains and evaluates one variant (in this process)."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from codec.eval import image_eval
    from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
    name, options = ablation_variants()[index]
    out = Path(args.work_dir) / (f"variant_{index}" + ("" if args.seed == 0 else f"_seed{args.seed}"))
    config = ImageTrainConfig(lmbda=args.lmbda, steps_per_epoch=args.steps // 5, epochs=5,
                              train_dir=TRAIN_DIRS, verbose=0, seed=args.seed, **options)
    summary = train_image_codec(config, out)
    images = image_eval.load_images(DATA / "kodak", args.kodak)
    point = image_eval.evaluate_model(str(out), images)
    mse = 255. ** 2 / 10 ** (point.psnr / 10)
    return {"variant": name, "options": options, "steps": args.steps,
            "kodak_bpp": point.bpp, "kodak_psnr": point.psnr, "kodak_ms_ssim": point.ms_ssim,
            "kodak_rd_loss": point.bpp + args.lmbda * mse,
            "final_train_loss": summary["history"]["loss"][-1],
            "steps_per_second": summary["steps_per_second"]}


STUDY = {   # name: (training options, steps key)
    "constant 2e-4": (dict(schedule="constant", learning_rate=2e-4), "short"),
    "cosine 5e-4": (dict(schedule="cosine", learning_rate=5e-4, warmup_steps=2000), "short"),
    "cosine 1e-3": (dict(schedule="cosine", learning_rate=1e-3, warmup_steps=2000), "short"),
    "cosine 5e-4, 51 photos": (dict(schedule="cosine", learning_rate=5e-4, warmup_steps=2000,
                                    train_dir=TRAIN_DIRS), "short"),
    "constant 2e-4, long": (dict(schedule="constant", learning_rate=2e-4), "long"),
    "cosine 5e-4, long": (dict(schedule="cosine", learning_rate=5e-4, warmup_steps=2000),
                          "long"),
}
COMPARISONS = [   # (what, reference row, test row)
    ("schedule, short budget", "constant 2e-4", "cosine 5e-4"),
    ("peak 1e-3 vs 5e-4", "cosine 5e-4", "cosine 1e-3"),
    ("schedule, long budget", "constant 2e-4, long", "cosine 5e-4, long"),
    ("all four folders vs the 51 photos", "cosine 5e-4, 51 photos", "cosine 5e-4"),
]


def run_study_row(name: str, args) -> dict:
    """Trains (resuming) and evaluates one row of the study in this process."""
    import time
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from codec.data.datasets import DEFAULT_PHOTO_DIRS
    from codec.eval import image_eval
    from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
    options, budget = STUDY[name]
    steps = args.short if budget == "short" else args.long
    options = {"train_dir": ",".join(map(str, DEFAULT_PHOTO_DIRS)), **options}
    config = ImageTrainConfig(lmbda=args.lmbda, steps=steps, steps_per_epoch=1000,
                              precision_policy=args.precision, seed=args.seed, verbose=0,
                              **options)
    out = Path(args.work_dir) / f"{name.replace(' ', '_').replace(',', '')}_{steps}"
    deadline = args.deadline or None
    summary = train_image_codec(config, out, deadline=deadline)
    row = {"variant": name, "options": {k: v for k, v in options.items() if k != "train_dir"},
           "train_dirs": options["train_dir"].split(","), "steps": summary["steps"],
           "total_steps": steps, "finished": summary["finished"]}
    if not summary["finished"]:
        return row
    kodak = image_eval.load_images(DATA / "kodak")
    point = image_eval.evaluate_model(str(out), kodak)
    mse = 255. ** 2 / 10 ** (point.psnr / 10)
    log = summary["history"]
    return {**row, "kodak_bpp": point.bpp, "kodak_psnr": point.psnr,
            "kodak_ms_ssim": point.ms_ssim, "kodak_rd_loss": point.bpp + args.lmbda * mse,
            "final_train_loss": log["loss"][-1] if log["loss"] else None,
            "steps_per_second": summary["steps_per_second"]}


def study_main(args) -> int:
    import time
    deadline = time.time() + 3600 * args.hours if args.hours else 0
    common = ["--short", str(args.short), "--long", str(args.long), "--lmbda", str(args.lmbda),
              "--threads", str(args.threads), "--work-dir", args.work_dir, "--seed",
              str(args.seed), "--precision", args.precision, "--deadline", str(deadline)]
    # Longest first, so the two workers finish together.
    def report(name, row):
        print(f"{name}: " + (f"Kodak {row['kodak_bpp']:.3f} bpp {row['kodak_psnr']:.2f} dB "
                             f"loss {row['kodak_rd_loss']:.4f}" if row["finished"] else
                             f"stopped at step {row['steps']:,} of {row['total_steps']:,}"),
              flush=True)
    rows = run_children(sorted(STUDY, key=lambda n: STUDY[n][1] != "long"),
                        lambda name: [sys.executable, __file__, "--row", name, *common],
                        args.jobs, report)
    unfinished = [n for n, r in rows.items() if not r["finished"]]
    if unfinished:
        print(f"unfinished (run again to continue): {', '.join(unfinished)}")
        return 3
    comparisons = [{"what": what, "reference": ref, "test": test,
                    "rd_loss_change": rows[test]["kodak_rd_loss"] - rows[ref]["kodak_rd_loss"],
                    "psnr_change_db": rows[test]["kodak_psnr"] - rows[ref]["kodak_psnr"],
                    "bpp_change": rows[test]["kodak_bpp"] - rows[ref]["kodak_bpp"]}
                   for what, ref, test in COMPARISONS]
    result = {"lmbda": args.lmbda, "short_steps": args.short, "long_steps": args.long,
              "precision": args.precision or "float32", "batch_size": 8, "patch_size": 128,
              "seed": args.seed, "rows": [rows[n] for n in STUDY], "comparisons": comparisons,
              "units": {"kodak_rd_loss": "bpp + λ·MSE (0–255 pixels), actual bytes, all 24 "
                        "Kodak images; lower is better", "rd_loss_change": "test − reference; "
                        "negative = the test row is better"},
              "command": "make bench-recipe"}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"λ = {args.lmbda}, 8 × 128² crops, {args.precision or 'float32'}, all 24 Kodak "
             "images, actual bytes", "", "| run | steps | bpp | PSNR dB | bpp + λ·MSE |",
             "|---|---|---|---|---|"]
    for name in STUDY:
        r = rows[name]
        lines.append(f"| {name} | {r['steps']:,} | {r['kodak_bpp']:.4f} | {r['kodak_psnr']:.2f} | "
                     f"{r['kodak_rd_loss']:.4f} |")
    lines += ["", "| comparison | Δ loss | Δ PSNR dB | Δ bpp |", "|---|---|---|---|"]
    lines += [f"| {c['what']} ({c['test']} vs {c['reference']}) | {c['rd_loss_change']:+.4f} | "
              f"{c['psnr_change_db']:+.2f} | {c['bpp_change']:+.4f} |" for c in comparisons]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ablation", action="store_true",
                        help="the older change-by-change study at --steps steps")
    parser.add_argument("--steps", type=int, default=2000, help="--ablation: steps per variant")
    parser.add_argument("--kodak", type=int, default=8, help="--ablation: first N Kodak images")
    parser.add_argument("--short", type=int, default=20000, help="short budget (steps)")
    parser.add_argument("--long", type=int, default=80000, help="long budget (steps)")
    parser.add_argument("--precision", default="mixed_bfloat16",
                        help="precision policy of the study ('' = float32)")
    parser.add_argument("--hours", type=float, help="stop (checkpointed) after this long")
    parser.add_argument("--lmbda", type=float, default=.01)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=1, help="TF threads per run")
    parser.add_argument("--work-dir", default=None,
                        help="default $RDPIPE_CACHE/recipe (study), .cache/recipe (ablation)")
    parser.add_argument("--output", default=None, help="default benchmarks/results/recipe.json "
                        "(study), recipe_ablation.json (ablation)")
    parser.add_argument("--variant", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--row", choices=list(STUDY), help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0., help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of weights, noise and crops (run-to-run noise: rerun a "
                             "variant with another seed)")
    args = parser.parse_args(argv)
    results = ROOT / "benchmarks" / "results"
    if args.ablation or args.variant is not None:
        args.work_dir = args.work_dir or str(ROOT / ".cache" / "recipe")
        args.output = args.output or str(results / "recipe_ablation.json")
        if args.variant is not None:
            print(json.dumps(run_variant(args.variant, args)))
            return 0
        return ablation_main(args)
    from codec.ladder import cache_root
    args.work_dir = args.work_dir or str(cache_root() / "recipe")
    args.output = args.output or str(results / "recipe.json")
    if args.row:
        print(json.dumps(run_study_row(args.row, args)))
        return 0
    return study_main(args)


def ablation_main(args) -> int:
    common = ["--steps", str(args.steps), "--lmbda", str(args.lmbda), "--kodak", str(args.kodak),
              "--threads", str(args.threads), "--work-dir", args.work_dir]
    def report(index, row):
        print(f"{row['variant']}: Kodak {row['kodak_bpp']:.3f} bpp {row['kodak_psnr']:.2f} dB "
              f"loss {row['kodak_rd_loss']:.4f}", flush=True)
    rows = run_children(range(len(ablation_variants())),
                        lambda index: [sys.executable, __file__, "--variant", str(index),
                                       *common], args.jobs, report,
                        label=lambda index: ablation_variants()[index][0])
    ordered = [rows[i] for i in sorted(rows)]
    for previous, row in zip([None] + ordered[:len(STEPS) - 1], ordered[:len(STEPS)]):
        row["loss_change_vs_previous"] = None if previous is None else \
            row["kodak_rd_loss"] - previous["kodak_rd_loss"]
    result = {"lmbda": args.lmbda, "steps": args.steps, "kodak_images": args.kodak,
              "batch_size": 8, "patch_size": 128, "variants": ordered,
              "units": {"kodak_rd_loss": "bpp + λ·MSE (0–255 pixels), actual bytes; lower is "
                        "better", "loss_change_vs_previous": "negative = the change helped"},
              "command": "make bench-recipe"}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"λ = {args.lmbda}, {args.steps} steps of 8 × 128², first {args.kodak} Kodak "
             "images, actual bytes", "",
             "| variant | bpp | PSNR dB | bpp + λ·MSE | change |", "|---|---|---|---|---|"]
    for row in ordered:
        change = row.get("loss_change_vs_previous")
        lines.append(f"| {row['variant']} | {row['kodak_bpp']:.3f} | {row['kodak_psnr']:.2f} | "
                     f"{row['kodak_rd_loss']:.4f} | "
                     f"{'' if change is None else f'{change:+.4f}'} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0




if __name__ == "__main__":
    sys.exit(main())
