"""Per-channel deep factorized density (Ballé et al. 2018, appendix 6.1), convolved with U(−½, ½).

Each channel has a univariate CDF `c(x) = sigmoid(f(x))`, `f` a small monotonic network: with
filters (1, 3, 3, 3, 1), layer k computes `h ← softplus(H_k) h + b_k` and, except the last,
`h ← h + tanh(a_k) ⊙ tanh(h)`; softplus keeps H_k positive and tanh(a_k) ≥ −1, so f is increasing.
The noisy density at y is `c(y + ½) − c(y − ½)` (TFC's `NoisyDeepFactorized`), the same function
as the bin mass used to build the coding tables. Interface as `codec.entropy.priors.NoisyLogistic`, so
`codec.entropy.entropy_models.EntropyModel` (and both coders) serve it unchanged. Written here because
tensorflow-compression's Python package cannot be installed on this stack.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from codec.layers.ops import lower_bound

LIKELIHOOD_BOUND = 1e-9
_TAIL_SEARCH_RANGE = 2.0 ** 15      # tails are searched in [−range, range]
_BISECTION_STEPS = 50


class DeepFactorizedParameters(tf.Module):
    """Trainable parameters of `channels` independent densities (TFC's initialization)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3),
                 init_scale: float = 10., seed: int = 0, legacy_numerics: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        self.channels = int(channels)
        # rdpipe ≤ 0.x: sign(0) = 0 at the median (likelihood 0 → floored) and a floor that
        # passes no gradient. Kept only to measure what the fix is worth.
        self.legacy_numerics = bool(legacy_numerics)
        sizes = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(sizes) - 1))
        rng = np.random.default_rng(seed)
        self.matrices, self.biases, self.factors = [], [], []
        for k in range(len(sizes) - 1):
            value = np.log(np.expm1(1 / scale / sizes[k + 1]))
            self.matrices.append(tf.Variable(
                np.full((channels, sizes[k + 1], sizes[k]), value, np.float32),
                name=f"matrix_{k}"))
            self.biases.append(tf.Variable(
                rng.uniform(-.5, .5, (channels, sizes[k + 1], 1)).astype(np.float32),
                name=f"bias_{k}"))
            if k < len(sizes) - 2:
                self.factors.append(tf.Variable(
                    np.zeros((channels, sizes[k + 1], 1), np.float32), name=f"factor_{k}"))

    def prior(self) -> "NoisyDeepFactorized":
        return NoisyDeepFactorized(self)


class NoisyDeepFactorized:
    """The density over `[..., C]` (channels last) defined by `DeepFactorizedParameters`."""

    def __init__(self, parameters: DeepFactorizedParameters):
        self.parameters = parameters
        self.dtype = tf.float32

    @property
    def batch_shape(self) -> tf.TensorShape:
        return tf.TensorShape([self.parameters.channels])

    def logits_cumulative(self, x: tf.Tensor) -> tf.Tensor:
        """f(x) for `x [..., C]` (each channel under its own network)."""
        x = tf.cast(x, self.dtype)
        shape = tf.shape(x)
        h = tf.reshape(tf.transpose(tf.reshape(x, [-1, self.parameters.channels])),
                       [self.parameters.channels, 1, -1])                # [C, 1, N]
        p = self.parameters
        for k, (matrix, bias) in enumerate(zip(p.matrices, p.biases)):
            h = tf.linalg.matmul(tf.nn.softplus(matrix), h) + bias
            if k < len(p.factors):
                h += tf.tanh(p.factors[k]) * tf.tanh(h)
        return tf.reshape(tf.transpose(tf.reshape(h, [self.parameters.channels, -1])), shape)

    def log_prob(self, y) -> tf.Tensor:
        """Natural-log density of the noisy variable at `y` (nats), bounded below at log(1e-9)
        by a bound that still passes gradients pushing the likelihood up (`codec.layers.ops`)."""
        lower = self.logits_cumulative(y - .5)
        upper = self.logits_cumulative(y + .5)
        # Flip to the side where both sigmoids are small: c(u) − c(l) loses no precision.
        # Where lower + upper is exactly 0 (the bin centred on the median) either side is
        # exact; tf.sign would give 0 there and a likelihood of 0.
        if self.parameters.legacy_numerics:
            sign = tf.stop_gradient(-tf.sign(lower + upper))
        else:
            sign = tf.stop_gradient(tf.where(lower + upper > 0, -1., 1.))
        likelihood = tf.abs(tf.sigmoid(sign * upper) - tf.sigmoid(sign * lower))
        if self.parameters.legacy_numerics:
            return tf.math.log(tf.maximum(likelihood, LIKELIHOOD_BOUND))
        return tf.math.log(lower_bound(likelihood, LIKELIHOOD_BOUND))

    def prob(self, y) -> tf.Tensor:
        return tf.exp(self.log_prob(y))

    def _solve(self, target_logit: float) -> tf.Tensor:
        """x per channel with f(x) = target_logit, by bisection (f is increasing)."""
        channels = self.parameters.channels
        low = tf.fill([channels], -_TAIL_SEARCH_RANGE)
        high = tf.fill([channels], _TAIL_SEARCH_RANGE)
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2
            above = self.logits_cumulative(mid[None, :])[0] > target_logit
            low, high = tf.where(above, low, mid), tf.where(above, mid, high)
        return tf.stop_gradient((low + high) / 2)

    def lower_tail(self, tail_mass: float) -> tf.Tensor:
        return self._solve(float(np.log(tail_mass / 2) - np.log1p(-tail_mass / 2)))

    def upper_tail(self, tail_mass: float) -> tf.Tensor:
        return self._solve(float(np.log1p(-tail_mass / 2) - np.log(tail_mass / 2)))

    def quantization_offset(self) -> tf.Tensor:
        """Puts a quantization bin centre on each channel's median (the mode is not tractable)."""
        median = self._solve(0.)
        return tf.stop_gradient(median - tf.round(median))
