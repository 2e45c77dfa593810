"""Equal-budget race: rdpipe's Ballé 2017 training against TensorFlow Compression's reference.

Both sides train the same model size (N = `--filters`) at each λ of `--lambdas` on exactly the
same crops (all four photo folders; the batch of step s is `CropSampler.batch(seed, s)` on both
sides: benchmarks/race_loop.py) for the same step budgets (default 5,000 / 10,000 / 20,000),
one after the other on this machine; after each budget both code all Kodak images with actual
bitstreams (rdpipe's portable coder; TFC's range coder) and report bpp / PSNR / MS-SSIM. Each
side runs its own best settings: rdpipe the ladder's recipe (`--rdpipe-recipe ladder`: mixed
bfloat16, warm-up + cosine decay from 5·10⁻⁴ over the largest budget, prior ×10); the peer
(benchmarks/peers/tfc_bls2017.py, run in .venv-peer with TF 2.14.1 + tensorflow-compression
2.14.1) TFC's `models/bls2017.py` settings: `tfc.SignalConv2D` defaults, `tfc.GDN`,
`tfc.NoisyDeepFactorized`, Adam 1e-4, float32.

Hours on 2 cores (≈ 3 h for the defaults), so both sides checkpoint every 10 minutes and after
each budget under `--work-dir` (default $RDPIPE_CACHE/race); `--hours H` stops in time, and
the same command continues where it stopped.

Writes benchmarks/results/race.json with `bd_rate_vs_tfc_equal_steps` (PSNR BD-rate of rdpipe
against TFC at the largest budget, where the λ points allow; percent, negative = rdpipe needs
fewer bits), PSNR at matched bpp, `steps_per_second_ratio` (rdpipe / TFC, medians over the λ
runs) and the per-budget rows, plus race.md and race.png (learning curves and Kodak R-D per
budget). Run: `make bench-race`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import race_loop  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


def rdpipe_side(args) -> dict:
    """rdpipe's side of the race (in this process, .venv)."""
    import tensorflow as tf
    import tf_keras as keras
    from codec.eval import image_eval
    from codec.models.bls2017 import ImageCodec
    from codec.models.bls2017_train import (ImageTrainConfig, build_image_trainer, inference_twin,
                                            round_trip)
    from codec.train_loop import build_optimizers

    race_loop.set_threads(tf, args.threads)
    keras.utils.set_random_seed(args.seed)
    budget = max(args.budgets)
    recipe = dict(precision_policy="mixed_bfloat16", schedule="cosine", learning_rate=5e-4,
                  warmup_steps=min(2000, budget // 10)) if args.rdpipe_recipe == "ladder" else {}
    config = ImageTrainConfig(lmbda=args.lmbda, filters=args.filters, patch_size=args.patch_size,
                              batch_size=args.batch_size, steps=budget, **recipe)
    trainer = build_image_trainer(config)
    build_optimizers(trainer)
    step_fn = tf.function(trainer.optimize, input_signature=[
        tf.TensorSpec((args.batch_size, args.patch_size, args.patch_size, 3), tf.uint8),
        tf.TensorSpec((2,), tf.int64)], autograph=False)
    def step(batch, step_number):   # stateless noise of this step: resumes exactly
        out = step_fn(tf.constant(batch), tf.constant([args.seed, step_number], tf.int64))
        return {k: float(out[k]) for k in ("loss", "bpp", "mse")}

    def make_codec():
        codec = ImageCodec(inference_twin(trainer, config), tail_mass=config.tail_mass,
                           precision=config.precision, coder=config.coder)
        return lambda images: round_trip(codec, images)

    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer,
                                     prior_optimizer=trainer.prior_optimizer)
    manager = tf.train.CheckpointManager(checkpoint, args.checkpoint_dir, max_to_keep=2)
    checkpoints = race_loop.Checkpoints(manager, args.checkpoint_dir)
    kodak = race_loop.load_kodak(args.kodak, args.kodak_limit)
    result = race_loop.run(args, step, make_codec, image_eval.ms_ssim, kodak, checkpoints)
    if result is None:
        return None
    result.update(library=f"rdpipe (TF {tf.__version__})",
                  optimizer=f"Adam {config.learning_rate:g} ({config.schedule}"
                            + (f", {config.warmup_steps} warm-up" if config.warmup_steps else "")
                            + f"; prior ×{config.prior_lr_multiplier:g}), global clipnorm "
                            f"{config.clipnorm:g}, {config.precision_policy or 'float32'}",
                  settings=f"rdpipe recipe '{args.rdpipe_recipe}'")
    return result


def run_side(side: str, lmbda: float, args, work: Path, budgets: list[int] | None = None,
             tag: str = "", kodak_limit: int | None = None, threads: int | None = None) -> dict:
    budgets = budgets or args.budgets
    out = work / f"{side}_lmbda_{lmbda:g}{tag}.json"
    if args.fresh:
        import shutil
        shutil.rmtree(work / f"{side}_lmbda_{lmbda:g}{tag}_ckpt", ignore_errors=True)
    if out.exists() and json.loads(out.read_text())["budgets"][-1]["steps"] >= max(budgets) \
            and not args.fresh:
        return json.loads(out.read_text())
    python = str(PEER_PYTHON) if side == "tfc" else sys.executable
    script = str(HERE / "peers" / "tfc_bls2017.py") if side == "tfc" else __file__
    command = [python, script, "--side", side, "--lmbda", str(lmbda),
               "--budgets", *map(str, budgets), "--train-dirs", args.train_dirs,
               "--kodak", args.kodak, "--patch-size", str(args.patch_size),
               "--batch-size", str(args.batch_size), "--filters", str(args.filters),
               "--seed", str(args.seed), "--output", str(out),
               "--threads", str(args.threads if threads is None else threads),
               "--checkpoint-dir", str(work / f"{side}_lmbda_{lmbda:g}{tag}_ckpt"),
               "--deadline", str(args.deadline), "--rdpipe-recipe", args.rdpipe_recipe]
    kodak_limit = kodak_limit or args.kodak_limit
    if kodak_limit:
        command += ["--kodak-limit", str(kodak_limit)]
    print(f"== {side} λ={lmbda:g}", flush=True)
    if subprocess.run(command).returncode == 3:
        raise Stopped(f"{side} λ={lmbda:g} stopped at the deadline")
    if not out.exists():
        raise SystemExit(f"{side} λ={lmbda:g} failed")
    return json.loads(out.read_text())


class Stopped(Exception):
    """A side stopped at `--hours` (checkpointed; `make bench-race` again continues)."""


def matched_psnr(reference: list, test: list) -> list[dict]:
    """For each (bpp, PSNR) point of `test`: the reference's PSNR at the same bpp (linear in
    log bpp between its two nearest points; None outside its range) and the gain in dB."""
    import numpy as np
    reference = sorted(reference)
    rates = np.log([bpp for bpp, _ in reference])
    out = []
    for bpp, psnr in sorted(test):
        inside = len(reference) >= 2 and rates[0] <= np.log(bpp) <= rates[-1]
        at = float(np.interp(np.log(bpp), rates, [q for _, q in reference])) if inside else None
        out.append({"bpp": bpp, "psnr": psnr, "reference_psnr": at,
                    "gain_db": None if at is None else psnr - at})
    return out


def summarize(runs: dict, speed_runs: dict, args) -> dict:
    from codec.eval.image_eval import bd_rate, pareto_front, quality_overlap
    import numpy as np

    def curve(side, budget):
        """The Pareto front (bpp, PSNR) of one side's λ models at one budget."""
        return pareto_front([(row["bpp"], row["psnr"]) for run in runs[side]
                             for row in run["budgets"] if row["steps"] == budget],
                            rate=lambda p: p[0], quality=lambda p: p[1])

    per_budget = []
    for budget in sorted(args.budgets):
        ours, theirs = curve("rdpipe", budget), curve("tfc", budget)
        try:
            bd = bd_rate(theirs, ours)
            interval = quality_overlap(theirs, ours)
        except ValueError as error:     # < 4 points or no overlap
            bd, interval = None, str(error)
        per_budget.append({"steps": budget, "bd_rate_psnr_vs_tfc": bd,
                           "psnr_interval_db": interval,
                           "psnr_gain_at_matched_bpp": matched_psnr(theirs, ours),
                           "rdpipe": [{"lmbda": r["lmbda"], **row} for r in runs["rdpipe"]
                                      for row in r["budgets"] if row["steps"] == budget],
                           "tfc": [{"lmbda": r["lmbda"], **row} for r in runs["tfc"]
                                   for row in r["budgets"] if row["steps"] == budget]})
    speed = {side: float(np.median([r["budgets"][-1]["steps_per_second"] for r in runs[side]]))
             for side in runs}
    quiet = {side: float(np.median([r["budgets"][-1]["steps_per_second"]
                                    for r in speed_runs[side]])) for side in speed_runs}
    return {
        "bd_rate_vs_tfc_equal_steps": per_budget[-1]["bd_rate_psnr_vs_tfc"],
        "steps_per_second_ratio": quiet["rdpipe"] / quiet["tfc"],
        "steps_per_second": quiet,
        "steps_per_second_measurement": f"{args.speed_steps} steps per side (after 5 warm-up "
                                        f"steps), sides alternated {args.speed_rounds}× at "
                                        "λ = 0.01, TF default threads, nothing else running; "
                                        "median",
        "steps_per_second_during_race": speed,
        "targets": {"bd_rate_vs_tfc_equal_steps": "<= 0", "steps_per_second_ratio": ">= 1.0"},
        "budgets": per_budget,
        "learning_curves": {side: {f"{r['lmbda']:g}": r["learning_curve"] for r in runs[side]}
                            for side in runs},
        "setup": {"lambdas": args.lambdas, "filters": args.filters,
                  "patch_size": args.patch_size, "batch_size": args.batch_size,
                  "seed": args.seed, "train_dirs": "all four photo folders (623 photos)",
                  "crops": "area-weighted, random flips (codec/data/crops.py), identical for both",
                  "kodak_images": args.kodak_limit or 24,
                  "rdpipe": runs["rdpipe"][0]["library"] + "; " + runs["rdpipe"][0]["optimizer"],
                  "tfc": runs["tfc"][0]["library"] + "; " + runs["tfc"][0]["optimizer"],
                  "threads": f"race runs: {args.threads or 'TF default'} intra-op threads",
                  "machine": f"{os.cpu_count()} CPU cores"},
        "units": {"bd_rate": "percent (PSNR), negative = rdpipe needs fewer bits",
                  "bpp": "bits per pixel of actual strings (TFC: the range-coded string; "
                         "rdpipe: the string incl. its 4-6 byte size header)",
                  "psnr": "dB, RGB, peak 255, mean over images"},
        "command": "make bench-race",
    }


def write_outputs(result: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"rdpipe vs TensorFlow Compression, equal steps ({result['setup']['batch_size']} × "
             f"{result['setup']['patch_size']}² crops, N = {result['setup']['filters']}), "
             f"Kodak ({result['setup']['kodak_images']} images), actual bitstreams", "",
             "| steps | λ | rdpipe bpp | rdpipe PSNR | TFC bpp | TFC PSNR |",
             "|---|---|---|---|---|---|"]
    for budget in result["budgets"]:
        for ours, theirs in zip(budget["rdpipe"], budget["tfc"]):
            lines.append(f"| {budget['steps']} | {ours['lmbda']:g} | {ours['bpp']:.3f} | "
                         f"{ours['psnr']:.2f} | {theirs['bpp']:.3f} | {theirs['psnr']:.2f} |")
    lines += ["", "| steps | BD-rate (PSNR) rdpipe vs TFC | PSNR gain at matched bpp (dB) |",
              "|---|---|---|"]
    for budget in result["budgets"]:
        bd = budget["bd_rate_psnr_vs_tfc"]
        gains = ", ".join(f"{g['gain_db']:+.2f} @ {g['bpp']:.3f} bpp"
                          for g in budget["psnr_gain_at_matched_bpp"] if g["gain_db"] is not None)
        lines.append(f"| {budget['steps']} | {'n/a' if bd is None else f'{bd:+.1f} %'} | "
                     f"{gains or 'no overlap in bpp'} |")
    speed = result["steps_per_second"]
    lines += ["", f"Steps/s: rdpipe {speed['rdpipe']:.2f}, TFC {speed['tfc']:.2f} "
              f"(ratio {result['steps_per_second_ratio']:.2f})"]
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(result, output.with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (curves, rd) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for side, style in (("rdpipe", "-"), ("tfc", "--")):
        for color, (lmbda, curve) in zip(colors, result["learning_curves"][side].items()):
            curves.plot([c["step"] for c in curve], [c["loss"] for c in curve], style,
                        color=color, label=f"{side} λ={lmbda}")
    curves.set(xlabel="step", ylabel="train loss (bpp + λ·MSE, noisy latents)", yscale="log",
               title="Learning curves (same crops)")
    curves.legend(fontsize=8)
    markers = "os^D"
    for index, budget in enumerate(result["budgets"]):
        for side, style in (("rdpipe", "-"), ("tfc", "--")):
            points = sorted((p["bpp"], p["psnr"]) for p in budget[side])
            rd.plot(*zip(*points), style, marker=markers[index % 4],
                    color=colors[0] if side == "rdpipe" else colors[1],
                    alpha=.4 + .6 * (index + 1) / len(result["budgets"]),
                    label=f"{side}, {budget['steps']} steps")
    rd.set(xlabel="bits per pixel (actual)", ylabel="PSNR (dB, RGB)",
           title=f"Kodak ({result['setup']['kodak_images']} images)")
    rd.grid(alpha=.3)
    rd.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if "--side" in (argv if argv is not None else sys.argv[1:]):
        race_loop.add_arguments(parser)
        args = parser.parse_args(argv)
        args.flips = bool(args.flips)
        result = rdpipe_side(args)
        if result is None:
            return 3                 # stopped at the deadline: run again to continue
        race_loop.write(result, args.output)
        return 0
    parser.add_argument("--lambdas", type=float, nargs="+", default=[.0035, .025])
    parser.add_argument("--budgets", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--hours", type=float, help="stop (checkpointed) after this long; "
                        "run again to continue")
    parser.add_argument("--rdpipe-recipe", default="ladder", choices=["ladder", "constant"],
                        help="rdpipe's settings: the ladder's (bf16, warm-up + cosine from "
                             "5e-4) or the old constant 2e-4 in float32")
    parser.add_argument("--filters", type=int, default=128)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kodak-limit", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="ignore finished runs in --work-dir")
    parser.add_argument("--threads", type=int, default=0,
                        help="TF intra-op threads of the race runs (0: TF's default)")
    parser.add_argument("--speed-steps", type=int, default=150,
                        help="steps of each quiet speed run")
    parser.add_argument("--speed-rounds", type=int, default=2)
    parser.add_argument("--speed-only", action="store_true",
                        help="only the quiet steps/s measurement (printed, not written)")
    parser.add_argument("--work-dir", default=None,
                        help="runs and checkpoints (default $RDPIPE_CACHE/race)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "race.json"))
    args = parser.parse_args(argv)
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} missing: run `make bench-race` (it creates .venv-peer)")
    from codec.data.datasets import DEFAULT_PHOTO_DIRS
    from codec.ladder import cache_root
    import time
    args.train_dirs = ",".join(map(str, DEFAULT_PHOTO_DIRS))
    args.kodak = str(DATA / "kodak")
    args.deadline = time.time() + 3600 * args.hours if args.hours else 0.
    work = Path(args.work_dir or cache_root() / "race")
    work.mkdir(parents=True, exist_ok=True)
    try:
        return race(args, work)
    except Stopped as stopped:
        print(f"{stopped}; run the same command again to continue")
        return 3


def race(args, work: Path) -> int:
    runs = {"rdpipe": [], "tfc": []}
    if not args.speed_only:
        for lmbda in sorted(args.lambdas):
            for side in ("rdpipe", "tfc"):
                runs[side].append(run_side(side, lmbda, args, work))
    # Steps/s on a quiet machine: short runs of each side, alternated.
    speed_runs = {"rdpipe": [], "tfc": []}
    for round_ in range(args.speed_rounds):
        for side in ("rdpipe", "tfc"):
            speed_runs[side].append(run_side(side, .01, args, work, [args.speed_steps],
                                             f"_speed{round_}", kodak_limit=1, threads=0))
    if args.speed_only:
        print(json.dumps({s: [r["budgets"][-1]["steps_per_second"] for r in rs]
                          for s, rs in speed_runs.items()}))
        return 0
    write_outputs(summarize(runs, speed_runs, args), Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
