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
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from codec.eval import image_eval
from codec.models.bls2017 import (DISTORTIONS, MS_SSIM_MIN_PATCH, BLS2017Trainer, ImageCodec,
                                   TransformOptions)
from codec.models.bmshj2018 import HyperpriorCodec, HyperpriorTrainer
from codec.models.mbt2018 import MeanScaleCodec, MeanScaleTrainer

# Entropy-model architecture of an image codec → (trainer class, export module class). Both
# trainers share one interface (call, optimize, prior_parameters), so everything below trains,
# probes and exports either.
ARCHITECTURES = {"factorized": (BLS2017Trainer, ImageCodec),
                 "hyperprior": (HyperpriorTrainer, HyperpriorCodec),
                 "mean-scale": (MeanScaleTrainer, MeanScaleCodec)}
HYPERPRIORS = ("hyperprior", "mean-scale")      # z is /64: crops must be multiples of 64
from codec.data.crops import CROP_SAMPLINGS, CropSampler, load_image_folders
from codec.schedule import SCHEDULES, learning_rate
from codec.train_loop import METRICS, atomic_write_text, is_chief, read_log, train_steps
from codec.training import PRECISION_POLICIES, export_codec_module, resolve_precision_policy

@dataclasses.dataclass
class ImageTrainConfig:
    """One λ's training run. Defaults: the recipe measured in benchmarks/results/recipe.json
    and train_speed.json (TFC's transforms, a faster prior, area-weighted flipped crops)."""

    lmbda: float = .01
    # "mse" (loss bpp + λ·MSE, 0–255 pixels) or "ms-ssim" (bpp + λ·(1 − MS-SSIM), CompressAI's
    # MS-SSIM λ scale; crops ≥ 176 px): codec.models.bls2017.DISTORTIONS.
    distortion: str = "mse"
    filters: int = 128
    # 256² crops move 1.3× more pixels/s (fewer latents in the zero-padded border ring) but
    # take 3× longer per step; at CPU budgets of 10⁴ steps the loss is still falling fast with
    # the step count, so 128² stays the default (train_speed.json; TFC uses 256² for 10⁶ steps).
    patch_size: int = 128
    batch_size: int = 8
    steps_per_epoch: int = 200
    epochs: int = 20
    # Total steps of the run; 0 = epochs × steps_per_epoch (an "epoch" is only a reporting
    # unit: the crops are drawn at random, step by step).
    steps: int = 0
    learning_rate: float = 2e-4
    # Learning-rate schedule of the transforms (codec/schedule.py): "constant", or "cosine"
    # (linear warm-up over `warmup_steps`, then a half cosine to `final_lr_fraction` × the peak
    # `learning_rate` at the last step). The prior's optimizer follows the same decay at its
    # own rate (× prior_lr_multiplier) without the warm-up: it must track the latents from
    # the first step.
    schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = .01
    # Checkpoint period of a run (minutes of wall time; also at the end, on a deadline and on
    # SIGTERM/SIGINT) and of the progress line (seconds).
    checkpoint_minutes: float = 10.
    log_seconds: float = 30.
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
    # "" (float32), "mixed_bfloat16" (the transforms compute in bfloat16; variables, rate and
    # distortion stay float32) or "auto" (bfloat16 only on CPUs with AMX, where it is faster:
    # codec.training.resolve_precision_policy; resolved when the config is made, so
    # summary.json records what ran). float16 would need loss scaling and is not offered.
    precision_policy: str = ""
    channels: int = 3
    tail_mass: float = 2 ** -8
    precision: int = 12
    coder: str = "portable"
    seed: int | None = 0
    verbose: int = 2
    # Folder(s) of training images (required): one path, or several joined by ",".
    train_dir: str = ""
    # "factorized" (Ballé 2017, codec/models/bls2017.py), "hyperprior" (Ballé 2018's scale
    # hyperprior on the same transforms, codec/models/bmshj2018.py) or "mean-scale" (Minnen
    # 2018 without context, codec/models/mbt2018.py); `hyper_filters` 0 = filters.
    architecture: str = "factorized"
    hyper_filters: int = 0
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
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}")
        if self.architecture in HYPERPRIORS and self.patch_size % 64:
            raise ValueError("the hyperprior needs patch_size a multiple of 64 (z is /64)")
        if self.distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {DISTORTIONS}")
        if self.distortion == "ms-ssim" and self.patch_size < MS_SSIM_MIN_PATCH:
            raise ValueError(f"distortion ms-ssim needs patch_size ≥ {MS_SSIM_MIN_PATCH} (five "
                             "MS-SSIM scales of an 11-pixel window)")
        if self.crop_sampling not in CROP_SAMPLINGS:
            raise ValueError(f"crop_sampling must be one of {CROP_SAMPLINGS}")
        if self.prior_lr_multiplier <= 0:
            raise ValueError("prior_lr_multiplier must be > 0")
        if self.precision_policy not in PRECISION_POLICIES:
            raise ValueError("precision_policy must be '', 'float32', 'mixed_bfloat16' or "
                             "'auto'")
        self.precision_policy = resolve_precision_policy(self.precision_policy)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ValueError("steps and warmup_steps must be ≥ 0")

    @property
    def total_steps(self) -> int:
        return self.steps or self.epochs * self.steps_per_epoch

    @property
    def transform_options(self) -> TransformOptions:
        return TransformOptions(self.parameterization, self.kernel_init,
                                self.last_analysis_bias)

    @property
    def train_dirs(self) -> list[str]:
        return [d for d in self.train_dir.split(",") if d]


def crop_seed(config: ImageTrainConfig) -> int:
    """Seed of this run's crop and noise streams: a fine-tune from another model's weights
    draws fresh crops instead of replaying the stream the model has seen. (A resumed run
    continues its own stream exactly: batches are a function of (seed, step).)"""
    fine_tune = int(round(config.lmbda * 1e6)) if config.init_from else 0
    return int(np.random.SeedSequence([config.seed or 0, fine_tune]).generate_state(1)[0] >> 1)


def inference_twin(trainer: BLS2017Trainer, config: ImageTrainConfig,
                   weights_dtype: str = "float32") -> BLS2017Trainer:
    """`trainer` itself when it computes in float32 and stores float32 weights, else a float32
    copy with its weights: training variables are float32 under every policy, so only the
    transforms' arithmetic changes (bfloat16 training, float32 inference), and with
    `weights_dtype="float16"` the transforms' weights are rounded to half precision for storage
    (the prior, hence the coding tables, stays float32)."""
    if (config.precision_policy or "float32") == "float32" and weights_dtype == "float32":
        return trainer
    twin = build_image_trainer(dataclasses.replace(config, precision_policy=""),
                               weights_dtype=weights_dtype)
    for target, source in zip(twin.variables, trainer.variables):
        target.assign(tf.cast(source, target.dtype))
    return twin


def export_image_codec(trainer: BLS2017Trainer, path: str | Path,
                       config: ImageTrainConfig, *, inference_policy: str = "",
                       weights_dtype: str = "float32") -> ImageCodec:
    """Writes the SavedModel. Inference is float32 (`inference_policy=""`) whatever the
    training precision: a bfloat16 synthesis would change decoded pixels between machines and
    costs PSNR (benchmarks/results/precision.json); "mixed_bfloat16" keeps the trained
    policy, for measuring that cost. The latents are always float32 before coding.
    `weights_dtype="float16"` stores the transforms' weights in half precision (half the
    bytes; decoding still computes in float32; its R-D cost is measured by bench-kodak)."""
    if not inference_policy:
        trainer = inference_twin(trainer, config, weights_dtype)
    elif weights_dtype != "float32":
        raise ValueError("float16 weights are for float32 inference only")
    return export_codec_module(ARCHITECTURES[config.architecture][1], trainer, path, config)


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


def build_image_trainer(config: ImageTrainConfig,
                        weights_dtype: str = "float32") -> BLS2017Trainer:
    """The trainer, compiled, with its variables created (under the current strategy scope,
    if any); its layers keep `config.precision_policy`, the global Keras policy is restored.
    `weights_dtype="float16"`: half-precision storage of the transforms (exports only)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision_policy or "float32")
    try:
        trainer_class = ARCHITECTURES[config.architecture][0]
        extra = {"hyper_filters": config.hyper_filters} \
            if config.architecture in HYPERPRIORS else {}
        trainer = trainer_class(config.lmbda, config.filters, config.channels,
                                options=dataclasses.replace(config.transform_options,
                                                            weights_dtype=weights_dtype),
                                prior_init_scale=config.prior_init_scale,
                                legacy_prior_numerics=config.legacy_prior_numerics,
                                distortion=config.distortion, **extra)
        size = 64 if config.architecture in HYPERPRIORS else 16
        if config.distortion == "ms-ssim":    # the loss needs five MS-SSIM scales
            size = -(-MS_SSIM_MIN_PATCH // size) * size
        trainer(tf.zeros((1, size, size, config.channels), tf.uint8))   # create variables
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    prior_optimizer = None
    total = config.total_steps
    if config.prior_lr_multiplier != 1:
        prior_optimizer = keras.optimizers.Adam(learning_rate=learning_rate(
            config.schedule, config.learning_rate * config.prior_lr_multiplier, total,
            final_fraction=config.final_lr_fraction))
    transforms_rate = learning_rate(config.schedule, config.learning_rate, total,
                                    warmup_steps=config.warmup_steps,
                                    final_fraction=config.final_lr_fraction)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=transforms_rate, **clip),
                    prior_optimizer=prior_optimizer, jit_compile=config.jit_compile)
    return trainer


def warm_start(trainer: BLS2017Trainer, init_from: str | Path, output_dir: Path) -> bool:
    """Loads the weights (not the optimizer state) of the newest checkpoint under
    `init_from/checkpoints` into `trainer` — or, when `init_from` is an exported codec's
    SavedModel (e.g. `zoo/bls2017-q3/saved_model`), its g_a and g_s only — unless `output_dir` already has checkpoints (then
    training resumes from those). Returns whether weights were loaded."""
    if tf.train.latest_checkpoint(str(output_dir / "checkpoints")):
        return False
    if (Path(init_from) / "saved_model.pb").is_file():    # an exported codec: its transforms
        warm_start_transforms(trainer, init_from)
        return True
    source = tf.train.latest_checkpoint(str(Path(init_from) / "checkpoints"))
    if source is None:
        raise FileNotFoundError(f"--init-from {init_from}: no checkpoints under "
                                f"{Path(init_from) / 'checkpoints'}")
    _restore_weights(trainer, source, f"--init-from {init_from}")
    print(f"warm start from {source}")
    return True


def model_weights(trainer) -> dict:
    """The trained parts of either architecture, by the attribute names checkpoints and export
    modules use (the optimizers are not among them)."""
    names = ("analysis_transform", "synthesis_transform", "prior_parameters",
             "hyper_analysis", "hyper_synthesis")
    return {name: getattr(trainer, name) for name in names if hasattr(trainer, name)}


def _restore_weights(trainer: BLS2017Trainer, checkpoint: str, what: str) -> None:
    # Only the model's weights: the checkpoint also holds the optimizers (tracked by the
    # trainer), whose step counters would carry the source's learning-rate schedule over.
    weights = tf.train.Checkpoint(**model_weights(trainer))
    try:   # the optimizer state is deliberately not restored: expect_partial
        status = tf.train.Checkpoint(trainer=weights).restore(checkpoint).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:   # ValueError: a variable's shape differs
        raise ValueError(f"{what}: checkpoint does not match this model "
                         f"(filters/channels differ?): {error}") from error


def reexport_image_codec(model_dir: str | Path, saved_model_dir: str | Path,
                         weights_dtype: str = "float32") -> ImageCodec:
    """Exports a trained model again, with today's export code, from its newest checkpoint and
    the config in `model_dir/summary.json` (e.g. for the model zoo: signatures added since it
    was trained). The weights, hence the tables and every string, are unchanged — unless
    `weights_dtype="float16"` rounds the transforms' weights for storage (tables unchanged)."""
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
    return export_image_codec(trainer, saved_model_dir, config, weights_dtype=weights_dtype)


def reexport_saved_image_codec(saved_model_dir: str | Path, out_dir: str | Path,
                                filters: int = 128) -> ImageCodec:
    """Exports an exported Ballé 2017 codec again with today's export code, from the weights
    inside its SavedModel (`saved_model_dir/variables`): for models whose training directory
    is gone, e.g. the zoo's. Tables, hence the symbols, are unchanged; the strings take today's
    format."""
    trainer, config, stored = load_saved_factorized_trainer(saved_model_dir, filters)
    return export_image_codec(trainer, out_dir, config, weights_dtype=stored)


def load_saved_factorized_trainer(saved_model_dir: str | Path, filters: int = 128
                                  ) -> tuple[BLS2017Trainer, ImageTrainConfig, str]:
    """A Ballé 2017 trainer holding the weights inside an exported codec's SavedModel, with
    its config and weight storage ("float32"/"float16"). Tries TFC's transform recipe, then
    rdpipe's legacy one, by which one the variables fit."""
    variables = str(Path(saved_model_dir) / "variables" / "variables")
    errors = []
    for options in (TransformOptions(), TransformOptions.legacy()):
        for stored in ("float32", "float16"):
            config = ImageTrainConfig(
                filters=filters, parameterization=options.parameterization,
                kernel_init=options.kernel_init, last_analysis_bias=options.last_analysis_bias)
            trainer = build_image_trainer(config, weights_dtype=stored)
            weights = tf.train.Checkpoint(**model_weights(trainer))
            try:
                # `read`, not `restore`: no save counter, which the SavedModel does not hold.
                weights.read(variables).expect_partial().assert_existing_objects_matched()
            except (AssertionError, ValueError, TypeError, tf.errors.OpError) as error:
                errors.append(f"{options.parameterization}/{stored}: {str(error)[:200]}")
                continue
            return trainer, config, stored
    raise ValueError(f"{saved_model_dir}: weights fit neither transform recipe: {errors}")


def warm_start_transforms(trainer: BLS2017Trainer, saved_model_dir: str | Path) -> None:
    """Copies g_a and g_s (nothing else) of an exported Ballé 2017 codec into `trainer`, of
    any architecture with the same transforms (e.g. a hyperprior model starting from a zoo
    model: its h_a, h_s and priors start fresh). float16-stored weights become float32."""
    source, _, _ = load_saved_factorized_trainer(saved_model_dir, trainer.filters)
    for name in ("analysis_transform", "synthesis_transform"):
        mine, theirs = getattr(trainer, name).weights, getattr(source, name).weights
        if [tuple(v.shape) for v in mine] != [tuple(v.shape) for v in theirs]:
            raise ValueError(f"--init-from {saved_model_dir}: its {name} does not match this "
                             "model's (filters or transforms differ)")
        for variable, value in zip(mine, theirs):
            variable.assign(tf.cast(value, variable.dtype))
    print(f"warm start of g_a and g_s from {saved_model_dir}", flush=True)


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
    """Mean actual bpp (bits of the strings / pixels), PSNR (dB, peak 255) and MS-SSIM
    (linear) of `codec`."""
    strings, decoded = round_trip(codec, images)
    out = {"bpp": float(np.mean([8 * len(s) / (i.shape[0] * i.shape[1])
                                 for s, i in zip(strings, images)])),
           "psnr": float(np.mean([image_eval.psnr(i, d) for i, d in zip(images, decoded)]))}
    if all(min(i.shape[:2]) >= MS_SSIM_MIN_PATCH for i in images):   # five scales fit
        out["ms_ssim"] = float(np.mean([image_eval.ms_ssim(i, d)
                                        for i, d in zip(images, decoded)]))
    return out


def kodak_probe(images: list[np.ndarray], config: ImageTrainConfig):
    """A `train_steps` probe: codes `images` with the current weights (float32 inference,
    actual strings) → {bpp, psnr}."""
    def probe(trainer: BLS2017Trainer) -> dict:
        codec = ARCHITECTURES[config.architecture][1](
            inference_twin(trainer, config), tail_mass=config.tail_mass,
            precision=config.precision, coder=config.coder)
        return probe_rate_distortion(codec, images)
    return probe


def train_image_codec(config: ImageTrainConfig, output_dir: str | Path,
                      images: list[np.ndarray] | None = None,
                      saved_model_dir: str | Path | None = None,
                      probe_images: list[np.ndarray] | None = None,
                      probe_every_epochs: int = 5, *, probe_every_steps: int = 0,
                      deadline: float | None = None) -> dict:
    """Trains (resuming exactly from `output_dir/checkpoints`: codec/train_loop.py), exports,
    writes summary.json.

    images: uint8 `[H, W, C]` training images (default: read `config.train_dir`);
    saved_model_dir: where to export (default `output_dir/saved_model`);
    probe_images: held-out images coded every `probe_every_steps` steps (default
    `probe_every_epochs` × steps_per_epoch) for a learning curve
    (`output_dir/learning_curve.json`, also in the summary);
    deadline: `time.time()` at which to checkpoint and stop early (then nothing is exported
    and the summary says `finished: False`; run again to resume).
    The returned summary also holds the in-process `codec` (not written to JSON).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if images is None:
        images = load_image_folders(config.train_dirs, config.channels)
    sampler = CropSampler(images, config.patch_size, sampling=config.crop_sampling,
                          flips=config.flips)
    seed = crop_seed(config)
    strategy = distribution_strategy()
    with strategy.scope():
        trainer = build_image_trainer(config)
    if config.init_from:
        warm_start(trainer, config.init_from, output_dir)
    probe_every = probe_every_steps or probe_every_epochs * config.steps_per_epoch
    result = train_steps(
        trainer, lambda step, size: sampler.batch(seed, step, size), output_dir,
        total_steps=config.total_steps, global_batch=config.batch_size, seed=seed,
        checkpoint_seconds=60 * config.checkpoint_minutes, log_seconds=config.log_seconds,
        deadline=deadline, probe=kodak_probe(probe_images, config) if probe_images else None,
        probe_every=probe_every if probe_images else 0, label=f"λ={config.lmbda:g} ",
        verbose=config.verbose > 0)
    log = read_log(output_dir)
    curve_file = output_dir / "learning_curve.json"
    summary = {"config": dataclasses.asdict(config), "finished": result.finished,
               "steps": result.step, "stop_reason": result.stop_reason,
               "train_seconds": result.seconds, "steps_per_second": result.steps_per_second,
               "history": {k: [entry[k] for entry in log] for k in METRICS},
               "history_steps": [entry["step"] for entry in log],
               "learning_curve": json.loads(curve_file.read_text())
               if curve_file.exists() else None}
    if not result.finished:
        return {**summary, "codec": None}
    if not is_chief():
        # Another worker of a multi-worker run: the chief writes the model; this one exports
        # to a scratch directory (every worker takes part in saving distributed variables).
        with tempfile.TemporaryDirectory() as scratch:
            codec = export_image_codec(trainer, scratch, config)
        return {**summary, "codec": codec}
    codec = export_image_codec(trainer, saved_model_dir or output_dir / "saved_model", config)
    atomic_write_text(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return {**summary, "codec": codec}
