"""Priors for entropy models: densities of latents convolved with a unit-width uniform.

`tensorflow_compression` (which provides `tfc.NoisyLogistic`) cannot be installed on this stack
(its wheels pin TF 2.14), and TensorFlow Probability is not part of the stack either, so the
few distribution methods an entropy model needs are written here directly in TF.

A "noisy" prior models `y + u`, `u ~ U(-.5, .5)`. Its density is the base CDF difference
`p̃(y) = c(y + .5) - c(y - .5)`, which at integer-spaced points is also the probability mass of
the quantization bin around `y` — the same function serves as training density (of noisy latents)
and as PMF for building the coding tables.
"""
from __future__ import annotations

import tensorflow as tf


def _log_sub_exp(big: tf.Tensor, small: tf.Tensor) -> tf.Tensor:
    """Numerically stable `log(exp(big) - exp(small))` for `small <= big`."""
    return tf.math.log1p(-tf.exp(small - big)) + big


class NoisyLogistic:
    """Logistic(loc, scale) convolved with U(-.5, .5); behaves like `tfc.NoisyLogistic`.

    `loc` and `scale` broadcast to the batch shape of the prior (e.g. `[latent_dims]`). All
    methods are differentiable w.r.t. `loc`/`scale`, so the prior trains with the rate loss.
    """

    def __init__(self, loc, scale):
        self.scale = tf.convert_to_tensor(scale)
        self.loc = tf.cast(tf.convert_to_tensor(loc), self.scale.dtype)
        self.dtype = self.scale.dtype

    @property
    def batch_shape(self) -> tf.TensorShape:
        return tf.broadcast_static_shape(self.loc.shape, self.scale.shape)

    def _z(self, x):
        return (tf.cast(x, self.dtype) - self.loc) / self.scale

    # Base (noise-free) logistic: log CDF = -softplus(-z), log survival = -softplus(z).
    def _base_log_cdf(self, x):
        return -tf.nn.softplus(-self._z(x))

    def _base_log_sf(self, x):
        return -tf.nn.softplus(self._z(x))

    def log_prob(self, y) -> tf.Tensor:
        """Natural-log density of the noisy variable at `y` (nats)."""
        # Right of the median, survival functions are the more precise difference (as TFC does).
        logsf_plus, logsf_minus = self._base_log_sf(y + .5), self._base_log_sf(y - .5)
        logcdf_plus, logcdf_minus = self._base_log_cdf(y + .5), self._base_log_cdf(y - .5)
        right = logsf_plus < logcdf_plus
        big = tf.where(right, logsf_minus, logcdf_plus)
        small = tf.where(right, logsf_plus, logcdf_minus)
        return _log_sub_exp(big, small)

    def prob(self, y) -> tf.Tensor:
        """Density of the noisy variable at `y` (= bin mass of the quantized variable)."""
        return tf.exp(self.log_prob(y))

    def quantile(self, p: float) -> tf.Tensor:
        """Quantile of the *base* logistic (tails are located on the base, as in TFC)."""
        p = tf.constant(p, self.dtype)
        return self.loc + self.scale * (tf.math.log(p) - tf.math.log1p(-p))

    def lower_tail(self, tail_mass: float) -> tf.Tensor:
        return tf.stop_gradient(tf.broadcast_to(self.quantile(tail_mass / 2), self.batch_shape))

    def upper_tail(self, tail_mass: float) -> tf.Tensor:
        return tf.stop_gradient(
            tf.broadcast_to(self.quantile(1 - tail_mass / 2), self.batch_shape))

    def quantization_offset(self) -> tf.Tensor:
        """Sub-integer offset that puts a quantization bin centre on the mode (`loc`)."""
        mode = tf.broadcast_to(self.loc, self.batch_shape)
        return tf.stop_gradient(mode - tf.round(mode))
