"""The MNIST codec of TensorFlow Compression's "learned data compression" tutorial.

Pieces, as in the tutorial: an analysis transform (digit → 50 latents), a synthesis transform
(latents → digit, also usable as a generative model), a per-latent noisy-logistic prior with
learned log-scales, and an entropy model. Training minimizes `rate + λ·distortion` with rate in
bits per digit (noisy latents) and distortion the mean absolute pixel error on [0, 1].

`MNISTCodec` is the deployable part: a `tf.Module` whose coding tables are built once from the
trained prior and shared by the `compress` and `decompress` signatures of the SavedModel.
Keras here is `tf_keras` (Keras 2), the Keras that TFX 1.16 / TFMA 0.47 use and that exports
SavedModels with `tf.saved_model.save`.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from codec.linalg import svd
from codec.entropy.coders import string_format_ids
from codec.entropy.entropy_models import EntropyModel
from codec.entropy.priors import NoisyLogistic
from codec.layers.spectral import PixelNorm, SpectralNormalization

IMAGE_SHAPE = (28, 28, 1)
DEFAULT_LATENT_DIMS = 50
# 50 symbols per digit: the headerless range coder spends ≈ 3 bits over the information where
# one-lane rANS with a format byte spent ≈ 14 (benchmarks/results/mnist_rd.json).
MNIST_CODER = "portable-range"


NORMALIZATIONS = ("none", "spectral", "pixel")


def _hidden(layer: keras.layers.Layer, normalization: str) -> list[keras.layers.Layer]:
    """A hidden layer of a transform, with the configured normalization (codec/layers/spectral.py):
    "spectral" divides its kernel by σ_max (power iteration), "pixel" follows it by PixelNorm."""
    if normalization == "spectral":
        return [SpectralNormalization(layer, name=f"{layer.name}_sn")]
    if normalization == "pixel":
        return [layer, PixelNorm(name=f"{layer.name}_pixel_norm")]
    return [layer]


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def make_analysis_transform(latent_dims: int = DEFAULT_LATENT_DIMS,
                            normalization: str = "none") -> keras.Sequential:
    """Encoder: `[B, 28, 28, 1]` floats in [0, 1] → `[B, latent_dims]`."""
    _check_normalization(normalization)
    return keras.Sequential([
        *_hidden(keras.layers.Conv2D(20, 5, strides=2, padding="same", activation="leaky_relu",
                                     name="conv_1"), normalization),
        *_hidden(keras.layers.Conv2D(50, 5, strides=2, padding="same", activation="leaky_relu",
                                     name="conv_2"), normalization),
        keras.layers.Flatten(),
        *_hidden(keras.layers.Dense(500, activation="leaky_relu", name="fc_1"), normalization),
        keras.layers.Dense(latent_dims, activation=None, name="fc_2"),
    ], name="analysis_transform")


def make_synthesis_transform(normalization: str = "none") -> keras.Sequential:
    """Decoder: `[B, latent_dims]` → `[B, 28, 28, 1]` floats (≈[0, 1], not clipped)."""
    _check_normalization(normalization)
    return keras.Sequential([
        *_hidden(keras.layers.Dense(500, activation="leaky_relu", name="fc_1"), normalization),
        *_hidden(keras.layers.Dense(2450, activation="leaky_relu", name="fc_2"), normalization),
        keras.layers.Reshape((7, 7, 50)),
        *_hidden(keras.layers.Conv2DTranspose(20, 5, strides=2, padding="same",
                                              activation="leaky_relu", name="conv_1"),
                 normalization),
        keras.layers.Conv2DTranspose(1, 5, strides=2, padding="same",
                                     activation="leaky_relu", name="conv_2"),
    ], name="synthesis_transform")


def to_unit_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 digits in [0, 255] (any of `[B,28,28]`, `[B,28,28,1]`) → float32 `[B,28,28,1]` in [0,1]."""
    return tf.reshape(tf.cast(images, tf.float32) / 255., (-1,) + IMAGE_SHAPE)


def to_uint8(x: tf.Tensor) -> tf.Tensor:
    """Floats in [0, 1] → rounded, saturated uint8 in [0, 255]."""
    return tf.saturate_cast(tf.round(x * 255.), tf.uint8)


DECODER_INPUTS = ("noisy", "quantized")


class MNISTCompressionTrainer(keras.Model):
    """Trains transforms and prior jointly on `rate + lmbda * distortion`.

    `call` returns a dict with `rate` (mean bits per digit) and `distortion` (mean absolute pixel
    difference on [0, 1]). training=True uses noisy latents for the rate; training=False quantized
    latents (the tutorial's validation numbers: information content, not coded length).

    decoder_input: what the synthesis transform sees during training. "noisy" (the tutorial):
    `y + U(-.5, .5)`, the same tensor the rate is measured on. "quantized": `round(y)` with a
    straight-through gradient ("mixed quantization", Minnen & Singh, ICIP 2020) — the decoder
    trains on exactly what it decodes at test time; the rate term is unchanged.
    """

    def __init__(self, latent_dims: int = DEFAULT_LATENT_DIMS, lmbda: float = 2000.,
                 decoder_input: str = "noisy", normalization: str = "none", **kwargs):
        super().__init__(**kwargs)
        if decoder_input not in DECODER_INPUTS:
            raise ValueError(f"decoder_input must be one of {DECODER_INPUTS}, got "
                             f"{decoder_input!r}")
        self.latent_dims = int(latent_dims)
        self.lmbda = float(lmbda)
        self.decoder_input = decoder_input
        self.normalization = normalization
        self.analysis_transform = make_analysis_transform(self.latent_dims, normalization)
        self.synthesis_transform = make_synthesis_transform(normalization)
        self.prior_log_scales = tf.Variable(tf.zeros((self.latent_dims,)), name="prior_log_scales")
        self.entropy_model = EntropyModel(lambda: self.prior, coding_rank=1)
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "rate", "distortion")}

    @property
    def prior(self) -> NoisyLogistic:
        return NoisyLogistic(loc=0., scale=tf.exp(self.prior_log_scales))

    def call(self, x, training=False):
        x = to_unit_float(x)
        y = self.analysis_transform(x)
        y_tilde, bits = self.entropy_model(y, training=training)
        if training and self.decoder_input == "quantized":
            y_tilde = self.entropy_model.quantize(y)
        x_tilde = self.synthesis_transform(y_tilde)
        return dict(rate=tf.reduce_mean(bits), distortion=tf.reduce_mean(tf.abs(x - x_tilde)))

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _update(self, out):
        loss = out["rate"] + self.lmbda * out["distortion"]
        for name, value in (("loss", loss), ("rate", out["rate"]),
                            ("distortion", out["distortion"])):
            self._trackers[name].update_state(value)
        return loss

    @staticmethod
    def _images(data):
        return data[0] if isinstance(data, (tuple, list)) else data

    # Plain Python control flow only: autograph would convert the whole call tree (Keras
    # layers, optimizer, prior — ~1,300 functions) and took ~11 s before the first step: the
    # ~170 ms/step of 1-epoch Trainers (benchmarks/results/mnist_trainer_speed.json).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        with tf.GradientTape() as tape:
            out = self(self._images(data), training=True)
            loss = out["rate"] + self.lmbda * out["distortion"]
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self._update(out)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        self._update(self(self._images(data), training=False))
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def get_config(self):
        return dict(latent_dims=self.latent_dims, lmbda=self.lmbda,
                    decoder_input=self.decoder_input, normalization=self.normalization)


class MNISTCodec(tf.Module):
    """Compressor + decompressor sharing one entropy model (and so one set of tables).

    Signatures (all exported to the SavedModel):
      compress(images uint8 [B,28,28,1]) → strings string [B], information_bits float32 [B],
          model_fingerprint string [B] (the tables' fingerprint, codec/entropy/container.py)
      decompress(strings string [B]) → images uint8 [B,28,28,1]; fails (InvalidArgumentError)
          if any string fails the end-of-stream sanity check
      decompress_unchecked(strings) → images, sanity_ok bool [B]; never fails — the tutorial's
          "decoder as a generative model" (decode random bytes)
      svd_approximate(images uint8 [B,H,W,C], rank int32 []) → reconstruction uint8 [B,H,W,C],
          singular_values float32 [B,C,rank], ranks int32 [B], stored_size int64 [B] — batched
          low-rank approximation of any images (codec/linalg/svd.py, randomized truncated SVD)
      svd_approximate_compression(images, compression_factor float32 []) and
      svd_approximate_energy(images, energy_factor float32 []) → the same outputs, the rank chosen
          from the factor (energy: singular_values holds all min(H, W) values)
    """

    def __init__(self, trainer: MNISTCompressionTrainer, *, tail_mass: float = 2 ** -8,
                 precision: int = 12, coder: str = MNIST_CODER):
        super().__init__(name="mnist_codec")
        self.analysis_transform = trainer.analysis_transform
        self.synthesis_transform = trainer.synthesis_transform
        # A frozen copy: the tables must match the prior the strings are coded with.
        self.prior_log_scales = tf.Variable(trainer.prior_log_scales, trainable=False,
                                            name="prior_log_scales")
        self.latent_dims = trainer.latent_dims
        self.entropy_model = EntropyModel(
            lambda: NoisyLogistic(0., tf.exp(self.prior_log_scales)), coding_rank=1,
            compression=True, tail_mass=tail_mass, precision=precision, coder=coder)
        self.svd = svd.svd_signatures()

    @tf.function(input_signature=[tf.TensorSpec((None,) + IMAGE_SHAPE, tf.uint8, name="images")])
    def compress(self, images):
        y = self.analysis_transform(to_unit_float(images))
        _, bits = self.entropy_model(y, training=False)
        return {"strings": self.entropy_model.compress(y), "information_bits": bits,
                "model_fingerprint":
                    self.entropy_model.fingerprint_strings(tf.shape(images)[0])}

    def _decode(self, strings):
        y_hat, ok = self.entropy_model.decompress(strings, [1])
        y_hat = tf.reshape(y_hat, (-1, self.latent_dims))
        images = tf.reshape(to_uint8(self.synthesis_transform(y_hat)), (-1,) + IMAGE_SHAPE)
        return images, ok

    @tf.function(input_signature=[])
    def string_format(self):
        """The coder of this model's strings (name, format id): recorded once here, since
        headerless strings (`portable-range`) cannot say it themselves."""
        coder = self.entropy_model.coder
        return {"coder": tf.constant(coder.name), "format_id": tf.constant(coder.format_id)}

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="strings")])
    def decompress(self, strings):
        if self.entropy_model.coder.headerless:   # nothing in the string to check
            return self._checked_decode(strings)
        expected = self.entropy_model.coder.format_id
        formats = string_format_ids(strings)
        format_check = tf.debugging.Assert(
            tf.reduce_all(formats == expected),
            [f"rdpipe: strings were not written by this model's entropy coder "
             f"({self.entropy_model.coder_name!r}, format id {expected}); format ids found "
             "(1 portable, 2 tfc, -1 empty):", formats])
        with tf.control_dependencies([format_check]):
            return self._checked_decode(strings)

    def _checked_decode(self, strings):
        images, ok = self._decode(strings)
        check = tf.debugging.Assert(
            tf.reduce_all(ok),
            ["rdpipe: strings failed the decoder's end-of-stream sanity check "
             "(corrupt, truncated or from another model); batch indices:", tf.where(~ok)])
        with tf.control_dependencies([check]):
            return {"images": tf.identity(images)}

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="strings")])
    def decompress_unchecked(self, strings):
        images, ok = self._decode(strings)
        return {"images": images, "sanity_ok": ok}

    def signatures(self) -> dict:
        return {"compress": self.compress, "decompress": self.decompress,
                "decompress_unchecked": self.decompress_unchecked,
                **self.svd, "serving_default": self.compress}
