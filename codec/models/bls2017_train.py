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
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from codec.eval import image_eval
from codec.models.bls2017 import BLS2017Trainer, ImageCodec, TransformOptions
from codec.data.crops import CROP_SAMPLINGS, crop_stream, load_image_folders
from codec.training import export_codec_module, fit_resumable

@dataclasses.dataclass
class ImageTrainConfig:
    """One λ's training run. Defaults: the recipe measured in benchmarks/results/recipe.json
    and train_speed.json (TFC's transforms, a faster prior, area-weighted flipped crops)."""

    lmbda: float = .01
    filters: int = 128
    # 256² crops move 1.3× more pixels/s (fewer latents in the zero-padded border ring) but
    # take 3× longer per step; at CPU budgets of 10⁴ steps the loss is still falling fast with
    # the step count, so 128² stays the default (train_speed.json; TFC uses 256² for 10⁶ steps).
    patch_size: int = 128
    batch_size: int = 8
    steps_per_epoch: int = 200
    epochs: int = 20
    learning_rate: float = 2e-4
    # Global gradient-norm clip of the transforms' update (0 = off). A run at lr 5e-4 without
    # it diverged after ~1,700 steps (IGDN amplifies large activations).
    clipnorm: float = 1.0
    # The prior's own Adam learning rate = learning_rate × this (1 = one optimizer for all).
    prior_lr_multiplier: float = 10.
    prior_init_scale: float = 10.
    legacy_prior_numerics: bool = False
    parameterization: str = "rdft"           # conv kernels: "rdft" or "plain"
    kernel_init: str = "variance_scaling"    # or "glorot_uniform" (Keras' default)
    last_analysis_bias: bool = False
    crop_sampling: str = "area"              # "area" (∝ pixels) or "per_file"
    flips: bool = True                       # random horizontal / vertical flips of crops
    # XLA for the train step: 4.3× slower per step on this CPU (train_speed.json), so off.
    jit_compile: bool = False
    # "" (float32) or "mixed_bfloat16": the transforms compute in bfloat16 (GPUs since
    # Ampere, CPUs with AVX512-BF16), variables, rate and distortion stay float32. float16
    # would need loss scaling and is not offered.
    precision_policy: str = ""
    channels: int = 3
    tail_mass: float = 2 ** -8
    precision: int = 12
    coder: str = "portable"
    seed: int | None = 0
    verbose: int = 2
    # Folder(s) of training images (required): one path, or several joined by ",".
    train_dir: str = ""
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
        if self.crop_sampling not in CROP_SAMPLINGS:
            raise ValueError(f"crop_sampling must be one of {CROP_SAMPLINGS}")
        if self.prior_lr_multiplier <= 0:
            raise ValueError("prior_lr_multiplier must be > 0")
        if self.precision_policy not in ("", "float32", "mixed_bfloat16"):
            raise ValueError("precision_policy must be '', 'float32' or 'mixed_bfloat16'")

    @property
    def transform_options(self) -> TransformOptions:
        return TransformOptions(self.parameterization, self.kernel_init,
                                self.last_analysis_bias)

    @property
    def train_dirs(self) -> list[str]:
        return [d for d in self.train_dir.split(",") if d]


def random_crops(images: list[np.ndarray], patch_size: int, seed: int | None, *,
                 sampling: str = "area", flips: bool = True) -> tf.data.Dataset:
    """`crop_stream` as an endless `tf.data.Dataset` of uint8 `[patch, patch, C]`."""
    channels = images[0].shape[-1]
    return tf.data.Dataset.from_generator(
        lambda: crop_stream(images, patch_size, seed, sampling=sampling, flips=flips),
        output_signature=tf.TensorSpec((patch_size, patch_size, channels), tf.uint8))


def crop_seed(config: ImageTrainConfig, resume_epoch: int) -> int | None:
    """Seed of this run's crop stream: a resumed run and a fine-tune from another model's
    weights each draw fresh crops instead of replaying the stream the model has seen."""
    if config.seed is None:
        return None
    fine_tune = int(round(config.lmbda * 1e6)) if config.init_from else 0
    return int(np.random.SeedSequence([config.seed, resume_epoch, fine_tune]).generate_state(1)[0])


def export_image_codec(trainer: BLS2017Trainer, path: str | Path,
                       config: ImageTrainConfig) -> ImageCodec:
    return export_codec_module(ImageCodec, trainer, path, config)


def distribution_strategy() -> tf.distribute.Strategy:
    """The strategy training runs under, from the environment: MultiWorkerMirroredStrategy when
    `TF_CONFIG` names a cluster (how the TFX Trainer scales out over hosts), MirroredStrategy
    over all local GPUs when there are several, else the default (one device: the GPU if
    there is one, else the CPU). Variables and the train step are placed by the strategy, so
    the same code runs on a CPU, a GPU or several."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_image_trainer(config: ImageTrainConfig) -> BLS2017Trainer:
    """The trainer, compiled, with its variables created (under the current strategy scope,
    if any); its layers keep `config.precision_policy`, the global Keras policy is restored."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision_policy or "float32")
    try:
        trainer = BLS2017Trainer(config.lmbda, config.filters, config.channels,
                                 options=config.transform_options,
                                 prior_init_scale=config.prior_init_scale,
                                 legacy_prior_numerics=config.legacy_prior_numerics)
        trainer(tf.zeros((1, 16, 16, config.channels), tf.uint8))   # create variables
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    prior_optimizer = None
    if config.prior_lr_multiplier != 1:
        prior_optimizer = keras.optimizers.Adam(
            learning_rate=config.learning_rate * config.prior_lr_multiplier)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, **clip),
                    prior_optimizer=prior_optimizer, jit_compile=config.jit_compile)
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
    _restore_weights(trainer, source, f"--init-from {init_from}")
    print(f"warm start from {source}")
    return True


def _restore_weights(trainer: BLS2017Trainer, checkpoint: str, what: str) -> None:
    try:   # the optimizer state is deliberately not restored: expect_partial
        status = tf.train.Checkpoint(trainer=trainer).restore(checkpoint).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:   # ValueError: a variable's shape differs
        raise ValueError(f"{what}: checkpoint does not match this model "
                         f"(filters/channels differ?): {error}") from error


def reexport_image_codec(model_dir: str | Path, saved_model_dir: str | Path) -> ImageCodec:
    """Exports a trained model again, with today's export code, from its newest checkpoint and
    the config in `model_dir/summary.json` (e.g. for the model zoo: signatures added since it
    was trained). The weights, hence the tables and every string, are unchanged."""
    model_dir = Path(model_dir)
    summary_file = model_dir / "summary.json"
    checkpoint = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    if not summary_file.is_file() or checkpoint is None:
        raise FileNotFoundError(f"{model_dir}: not a trained model dir (summary.json and "
                                "checkpoints/ expected)")
    fields = {f.name for f in dataclasses.fields(ImageTrainConfig)}
    config = ImageTrainConfig(**{k: v for k, v in json.loads(summary_file.read_text())[
        "config"].items() if k in fields})
    trainer = build_image_trainer(config)
    _restore_weights(trainer, checkpoint, str(model_dir))
    return export_image_codec(trainer, saved_model_dir, config)


def round_trip(codec: ImageCodec, images: list[np.ndarray]) -> tuple[list[bytes], list]:
    """Each uint8 `[H, W, C]` image through `compress` → `decompress`, one image per call:
    (strings, decoded images)."""
    strings, decoded = [], []
    for image in images:
        string = codec.compress(image[None])["strings"]
        strings.append(string.numpy()[0])
        decoded.append(codec.decompress(string)["images"].numpy()[0])
    return strings, decoded


def probe_rate_distortion(codec: ImageCodec, images: list[np.ndarray]) -> dict:
    """Mean actual bpp (bits of the strings / pixels) and PSNR (dB, peak 255) of `codec`."""
    strings, decoded = round_trip(codec, images)
    return {"bpp": float(np.mean([8 * len(s) / (i.shape[0] * i.shape[1])
                                  for s, i in zip(strings, images)])),
            "psnr": float(np.mean([image_eval.psnr(i, d) for i, d in zip(images, decoded)]))}


class LearningCurveProbe(keras.callbacks.Callback):
    """Every `every_epochs` epochs, codes `images` with the current weights (actual strings)
    and appends `{step, bpp, psnr}` to `output_dir/learning_curve.json` (kept across resumes)."""

    def __init__(self, images: list[np.ndarray], every_epochs: int, steps_per_epoch: int,
                 output_dir: Path, config: ImageTrainConfig):
        super().__init__()
        self.images, self.every, self.steps_per_epoch = images, every_epochs, steps_per_epoch
        self.file, self.config = output_dir / "learning_curve.json", config

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        codec = ImageCodec(self.model, tail_mass=self.config.tail_mass,
                           precision=self.config.precision, coder=self.config.coder)
        point = {"step": (epoch + 1) * self.steps_per_epoch,
                 **probe_rate_distortion(codec, self.images),
                 "train_loss": float((logs or {}).get("loss", float("nan")))}
        curve = json.loads(self.file.read_text()) if self.file.exists() else []
        curve = [p for p in curve if p["step"] < point["step"]] + [point]
        self.file.write_text(json.dumps(curve, indent=1) + "\n")
        print(f"probe at step {point['step']}: {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB "
              f"on {len(self.images)} images", flush=True)


def train_image_codec(config: ImageTrainConfig, output_dir: str | Path,
                      images: list[np.ndarray] | None = None,
                      saved_model_dir: str | Path | None = None,
                      probe_images: list[np.ndarray] | None = None,
                      probe_every_epochs: int = 5) -> dict:
    """Trains (resuming from `output_dir/checkpoints`), exports, writes summary.json.

    images: uint8 `[H, W, C]` training images (default: read `config.train_dir`);
    saved_model_dir: where to export (default `output_dir/saved_model`);
    probe_images: held-out images coded every `probe_every_epochs` epochs for a learning
    curve (`output_dir/learning_curve.json`, also in the summary). The returned summary also
    holds the in-process `codec` (not written to JSON).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if images is None:
        images = load_image_folders(config.train_dirs, config.channels)
    latest = tf.train.latest_checkpoint(str(output_dir / "checkpoints"))
    seed = crop_seed(config, int(latest.rsplit("-", 1)[-1]) if latest else 0)
    train = random_crops(images, config.patch_size, seed, sampling=config.crop_sampling,
                         flips=config.flips).batch(config.batch_size)
    train = train.prefetch(2)
    strategy = distribution_strategy()
    with strategy.scope():
        trainer = build_image_trainer(config)
    if config.init_from:
        warm_start(trainer, config.init_from, output_dir)
    callbacks = [LearningCurveProbe(probe_images, probe_every_epochs, config.steps_per_epoch,
                                    output_dir, config)] if probe_images else []
    history, seconds, initial_epoch = fit_resumable(
        trainer, train, output_dir, epochs=config.epochs, verbose=config.verbose,
        steps_per_epoch=config.steps_per_epoch, extra_callbacks=callbacks)
    steps = (config.epochs - initial_epoch) * config.steps_per_epoch
    codec = export_image_codec(trainer, saved_model_dir or output_dir / "saved_model", config)
    curve_file = output_dir / "learning_curve.json"
    summary = {"config": dataclasses.asdict(config), "train_seconds": seconds,
               "steps_per_second": steps / seconds if steps else None,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
               "learning_curve": json.loads(curve_file.read_text())
               if curve_file.exists() else None}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "codec": codec}
