"""The image codec of Ballé, Laparra & Simoncelli, "End-to-end optimized image compression"
(ICLR 2017), following TFC's `models/bls2017.py`.

- Analysis: conv 9×9 /4 → GDN → conv 5×5 /2 → GDN → conv 5×5 /2 (N filters, default 128).
- Synthesis: mirrored transposed convolutions with IGDN, back to 3 (RGB) or 1 (grey) channels.
- Prior: per-channel deep factorized density + uniform noise (codec/entropy/deep_factorized.py).
- Loss (training): `bpp + λ · MSE`, MSE on 0–255 pixels, bpp the rate of the noisy latents.

`ImageCodec` is the exported module. Images of any size: `compress` replicates the last row and
column up to a multiple of 16, codes the latents (`[H/16, W/16, N]`) and puts the true size in
the string (`codec.entropy.framing`, schemas/bitstream.md); `decompress` crops back. Strings in one call
must share a size (a batch of equally sized images, or one image per call).
"""
from __future__ import annotations

import dataclasses
import functools

import tensorflow as tf
import tf_keras as keras

from codec.linalg import svd
from codec.entropy.coders import DEFAULT_CODER
from codec.entropy.deep_factorized import DeepFactorizedParameters
from codec.entropy.entropy_models import EntropyModel
from codec.entropy.framing import MAX_PIXELS, add_image_shape, split_image_shape
from codec.layers.gdn import GDN
from codec.layers.signal_conv import SignalConv2D

DOWNSAMPLING = 16
DEFAULT_FILTERS = 128
# "mse": loss bpp + λ·MSE (0–255 pixels; CompressAI's MSE λ scale). "ms-ssim": bpp +
# λ·(1 − MS-SSIM) (CompressAI's MS-SSIM λ scale, 2.4 … 220), five scales of
# tf.image.ssim_multiscale, so training crops need ≥ 176 px a side (11-px window at 1/16).
DISTORTIONS = ("mse", "ms-ssim")
MS_SSIM_MIN_PATCH = 176


@dataclasses.dataclass(frozen=True)
class TransformOptions:
    """How the convolutions are built (codec/layers/signal_conv.py). Defaults follow TFC's bls2017:
    RDFT-parameterized kernels, fan-in variance-scaling init, no bias on the last analysis
    layer. `TransformOptions.legacy()` is the recipe of rdpipe ≤ 0.x (Keras' Conv2D).
    `weights_dtype="float16"` stores the transforms' variables in half precision (exports
    only: half the SavedModel; arithmetic stays float32)."""

    parameterization: str = "rdft"
    kernel_init: str = "variance_scaling"
    last_analysis_bias: bool = False
    weights_dtype: str = "float32"

    @classmethod
    def legacy(cls) -> "TransformOptions":
        return cls("plain", "glorot_uniform", True)

    def conv(self, **kwargs) -> functools.partial:
        """SignalConv2D with these options (and `kwargs`, e.g. `transpose=True`)."""
        return functools.partial(SignalConv2D, parameterization=self.parameterization,
                                 kernel_init=self.kernel_init, weights_dtype=self.weights_dtype,
                                 **kwargs)

    def gdn(self, **kwargs) -> GDN:
        return GDN(weights_dtype=self.weights_dtype, **kwargs)


def make_analysis_transform(filters: int = DEFAULT_FILTERS,
                            options: TransformOptions = TransformOptions()) -> keras.Sequential:
    """`[B, H, W, C]` floats in [0, 1] → latents `[B, ⌈H/16⌉, ⌈W/16⌉, filters]`."""
    conv = options.conv()
    return keras.Sequential([
        conv(filters, 9, 4, name="conv_0"),
        options.gdn(name="gdn_0"),
        conv(filters, 5, 2, name="conv_1"),
        options.gdn(name="gdn_1"),
        conv(filters, 5, 2, use_bias=options.last_analysis_bias, name="conv_2"),
    ], name="analysis_transform")


def make_synthesis_transform(filters: int = DEFAULT_FILTERS, channels: int = 3,
                             options: TransformOptions = TransformOptions()) -> keras.Sequential:
    """Latents → `[B, 16·h, 16·w, channels]` floats (≈ [0, 1], not clipped)."""
    conv = options.conv(transpose=True)
    return keras.Sequential([
        conv(filters, 5, 2, name="conv_0"),
        options.gdn(inverse=True, name="igdn_0"),
        conv(filters, 5, 2, name="conv_1"),
        options.gdn(inverse=True, name="igdn_1"),
        conv(channels, 9, 4, name="conv_2"),
    ], name="synthesis_transform")


class RateDistortionTrainer(keras.Model):
    """What every image trainer shares: `compile` with an optional `prior_optimizer` for
    `self.prior_parameters`, the loss/bpp/mse/psnr trackers, `optimize` (one step) and the Keras
    step functions. Subclasses build the transforms and the entropy models and define `call`
    (→ {"loss", "bpp", "mse", "psnr"})."""

    def _init_trackers(self, distortion: str = "mse") -> None:
        if distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {DISTORTIONS}, got {distortion!r}")
        self.distortion = distortion
        self.prior_optimizer = None
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "bpp", "mse", "psnr")}

    def compile(self, optimizer="adam", prior_optimizer=None, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.prior_optimizer = prior_optimizer

    @property
    def metrics(self):
        return list(self._trackers.values())

    def rate_distortion(self, x: tf.Tensor, x_tilde: tf.Tensor, bits: tf.Tensor) -> dict:
        """The loss and its terms for images `x` and reconstructions `x_tilde` (float32,
        0–255) whose latents cost `bits` per image: bpp, MSE (0–255), PSNR (dB) and, under
        `distortion="ms-ssim"`, MS-SSIM (linear, of the reconstruction clipped to 0–255)."""
        pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:3]), tf.float32)
        bpp = tf.reduce_mean(bits) / pixels
        mse = tf.reduce_mean(tf.square(x - x_tilde))
        out = {"bpp": bpp, "mse": mse,
               "psnr": 10. * tf.math.log(255. ** 2 / mse) / tf.math.log(10.)}
        if self.distortion == "ms-ssim":
            out["ms_ssim"] = tf.reduce_mean(tf.image.ssim_multiscale(
                x, tf.clip_by_value(x_tilde, 0., 255.), 255.))
            out["loss"] = bpp + self.lmbda * (1. - out["ms_ssim"])
        else:
            out["loss"] = bpp + self.lmbda * mse
        return out

    def _update(self, out):
        for name, tracker in self._trackers.items():
            tracker.update_state(out[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    # Plain Python control flow only: no autograph conversion of the call tree (seconds of
    # tracing before the first step; see MNISTCompressionTrainer.train_step).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, images):
        return self._update(self.optimize(images))

    def optimize(self, images, noise_seed=None) -> dict:
        """One optimizer step on a batch; returns this batch's loss, bpp, mse and psnr
        (`noise_seed`: see `call`)."""
        # Under a tf.distribute strategy the replicas' gradients are summed: each replica
        # contributes its share of the global mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = self(images, training=True, noise_seed=noise_seed)
            scaled_loss = out["loss"] / replicas
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if self.prior_optimizer is None:
            self.optimizer.apply_gradients(zip(gradients, variables))
        else:
            prior = {id(v) for v in self.prior_parameters.trainable_variables}
            pairs = list(zip(gradients, variables))
            self.optimizer.apply_gradients([p for p in pairs if id(p[1]) not in prior])
            self.prior_optimizer.apply_gradients([p for p in pairs if id(p[1]) in prior])
        return out

    @tf.autograph.experimental.do_not_convert
    def test_step(self, images):
        return self._update(self(images, training=False))


class BLS2017Trainer(RateDistortionTrainer):
    """Trains transforms and prior on `bpp + λ·MSE` (pixels on 0–255, as TFC's script), or
    `bpp + λ·(1 − MS-SSIM)` with `distortion="ms-ssim"`.

    `compile(optimizer=..., prior_optimizer=...)`: the prior's parameters may get their own
    optimizer (e.g. a higher learning rate): the prior starts at scale `prior_init_scale`
    while the latents start with std ≈ 0.1–1, and with the transforms' small learning rate the
    rate model stays wrong (≈ 1 bit/latent of excess) for thousands of steps.
    """

    def __init__(self, lmbda: float = .01, filters: int = DEFAULT_FILTERS, channels: int = 3,
                 options: TransformOptions = TransformOptions(),
                 prior_init_scale: float = 10., legacy_prior_numerics: bool = False,
                 distortion: str = "mse", **kwargs):
        super().__init__(**kwargs)
        if lmbda <= 0 or filters < 1 or channels not in (1, 3):
            raise ValueError("need lmbda > 0, filters ≥ 1 and channels 1 (grey) or 3 (RGB)")
        self.lmbda, self.filters, self.channels = float(lmbda), int(filters), int(channels)
        self.analysis_transform = make_analysis_transform(filters, options)
        self.synthesis_transform = make_synthesis_transform(filters, channels, options)
        self.prior_parameters = DeepFactorizedParameters(
            filters, init_scale=prior_init_scale, legacy_numerics=legacy_prior_numerics,
            name="prior")
        self.entropy_model = EntropyModel(self.prior_parameters.prior, coding_rank=3)
        self._init_trackers(distortion)

    def call(self, images, training=False, noise_seed=None):
        """noise_seed: int32 `[2]` (training only): the uniform noise of this batch is drawn
        statelessly from it — for the *global* batch, of which this replica takes its rows —
        so a resumed or a multi-worker run perturbs each crop exactly as a single uninterrupted
        run does. None: TF's global RNG."""
        x = tf.cast(images, tf.float32)
        # Under a mixed-precision policy the transforms compute in bfloat16; the rate and the
        # distortion are always float32.
        y = tf.cast(self.analysis_transform(x / 255.), tf.float32)
        noise = None
        if training and noise_seed is not None:
            noise = _replica_rows(_global_noise(y, noise_seed))
        y_tilde, bits = self.entropy_model(y, training=training, noise=noise)
        x_tilde = tf.cast(self.synthesis_transform(y_tilde), tf.float32) * 255.
        return self.rate_distortion(x, x_tilde, bits)


def _global_noise(y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """U(-.5, .5) noise for the global batch that `y` (this replica's rows) is part of."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    shape = tf.concat([[tf.shape(y)[0] * replicas], tf.shape(y)[1:]], 0)
    return tf.random.stateless_uniform(shape, seed, -.5, .5, dtype=y.dtype)


def _replica_rows(global_batch: tf.Tensor) -> tf.Tensor:
    """This replica's rows of a global-batch tensor (replica r holds rows r·b … (r+1)·b − 1)."""
    context = tf.distribute.get_replica_context()
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if context is None or replicas == 1:
        return global_batch
    rows = tf.shape(global_batch)[0] // replicas
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * rows
    return global_batch[start:start + rows]


def latent_positions(height, width) -> tf.Tensor:
    """Latent grid positions (int64) of an image of `height × width` pixels."""
    rows = (tf.cast(height, tf.int64) + DOWNSAMPLING - 1) // DOWNSAMPLING
    return rows * ((tf.cast(width, tf.int64) + DOWNSAMPLING - 1) // DOWNSAMPLING)


def _refuse_short_strings(entropy_model, payload, height, width, shape_ok):
    """Where `payload` is shorter than any string coding `height × width` can be: ok = False,
    size 1×1 and an empty payload, so the decoder does 1×1 worth of work."""
    long_enough = ~entropy_model.too_short(payload, latent_positions(height, width))
    return (tf.where(long_enough, payload, tf.zeros_like(payload)),
            tf.where(long_enough, height, 1), tf.where(long_enough, width, 1),
            shape_ok & long_enough)


def _replicate_pad(x: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pads `[B, H, W, C]` at the bottom/right to multiples of `multiple` by repeating the last
    row/column (works for any size, even 1×1, unlike reflection)."""
    shape = tf.shape(x)
    padded = [((shape[i] + multiple - 1) // multiple) * multiple for i in (1, 2)]
    x = tf.gather(x, tf.minimum(tf.range(padded[0]), shape[1] - 1), axis=1)
    return tf.gather(x, tf.minimum(tf.range(padded[1]), shape[2] - 1), axis=2)


class ImageCodecSignatures(tf.Module):
    """The export modules' shared part: the signature functions over `_compress(images)` and
    `_decode(strings) → (images, ok, same size)`, the size check, the SVD signatures."""

    def _make_signatures(self, channels: int) -> None:
        images_spec = tf.TensorSpec((None, None, None, channels), tf.uint8, name="images")
        strings_spec = tf.TensorSpec((None,), tf.string, name="strings")
        self.compress = tf.function(self._compress, input_signature=[images_spec])
        self.decompress = tf.function(self._decompress, input_signature=[strings_spec])
        self.decompress_unchecked = tf.function(self._decompress_unchecked,
                                                input_signature=[strings_spec])
        self.svd = svd.svd_signatures()

    @staticmethod
    def _pixels_in_unit_range(images) -> tf.Tensor:
        """uint8 images → float32 in [0, 1], after refusing images above MAX_PIXELS (checked
        before any transform: a too-large image fails fast instead of exhausting memory)."""
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        with tf.control_dependencies([tf.debugging.Assert(
                tf.cast(height, tf.int64) * tf.cast(width, tf.int64) <= MAX_PIXELS,
                [f"rdpipe: images larger than {MAX_PIXELS} pixels (4096x4096) are refused (the "
                 "decoder's memory bound); split them into tiles. Got height, width:",
                 height, width])]):
            return tf.cast(images, tf.float32) / 255.

    def _decompress(self, strings):
        images, ok, same = self._decode(strings)
        checks = [tf.debugging.Assert(same, ["rdpipe: strings in one decompress call must "
                                             "share an image size"]),
                  tf.debugging.Assert(tf.reduce_all(ok), [
                      "rdpipe: strings failed the image-shape or end-of-stream check (corrupt, "
                      "truncated, or written by another model); sanity_ok per string:", ok])]
        with tf.control_dependencies(checks):
            return {"images": tf.identity(images)}

    def _decompress_unchecked(self, strings):
        images, ok, same = self._decode(strings)
        return {"images": images, "sanity_ok": ok & same}

    def signatures(self) -> dict:
        return {"compress": self.compress, "decompress": self.decompress,
                "decompress_unchecked": self.decompress_unchecked,
                **self.svd, "serving_default": self.compress}


class ImageCodec(ImageCodecSignatures):
    """Exported module: compress / decompress (any image size) + the SVD signatures.

      compress(images uint8 [B, H, W, C]) → strings [B], bits_per_pixel float32 [B]
          (information content of the quantized latents under the prior), model_fingerprint
          string [B] (the tables' fingerprint, codec/entropy/container.py)
      decompress(strings [B], all of one image size) → images uint8 [B, H, W, C]; fails on
          strings that fail the shape or end-of-stream checks
      decompress_unchecked(strings) → images, sanity_ok
      svd_approximate / _compression / _energy (codec.linalg.svd.svd_signatures)
    """

    def __init__(self, trainer: BLS2017Trainer, *, tail_mass: float = 2 ** -8,
                 precision: int = 12, coder: str = DEFAULT_CODER):
        super().__init__(name="bls2017_codec")
        self.analysis_transform = trainer.analysis_transform
        self.synthesis_transform = trainer.synthesis_transform
        self.prior_parameters = trainer.prior_parameters
        self.channels = trainer.channels
        self.entropy_model = EntropyModel(
            self.prior_parameters.prior, coding_rank=3, compression=True, tail_mass=tail_mass,
            precision=precision, coder=coder)
        self._make_signatures(self.channels)

    def _compress(self, images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        x = self._pixels_in_unit_range(images)
        y = tf.cast(self.analysis_transform(_replicate_pad(x, DOWNSAMPLING)), tf.float32)
        _, bits = self.entropy_model(y, training=False)
        strings = add_image_shape(self.entropy_model.compress(y), height, width)
        pixels = tf.cast(height * width, tf.float32)
        return {"strings": strings, "bits_per_pixel": bits / pixels,
                "model_fingerprint":
                    self.entropy_model.fingerprint_strings(tf.shape(images)[0])}

    def _decode(self, strings):
        payload, height, width, shape_ok = split_image_shape(strings)
        # Decode work bounded by the string: a string too short to code the size it claims
        # under these tables (an exact bound) is refused, and decodes as 1×1, before any
        # entropy decoding or transform runs over the claimed size.
        payload, height, width, shape_ok = _refuse_short_strings(
            self.entropy_model, payload, height, width, shape_ok)
        # One image size per call: the latent grid is shared by the batch.
        h, w = tf.concat([height, [1]], 0)[0], tf.concat([width, [1]], 0)[0]  # 1 if empty
        same = tf.reduce_all((height == h) & (width == w))
        grid = [(h + DOWNSAMPLING - 1) // DOWNSAMPLING, (w + DOWNSAMPLING - 1) // DOWNSAMPLING]
        y_hat, ok = self.entropy_model.decompress(payload, grid)
        x_hat = tf.cast(self.synthesis_transform(y_hat), tf.float32)[:, :h, :w, :]
        images = tf.saturate_cast(tf.round(x_hat * 255.), tf.uint8)
        return images, ok & shape_ok, same
