"""The training / evaluation loop that both sides of `make bench-race` run — rdpipe in .venv and
the TensorFlow Compression peer in .venv-peer — so that they see the same crops in the same
order, take the same number of steps and are measured the same way. numpy + Pillow only.

A side provides `train_step(batch uint8 [B, P, P, 3]) -> dict of floats` (one optimizer step,
returning at least `loss`, `bpp`, `mse`) and `codec(images) -> (strings, decoded)` (actual
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

from codec.data.crops import crop_stream, load_image_folders  # noqa: E402

LOG_EVERY = 100   # learning-curve resolution (steps)


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR (dB, peak 255). The same formula as `codec.eval.image_eval.psnr`, which the peer's
    virtualenv cannot import (it pulls in rdpipe's TF 2.16 stack); both sides use this one."""
    mse = float(np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def run(args, train_step: Callable, make_codec: Callable, ms_ssim: Callable,
        kodak: list[np.ndarray]) -> dict:
    """Trains to each of `args.budgets` (ascending) on the shared crop stream and evaluates
    on `kodak` at each; returns the learning curve and one row per budget."""
    images = load_image_folders(args.train_dirs.split(","))
    stream = crop_stream(images, args.patch_size, args.seed, sampling=args.crop_sampling,
                         flips=args.flips)
    curve, rows, window, train_seconds, step = [], [], [], 0.0, 0
    for budget in sorted(args.budgets):
        while step < budget:
            batch = np.stack([next(stream) for _ in range(args.batch_size)])
            start = time.perf_counter()
            metrics = train_step(batch)
            if step >= 5:             # the first steps trace and compile the function
                train_seconds += time.perf_counter() - start
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
            "steps_per_second": (step - 5) / train_seconds if train_seconds else None,
        })
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
