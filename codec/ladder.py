"""A quality ladder trained as one resumable job: an anchor model, then every λ fine-tuned from it.

`rdpipe train-zoo` / `make train-zoo` call `run_ladder`. Each model is a directory under the
ladder's root (default `$RDPIPE_CACHE/ladders/<name>`, `$RDPIPE_CACHE` defaulting to
`~/.cache/rdpipe`: outside the work tree, so a clean checkout, `git clean` or a new clone keep
the hours of training):

    anchor_l0.013/        the anchor (λ = `anchor_lmbda`, `anchor_steps` steps from scratch)
    q1_l0.0018/ … qN_…/   one per λ, `finetune_steps` steps from the anchor's final weights
    ladder.json           the plan and how far each model got (rewritten atomically)

Every model trains with `train_image_codec` (codec/train_loop.py: checkpoints every
`checkpoint_minutes`, exact resume, progress lines, a Kodak-subset learning curve). Running the
job again continues where it stopped — inside a model, or with the next model — so it can be
stopped at any moment (`--hours`, SIGTERM, Ctrl-C, or a kill) and restarted in a later session.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from codec.data.datasets import DEFAULT_PHOTO_DIRS
from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
from codec.train_loop import atomic_write_text, read_log

# CompressAI's λ for its MSE models of quality 1–8 (bmshj2018-factorized, …): the same scale
# as rdpipe's loss `bpp + λ·MSE` with MSE on 0–255 pixels. Its factorized models span
# ≈ 0.12–1.6 bpp on Kodak with them.
COMPRESSAI_MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
# CompressAI's λ for its MS-SSIM models of quality 1–8: loss bpp + λ·(1 − MS-SSIM).
COMPRESSAI_MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)


def cache_root() -> Path:
    """`$RDPIPE_CACHE`, default `~/.cache/rdpipe`."""
    return Path(os.environ.get("RDPIPE_CACHE") or Path.home() / ".cache" / "rdpipe")


@dataclasses.dataclass
class LadderConfig:
    """The whole ladder. `base` holds every training option shared by its models (data,
    precision, learning rate, schedule, …); steps and λ come from the fields here."""

    name: str = "bls2017"
    lambdas: tuple[float, ...] = COMPRESSAI_MSE_LAMBDAS
    anchor_lmbda: float = 0.0130
    anchor_steps: int = 150_000
    finetune_steps: int = 30_000
    # Warm-up of the anchor's schedule; fine-tunes start from trained weights and a fresh
    # Adam, so a short warm-up keeps the first large updates of an empty Adam state small.
    # A trained model dir whose weights start the anchor ("" = from scratch): e.g. the MSE
    # ladder's anchor for an MS-SSIM ladder, which CompressAI also fine-tunes from MSE models.
    anchor_init_from: str = ""
    anchor_warmup_steps: int = 2_000
    finetune_warmup_steps: int = 500
    probe_images: int = 4          # first N Kodak images for the learning curves
    probe_every: int = 5_000       # steps
    base: ImageTrainConfig = dataclasses.field(default_factory=lambda: ImageTrainConfig(
        learning_rate=5e-4, schedule="cosine", precision_policy="auto",
        train_dir=",".join(map(str, DEFAULT_PHOTO_DIRS)), steps_per_epoch=1000))

    def anchor_config(self) -> ImageTrainConfig:
        return dataclasses.replace(self.base, lmbda=self.anchor_lmbda, steps=self.anchor_steps,
                                   warmup_steps=self.anchor_warmup_steps,
                                   init_from=self.anchor_init_from)

    def model_config(self, lmbda: float, anchor_dir: Path) -> ImageTrainConfig:
        return dataclasses.replace(self.base, lmbda=lmbda, steps=self.finetune_steps,
                                   warmup_steps=self.finetune_warmup_steps,
                                   init_from=str(anchor_dir))

    def model_dirs(self, root: Path) -> list[tuple[str, Path]]:
        """(label, directory) of the anchor and of each rung, in training order."""
        rungs = [(f"q{i + 1}", root / f"q{i + 1}_l{lmbda:g}")
                 for i, lmbda in enumerate(sorted(self.lambdas))]
        return [("anchor", root / f"anchor_l{self.anchor_lmbda:g}")] + rungs


def model_progress(directory: Path, total: int) -> dict:
    """How far one model of the ladder got: steps logged, done or not, its last probe."""
    summary = directory / "summary.json"
    log = read_log(directory)
    curve_file = directory / "learning_curve.json"
    curve = json.loads(curve_file.read_text()) if curve_file.exists() else []
    return {"directory": str(directory), "steps": log[-1]["step"] if log else 0,
            "total_steps": total, "finished": summary.exists(),
            "last_probe": curve[-1] if curve else None}


def write_status(config: LadderConfig, root: Path) -> dict:
    labels = config.model_dirs(root)
    totals = [config.anchor_steps] + [config.finetune_steps] * len(config.lambdas)
    status = {"name": config.name, "config": _jsonable(config),
              "models": {label: model_progress(directory, total)
                         for (label, directory), total in zip(labels, totals)},
              "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
    done = sum(m["steps"] for m in status["models"].values())
    status["steps_done"], status["steps_total"] = done, sum(totals)
    atomic_write_text(root / "ladder.json", json.dumps(status, indent=1) + "\n")
    return status


def _jsonable(config: LadderConfig) -> dict:
    out = dataclasses.asdict(config)
    out["lambdas"] = list(config.lambdas)
    return out


def run_ladder(config: LadderConfig, root: Path | None = None, *, hours: float | None = None,
               probe_images: list[np.ndarray] | None = None,
               images: list[np.ndarray] | None = None) -> dict:
    """Trains (or continues) the ladder until it is complete or `hours` have passed; returns
    the status (also in `root/ladder.json`). `images`: training images (default: the base
    config's folders, read once for all models)."""
    from codec.data.crops import load_image_folders  # pylint: disable=import-outside-toplevel
    root = Path(root or cache_root() / "ladders" / config.name)
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 3600 * hours if hours else None
    (_, anchor_dir), *rungs = config.model_dirs(root)
    write_status(config, root)
    jobs = [(config.anchor_config(), anchor_dir)] + [
        (config.model_config(lmbda, anchor_dir), directory)
        for lmbda, (_, directory) in zip(sorted(config.lambdas), rungs)]
    for train_config, directory in jobs:
        if (directory / "summary.json").exists():
            continue
        if deadline is not None and time.time() >= deadline:
            break
        if images is None:
            images = load_image_folders(train_config.train_dirs, train_config.channels)
            print(f"{len(images)} training images, "
                  f"{sum(i.shape[0] * i.shape[1] for i in images) / 1e6:.0f} Mpixels", flush=True)
        print(f"== {directory.name}: λ={train_config.lmbda:g}, {train_config.total_steps:,} "
              "steps" + (f", from {Path(train_config.init_from).name}"
                         if train_config.init_from else ""), flush=True)
        summary = train_image_codec(train_config, directory, images=images,
                                    probe_images=probe_images,
                                    probe_every_steps=config.probe_every, deadline=deadline)
        write_status(config, root)
        if not summary["finished"]:
            break
    status = write_status(config, root)
    print(f"ladder {config.name}: {status['steps_done']:,} of {status['steps_total']:,} steps "
          f"({100 * status['steps_done'] / status['steps_total']:.1f} %) → {root / 'ladder.json'}",
          flush=True)
    return status
