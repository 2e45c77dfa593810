"""The training / evaluation loop that both sides of `make bench-race` run — rdpipe in .venv and
the TensorFlow Compression peer in .venv-peer — so that they see the same crops in the same
order, take the same number of steps and are measured the same way. numpy + Pillow only.

A side provides `train_step(batch uint8 [B, P, P, 3], step) -> dict of floats` (one optimizer
step at step number `step`, returning at least `loss`, `bpp`, `mse`) and `codec(images) -> (strings, decoded)` (actual
entropy-coded bytes per Kodak image and the decoded uint8 images), built after each budget.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codec.data.crops import CropSampler, load_image_folders  # noqa: E402

LOG_EVERY = 100   # learning-curve resolution (steps)


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR (dB, peak 255). The same formula as `codec.eval.image_eval.psnr`, which the peer's
    virtualenv cannot import (it pulls in rdpipe's TF 2.16 stack); both sides use this one."""
    mse = float(np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


class Checkpoints:
    """A side's resumable state under `directory`: its TF checkpoint (model + optimizer, via
    the side's `tf.train.CheckpointManager`) and the loop's own state (step, learning curve,
    rows, seconds) in `loop_state.json`, written atomically after the checkpoint."""

    def __init__(self, manager, directory: Path):
        self.manager, self.file = manager, Path(directory) / "loop_state.json"

    def restore(self) -> dict:
        if not self.file.exists() or self.manager.latest_checkpoint is None:
            return {"step": 0, "curve": [], "rows": [], "train_seconds": 0.0, "timed_steps": 0}
        state = json.loads(self.file.read_text())
        self.manager.checkpoint.restore(
            str(Path(self.manager.directory) / f"ckpt-{state['step']}"))
        return state

    def save(self, state: dict) -> None:
        self.manager.save(checkpoint_number=state["step"])
        temporary = self.file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self.file)


def run(args, train_step: Callable, make_codec: Callable, ms_ssim: Callable,
        kodak: list[np.ndarray], checkpoints: Checkpoints) -> dict | None:
    """Trains to each of `args.budgets` (ascending) on the shared crops and evaluates on
    `kodak` at each; returns the learning curve and one row per budget, or None when it
    stopped at `args.deadline` (checkpointed: run again to continue). The batch of step s is
    `CropSampler.batch(seed, s)` on both sides, so a resumed side sees the crops it would have
    seen; checkpoints every 10 minutes and after each budget."""
    images = load_image_folders(args.train_dirs.split(","))
    sampler = CropSampler(images, args.patch_size, sampling=args.crop_sampling,
                          flips=args.flips)
    state = checkpoints.restore()
    step, curve, rows = state["step"], state["curve"], state["rows"]
    if step:
        print(f"[{args.side} λ={args.lmbda:g}] resuming at step {step}", file=sys.stderr,
              flush=True)
    window, timed_steps, last_save = [], 0, time.perf_counter()
    for budget in sorted(args.budgets):
        if any(row["steps"] == budget for row in rows):
            continue
        while step < budget:
            batch = sampler.batch(args.seed, step, args.batch_size)
            start = time.perf_counter()
            metrics = train_step(batch, step)
            if timed_steps >= 5:     # the first steps after a (re)start trace and compile
                state["train_seconds"] += time.perf_counter() - start
                state["timed_steps"] += 1
            timed_steps += 1
            window.append(metrics)
            step += 1
            if step % LOG_EVERY == 0:
                curve.append({"step": step, **{k: float(np.mean([m[k] for m in window]))
                                               for k in window[0]}})
                window = []
                if step % (LOG_EVERY * 10) == 0:
                    print(f"[{args.side} λ={args.lmbda:g}] step {step}: "
                          + " ".join(f"{k} {v:.4g}" for k, v in curve[-1].items()
                                     if k != "step"), file=sys.stderr, flush=True)
            stop = args.deadline and time.time() >= args.deadline
            if stop or time.perf_counter() - last_save >= 600:
                checkpoints.save({**state, "step": step, "curve": curve, "rows": rows})
                last_save = time.perf_counter()
            if stop:
                print(f"[{args.side} λ={args.lmbda:g}] stopped at step {step} (deadline)",
                      file=sys.stderr, flush=True)
                return None
        encode = make_codec()
        start = time.perf_counter()
        strings, decoded = encode(kodak)
        pixels = [i.shape[0] * i.shape[1] for i in kodak]
        rows.append({
            "steps": budget,
            "bpp": float(np.mean([8 * len(s) / n for s, n in zip(strings, pixels)])),
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(kodak, decoded)])),
            "ms_ssim": float(np.mean([ms_ssim(a, b) for a, b in zip(kodak, decoded)])),
            "eval_seconds": time.perf_counter() - start,
            "steps_per_second": state["timed_steps"] / state["train_seconds"]
            if state["train_seconds"] else None,
        })
        checkpoints.save({**state, "step": step, "curve": curve, "rows": rows})
        print(f"[{args.side} λ={args.lmbda:g}] {budget} steps: Kodak {rows[-1]['bpp']:.3f} bpp "
              f"{rows[-1]['psnr']:.2f} dB", file=sys.stderr, flush=True)
    return {"side": args.side, "lmbda": args.lmbda, "budgets": rows, "learning_curve": curve}


def add_arguments(parser) -> None:
    parser.add_argument("--side", required=True)
    parser.add_argument("--lmbda", type=float, required=True)
    parser.add_argument("--budgets", type=int, nargs="+", required=True)
    parser.add_argument("--train-dirs", required=True, help="comma-separated folders")
    parser.add_argument("--kodak", required=True, help="Kodak folder")
    parser.add_argument("--kodak-limit", type=int, default=None)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--filters", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop-sampling", default="area")
    parser.add_argument("--flips", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0,
                        help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--checkpoint-dir", required=True,
                        help="this side's checkpoints (the run resumes from them)")
    parser.add_argument("--deadline", type=float, default=0.,
                        help="time.time() at which to checkpoint and stop (0: none)")
    parser.add_argument("--rdpipe-recipe", default="ladder",
                        help="rdpipe side: 'ladder' (bf16, warm-up + cosine from 5e-4 over "
                             "the largest budget) or 'constant' (fp32, 2e-4)")


def set_threads(tf, threads: int) -> None:
    """Pins TF's thread pools (before any op runs); 0 leaves TF's defaults."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def load_kodak(folder: str, limit: int | None) -> list[np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    files = sorted(Path(folder).glob("*.png"))[:limit]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def write(result: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
