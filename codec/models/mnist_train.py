"""Training one MNIST codec per λ, with the tutorial's defaults, and exporting it.

Output directory layout (`train_mnist(config)`):
  saved_model/      SavedModel: compress / decompress / decompress_unchecked signatures
  checkpoints/      tf.train.Checkpoint of trainer + optimizer (resume, later fine-tuning)
  logs/             TensorBoard event files (train/validation loss, rate, distortion)
  training.json     config, per-epoch history and wall time
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from codec.data.datasets import load_mnist
from codec.models.mnist import MNISTCodec, MNISTCompressionTrainer
from codec.training import export_codec_module, fit_resumable


@dataclasses.dataclass
class MnistTrainConfig:
    """Defaults are the tutorial's: Adam 1e-3, batch 128, 15 epochs, 50 latents."""

    lmbda: float = 2000.
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    latent_dims: int = 50
    decoder_input: str = "noisy"        # "noisy" (tutorial) or "quantized" (see MNISTCompressionTrainer)
    train_split: str = "train"          # TFDS split syntax, e.g. "train[:2000]" for tiny runs
    validation_split: str = "test"
    normalization: str = "none"         # hidden layers: none, spectral (σ_max = 1), pixel (PixelNorm)
    tail_mass: float = 2 ** -8
    precision: int = 12                 # range coder precision (bits)
    coder: str = "portable-range"      # entropy coder: portable-range / portable (stock TF ops) or tfc
    seed: int | None = 0
    verbose: int = 1                    # Keras progress output: 0 silent, 1 bar, 2 line/epoch
    data_dir: str | None = None         # TFDS data dir
    mnist_dir: str | None = None        # directory with the four IDX files
    # XLA-compile the train step (tf_keras's "auto" makes no difference on CPU: same first step
    # and ms/step, benchmarks/results/mnist_trainer_speed.json); off unless asked for.
    jit_compile: bool = False

    def __post_init__(self):
        if self.lmbda <= 0:
            raise ValueError(f"lambda must be > 0, got {self.lmbda}")
        if self.epochs < 1 or self.batch_size < 1 or self.latent_dims < 1:
            raise ValueError("epochs, batch_size and latent_dims must be positive")


def _images_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda image, label: image, num_parallel_calls=tf.data.AUTOTUNE)


def tfds_images(config: MnistTrainConfig) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Unbatched uint8 `[28, 28, 1]` train / validation images from TFDS (see codec.data.datasets)."""
    train = load_mnist(config.train_split, config.data_dir, config.mnist_dir, shuffle_files=True)
    validation = load_mnist(config.validation_split, config.data_dir, config.mnist_dir)
    return _images_only(train), _images_only(validation)


def batch_for_training(config: MnistTrainConfig, train: tf.data.Dataset,
                       validation: tf.data.Dataset) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    train = train.cache().shuffle(10_000, seed=config.seed).batch(config.batch_size).prefetch(8)
    return train, validation.batch(config.batch_size).cache()


def build_trainer(config: MnistTrainConfig) -> MNISTCompressionTrainer:
    trainer = MNISTCompressionTrainer(config.latent_dims, config.lmbda, config.decoder_input,
                                      config.normalization)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                    jit_compile=config.jit_compile)
    trainer(tf.zeros((1, 28, 28, 1), tf.uint8))  # create variables
    return trainer


def export_codec(trainer: MNISTCompressionTrainer, path: str | Path,
                 config: MnistTrainConfig) -> MNISTCodec:
    """Builds the coding tables from the trained prior and writes the SavedModel."""
    return export_codec_module(MNISTCodec, trainer, path, config)


def reexport_mnist_codec(model_dir: str | Path, saved_model_dir: str | Path,
                         **changes) -> MNISTCodec:
    """Exports a trained MNIST model again from its newest checkpoint and `training.json`,
    with config `changes` (e.g. `coder="portable"`: the same weights and tables under another
    entropy coder, to compare strings on the same latents)."""
    model_dir = Path(model_dir)
    fields = {f.name for f in dataclasses.fields(MnistTrainConfig)}
    saved = json.loads((model_dir / "training.json").read_text())["config"]
    config = dataclasses.replace(
        MnistTrainConfig(**{k: v for k, v in saved.items() if k in fields}), **changes)
    trainer = build_trainer(config)
    tf.train.Checkpoint(trainer=trainer).restore(
        tf.train.latest_checkpoint(model_dir / "checkpoints")).expect_partial()
    return export_codec(trainer, saved_model_dir, config)


def train_mnist(config: MnistTrainConfig, output_dir: str | Path,
                images: tuple[tf.data.Dataset, tf.data.Dataset] | None = None,
                saved_model_dir: str | Path | None = None) -> dict:
    """Trains, checkpoints, logs and exports one MNIST codec.

    Returns the training summary (also written to `training.json`) plus `"codec"`: the
    in-process `MNISTCodec` that was exported.

    images: unbatched uint8 `[28, 28, 1]` (train, validation) datasets; default: TFDS MNIST
    per `config`. saved_model_dir: where to export (default `output_dir/saved_model`).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    train, validation = batch_for_training(config, *(images or tfds_images(config)))
    trainer = build_trainer(config)

    history, train_seconds, _ = fit_resumable(trainer, train, output_dir, epochs=config.epochs,
                                              verbose=config.verbose, validation_data=validation)

    codec = export_codec(trainer, saved_model_dir or output_dir / "saved_model", config)
    summary = {
        "config": dataclasses.asdict(config),
        "train_seconds": train_seconds,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    (output_dir / "training.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "codec": codec}
