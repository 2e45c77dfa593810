"""float32 vs mixed_bfloat16 training of the Ballé 2017 codec at equal steps, on the same crops.

Each variant trains λ = `--lmbda` for `--steps` steps of 8 × 128² crops (the default data: all
four photo folders; the same seed, hence the same crop stream and initial weights, for the
fp32 and bf16 rows) with the constant-rate recipe, then is evaluated on all 24 Kodak images with
actual bytes. Run-to-run noise comes from the same fp32 run with another seed. The bf16 model
is evaluated twice: exported in float32 (what rdpipe ships) and with bfloat16 inference (the
cost of bf16 inference in dB). The learning curve of each run (first `--probe-images` Kodak
images every `--probe-every` epochs) is kept.

Writes benchmarks/results/precision.json (+ .md). Run: `make bench-precision` (3 runs of 20,000
steps: ~1.5 h on 2 cores, two at a time with one thread each; runs resume from
$RDPIPE_CACHE/precision if interrupted).
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

VARIANTS = {   # name: (precision policy, seed)
    "fp32": ("", 0),
    "bf16": ("mixed_bfloat16", 0),
    "fp32 seed 1": ("", 1),
}


def run_variant(name: str, args) -> dict:
    """Trains (or resumes) and evaluates one variant in this process."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from codec.data.datasets import DEFAULT_PHOTO_DIRS
    from codec.eval import image_eval
    from codec.models.bls2017_train import (ImageTrainConfig, build_image_trainer,
                                            export_image_codec, train_image_codec)
    policy, seed = VARIANTS[name]
    out = Path(args.work_dir) / name.replace(" ", "_")
    cached = out / "row.json"
    if cached.is_file():       # finished and evaluated before: Kodak is not re-run
        row = json.loads(cached.read_text())
        if row.get("steps") == args.steps:
            return row
    epochs = args.steps // args.steps_per_epoch
    config = ImageTrainConfig(lmbda=args.lmbda, steps_per_epoch=args.steps_per_epoch,
                              epochs=epochs, precision_policy=policy, seed=seed, verbose=0,
                              train_dir=",".join(str(d) for d in DEFAULT_PHOTO_DIRS))
    kodak = image_eval.load_images(DATA / "kodak")
    summary = train_image_codec(config, out, probe_images=kodak[:args.probe_images],
                                probe_every_epochs=args.probe_every)
    point = image_eval.evaluate_model(str(out), kodak)
    row = {"variant": name, "precision_policy": policy or "float32", "seed": seed,
           "steps": epochs * args.steps_per_epoch, "kodak": _point(point, args.lmbda),
           "steps_per_second": _median_steps_per_second(out / "train_log.jsonl"),
           "learning_curve": summary["learning_curve"]}
    if policy:   # the same weights with bf16 inference
        trainer = build_image_trainer(config)
        checkpoint = tf.train.latest_checkpoint(str(out / "checkpoints"))
        tf.train.Checkpoint(trainer=trainer).restore(checkpoint).expect_partial()
        export_image_codec(trainer, out / "saved_model_bf16", config,
                           inference_policy=policy)
        row["kodak_bf16_inference"] = _point(
            image_eval.evaluate_model(str(out / "saved_model_bf16"), kodak), args.lmbda)
    cached.write_text(json.dumps(row, indent=2) + "\n")
    return row


def _median_steps_per_second(log_file: Path) -> float | None:
    """Median training speed over the run's log lines (all sittings of a resumed run; the
    summary of the last sitting alone has no steps when the run was already finished)."""
    rates = [entry["steps_per_second"] for entry in map(json.loads, log_file.read_text()
                                                        .splitlines())
             if entry.get("steps_per_second")] if log_file.is_file() else []
    return float(sorted(rates)[len(rates) // 2]) if rates else None


def _point(point, lmbda: float) -> dict:
    mse = 255. ** 2 / 10 ** (point.psnr / 10)
    return {"bpp": point.bpp, "psnr": point.psnr, "ms_ssim": point.ms_ssim,
            "rd_loss": point.bpp + lmbda * mse, "encode_seconds": point.encode_seconds,
            "decode_seconds": point.decode_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--steps-per-epoch", type=int, default=500)
    parser.add_argument("--lmbda", type=float, default=.01)
    parser.add_argument("--probe-images", type=int, default=4)
    parser.add_argument("--probe-every", type=int, default=8, help="epochs between probes")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=1, help="TF threads per variant")
    parser.add_argument("--work-dir", default=None,
                        help="runs (resumed if there) — default $RDPIPE_CACHE/precision")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "precision.json"))
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.work_dir is None:
        from codec.ladder import cache_root
        args.work_dir = str(cache_root() / "precision")
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return 0
    common = ["--steps", str(args.steps), "--steps-per-epoch", str(args.steps_per_epoch),
              "--lmbda", str(args.lmbda), "--probe-images", str(args.probe_images),
              "--probe-every", str(args.probe_every), "--threads", str(args.threads),
              "--work-dir", args.work_dir]
    def report(name, row):
        k = row["kodak"]
        print(f"{name}: Kodak {k['bpp']:.3f} bpp {k['psnr']:.2f} dB loss {k['rd_loss']:.4f}",
              flush=True)
    rows = run_children(VARIANTS, lambda name: [sys.executable, __file__, "--variant", name,
                                                *common], args.jobs, report)
    write_report(args, [rows[name] for name in VARIANTS])
    return 0


def write_report(args, rows: list[dict]) -> None:
    by_name = {row["variant"]: row for row in rows}
    fp32, bf16, other = (by_name[n]["kodak"] for n in ("fp32", "bf16", "fp32 seed 1"))
    noise = abs(fp32["rd_loss"] - other["rd_loss"])
    difference = bf16["rd_loss"] - fp32["rd_loss"]
    inference = by_name["bf16"]["kodak_bf16_inference"]
    result = {
        "lmbda": args.lmbda, "steps": args.steps, "batch_size": 8, "patch_size": 128,
        "variants": rows,
        "bf16_minus_fp32_rd_loss": difference,
        "seed_noise_rd_loss": noise,
        "bf16_within_noise": abs(difference) <= noise,
        "bf16_inference_psnr_cost_db": fp32_inference_cost(by_name["bf16"]["kodak"], inference),
        "train_speedup_bf16": by_name["bf16"]["steps_per_second"] /
        by_name["fp32"]["steps_per_second"],
        "units": {"rd_loss": "bpp + λ·MSE (0–255 pixels), actual bytes, all 24 Kodak images; "
                  "lower is better", "steps_per_second": "one TF thread per run, two runs at "
                  "once on 2 cores"},
        "command": "make bench-precision",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"λ = {args.lmbda}, {args.steps} steps of 8 × 128², all 24 Kodak images, actual "
             "bytes", "", "| run | bpp | PSNR dB | bpp + λ·MSE | steps/s |", "|---|---|---|---|---|"]
    for row in rows:
        k = row["kodak"]
        lines.append(f"| {row['variant']} | {k['bpp']:.4f} | {k['psnr']:.2f} | "
                     f"{k['rd_loss']:.4f} | {row['steps_per_second']:.2f} |")
    lines.append(f"| bf16, bf16 inference | {inference['bpp']:.4f} | {inference['psnr']:.2f} | "
                 f"{inference['rd_loss']:.4f} | |")
    lines += ["", f"bf16 − fp32: {difference:+.4f} (seed noise {noise:.4f}: "
              f"{'within' if result['bf16_within_noise'] else 'outside'} noise); "
              f"bf16 inference costs {result['bf16_inference_psnr_cost_db']:.3f} dB"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def fp32_inference_cost(float32_inference: dict, bf16_inference: dict) -> float:
    """dB lost by decoding the same model's strings with bfloat16 transforms (positive = worse)."""
    return float32_inference["psnr"] - bf16_inference["psnr"]


if __name__ == "__main__":
    sys.exit(main())
