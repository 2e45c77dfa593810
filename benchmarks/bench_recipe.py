"""The effect of each training-recipe change of the Ballé 2017 codec, measured at a fixed step
count.

Starting from rdpipe's old recipe (Keras convs with Glorot init and a bias on the last analysis
layer, one Adam for everything, sign(0) likelihood, per-file crops without flips), the changes
are added one at a time, in order; each variant trains λ = `--lmbda` for `--steps` steps of
8 × 128² crops from photos-train + photos-train-extra and is evaluated with actual bytes on the
first `--kodak` Kodak images. The figure of merit at a fixed λ is the rate–distortion loss
`bpp + λ·MSE` (lower is better); bpp and PSNR are reported beside it. Two extra rows try the
prior's alternatives (a smaller initial scale instead of its own learning rate) and the
plain kernel parameterization on top of everything else.

Writes benchmarks/results/recipe.json and recipe.md. Run: `make bench-recipe` (~25 min on
2 cores: two variants at a time, one thread each).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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


def variants() -> list[tuple[str, dict]]:
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
    name, options = variants()[index]
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lmbda", type=float, default=.01)
    parser.add_argument("--kodak", type=int, default=8, help="first N Kodak images")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=1, help="TF threads per variant")
    parser.add_argument("--work-dir", default=str(ROOT / ".cache" / "recipe"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "recipe.json"))
    parser.add_argument("--variant", type=int,
                        help="train and evaluate only this variant (printed as JSON)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of weights, noise and crops (run-to-run noise: rerun a "
                             "variant with another seed)")
    args = parser.parse_args(argv)
    if args.variant is not None:
        print(json.dumps(run_variant(args.variant, args)))
        return 0
    common = ["--steps", str(args.steps), "--lmbda", str(args.lmbda), "--kodak", str(args.kodak),
              "--threads", str(args.threads), "--work-dir", args.work_dir]
    pending = list(range(len(variants())))
    running, rows = [], {}
    while pending or running:
        while pending and len(running) < args.jobs:
            index = pending.pop(0)
            running.append((index, subprocess.Popen(
                [sys.executable, __file__, "--variant", str(index), *common],
                stdout=subprocess.PIPE, text=True)))
            print(f"started: {variants()[index][0]}", flush=True)
        index, process = running.pop(0)
        stdout, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"variant {index} failed ({process.returncode})")
        rows[index] = json.loads(stdout.strip().splitlines()[-1])
        row = rows[index]
        print(f"{row['variant']}: Kodak {row['kodak_bpp']:.3f} bpp {row['kodak_psnr']:.2f} dB "
              f"loss {row['kodak_rd_loss']:.4f}", flush=True)
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
