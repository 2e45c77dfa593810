"""Training the Ballé 2017 codec on a folder of images (random crops), one model per λ.

Output directory layout (as the MNIST trainer's):
  saved_model/      SavedModel: compress / decompress / decompress_unchecked / svd_approximate*
  checkpoints/      tf.train.Checkpoint of trainer + optimizer (training resumes from here)
  logs/             TensorBoard
  summary.json      config, steps/s, final train/validation metrics
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from codec.bls2017 import BLS2017Trainer, ImageCodec
from codec.training import fit_resumable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclasses.dataclass
class ImageTrainConfig:
    """Defaults sized for ~1 hour per λ on 2 CPU cores: 4,000 steps of 8 × 128² crops at
    0.6–0.75 s/step (256² crops cost ~2.8 s/step; see README / bench-kodak)."""

    lmbda: float = .01
    filters: int = 128
    patch_size: int = 128
    batch_size: int = 8
    steps_per_epoch: int = 200
    epochs: int = 20
    learning_rate: float = 2e-4
    # Global gradient-norm clip (0 = off). A run at lr 5e-4 without it diverged after ~1,700
    # steps (IGDN amplifies large activations: MSE 5e2 → 5e15 within one epoch).
    clipnorm: float = 1.0
    channels: int = 3
    tail_mass: float = 2 ** -8
    precision: int = 12
    coder: str = "portable"
    seed: int | None = 0
    verbose: int = 2
    train_dir: str = ""                  # folder of training images (required)
    # Warm start: output dir of another trained model (any λ, same filters/channels) whose
    # newest checkpoint initializes the weights when this run has no checkpoint of its own.
    # Fine-tuning a trained model to a new λ reaches a given loss in a fraction of the steps
    # of a cold start, which is what makes a λ sweep fit a CPU budget.
    init_from: str = ""

    def __post_init__(self):
        if self.lmbda <= 0 or self.filters < 1 or self.patch_size < 16 or self.batch_size < 1:
            raise ValueError("need lmbda > 0, filters ≥ 1, patch_size ≥ 16, batch_size ≥ 1")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 (grey) or 3 (RGB)")


def load_image_folder(folder: str | Path, channels: int = 3) -> list[np.ndarray]:
    """uint8 `[H, W, channels]` arrays of every readable image in `folder` (sorted by name).
    Unreadable files are skipped with a warning; an empty result is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {folder}")
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
        except OSError:
            skipped.append(path.name)
            continue
        images.append(array if channels == 3 else array[..., None])
    if skipped:
        print(f"warning: skipped unreadable images: {', '.join(skipped)}")
    if not images:
        raise FileNotFoundError(f"no readable images in {folder}")
    return images


def random_crops(images: list[np.ndarray], patch_size: int, seed: int | None) -> tf.data.Dataset:
    """Endless uint8 patches `[patch, patch, C]`: a random image, then a random crop (images
    smaller than the patch are edge-padded)."""
    rng = np.random.default_rng(seed)

    def generate():
        while True:
            image = images[int(rng.integers(len(images)))]
            pad = [(0, max(0, patch_size - image.shape[0])), (0, max(0, patch_size - image.shape[1])),
                   (0, 0)]
            if any(p[1] for p in pad[:2]):
                image = np.pad(image, pad, mode="edge")
            top = int(rng.integers(image.shape[0] - patch_size + 1))
            left = int(rng.integers(image.shape[1] - patch_size + 1))
            yield image[top:top + patch_size, left:left + patch_size]

    channels = images[0].shape[-1]
    return tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((patch_size, patch_size, channels), tf.uint8))


def export_image_codec(trainer: BLS2017Trainer, path: str | Path,
                       config: ImageTrainConfig) -> ImageCodec:
    codec = ImageCodec(trainer, tail_mass=config.tail_mass, precision=config.precision,
                       coder=config.coder)
    tf.saved_model.save(codec, str(path), signatures=codec.signatures())
    return codec


def build_image_trainer(config: ImageTrainConfig) -> BLS2017Trainer:
    trainer = BLS2017Trainer(config.lmbda, config.filters, config.channels)
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, **clip))
    trainer(tf.zeros((1, 16, 16, config.channels), tf.uint8))   # create variables
    return trainer


def warm_start(trainer: BLS2017Trainer, init_from: str | Path, output_dir: Path) -> bool:
    """Loads the weights (not the optimizer state) of the newest checkpoint under
    `init_from/checkpoints` into `trainer`, unless `output_dir` already has checkpoints (then
    training resumes from those). Returns whether weights were loaded."""
    if tf.train.latest_checkpoint(str(output_dir / "checkpoints")):
        return False
    source = tf.train.latest_checkpoint(str(Path(init_from) / "checkpoints"))
    if source is None:
        raise FileNotFoundError(f"--init-from {init_from}: no checkpoints under "
                                f"{Path(init_from) / 'checkpoints'}")
    try:   # the optimizer state of the source is deliberately not restored: expect_partial
        status = tf.train.Checkpoint(trainer=trainer).restore(source).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:   # ValueError: a variable's shape differs
        raise ValueError(f"--init-from {init_from}: checkpoint does not match this model "
                         f"(filters/channels differ?): {error}") from error
    print(f"warm start from {source}")
    return True


def train_image_codec(config: ImageTrainConfig, output_dir: str | Path,
                      images: list[np.ndarray] | None = None,
                      saved_model_dir: str | Path | None = None) -> dict:
    """Trains (resuming from `output_dir/checkpoints`), exports, writes summary.json.

    images: uint8 `[H, W, C]` training images (default: read `config.train_dir`);
    saved_model_dir: where to export (default `output_dir/saved_model`). The returned summary
    also holds the in-process `codec` (not written to JSON).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if images is None:
        images = load_image_folder(config.train_dir, config.channels)
    # A resumed run draws new crops rather than replaying the first epochs' crops.
    latest = tf.train.latest_checkpoint(str(output_dir / "checkpoints"))
    crop_seed = None if config.seed is None else \
        config.seed + (int(latest.rsplit("-", 1)[-1]) if latest else 0)
    train = random_crops(images, config.patch_size, crop_seed).batch(config.batch_size)
    train = train.prefetch(2)
    trainer = build_image_trainer(config)
    if config.init_from:
        warm_start(trainer, config.init_from, output_dir)
    history, seconds, initial_epoch = fit_resumable(
        trainer, train, output_dir, epochs=config.epochs, verbose=config.verbose,
        steps_per_epoch=config.steps_per_epoch)
    steps = (config.epochs - initial_epoch) * config.steps_per_epoch
    codec = export_image_codec(trainer, saved_model_dir or output_dir / "saved_model", config)
    summary = {"config": dataclasses.asdict(config), "train_seconds": seconds,
               "steps_per_second": steps / seconds if steps else None,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "codec": codec}
