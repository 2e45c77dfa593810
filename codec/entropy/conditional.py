"""Conditional entropy model: each latent element has its own Gaussian (or logistic) scale and,
optionally, mean — the `y` model of the scale and mean-scale hyperpriors (Ballé et al. 2018;
Minnen et al. 2018), the role of TFC's `LocationScaleIndexedEntropyModel` and CompressAI's
`GaussianConditional`. Written here because neither library installs on this stack.

- Training: `bits(y + u, scale, mean)` with u ~ U(−½, ½): the likelihood of the unit bin around
  ỹ − μ under N(0, σ) (`−log2`, per element), σ bounded below by the smallest table scale.
- Coding: a fixed table of S log-spaced scales (default 64 from 0.11 to 256, as TFC); table i
  holds the integer CDF of the quantized zero-mean distribution with scale σ_i on
  [−R_i, R_i], R_i = ⌈quantile(1 − tail/2)⌉, plus the escape symbol. Element e is coded under
  table `index(σ_e)` = the smallest i with σ_i ≥ σ_e (the largest table above), as the symbol
  `round(y_e − μ_e) + R_i`; decoding gives ŷ_e = symbol − R_i + μ_e. Values outside a table go
  through the escape symbol, so every int32 offset round-trips.
- Strings: portable rANS v2 (`codec.entropy.rans_lanes`) with a per-element table index. The
  indexes must be equal in the encoder and the decoder: they come from σ, which the decoder
  derives from the side information — rdpipe's hyperprior families compute that path in integer
  arithmetic (issue 22), so the index is the same on every machine.

Tables are built once, eagerly (`build_tables`), and kept as variables in the model, like the
factorized `EntropyModel`'s.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256., 64
LIKELIHOOD_BOUND = 1e-9
DISTRIBUTIONS = ("gaussian", "logistic")


def scale_table(minimum: float = SCALE_MIN, maximum: float = SCALE_MAX,
                levels: int = SCALE_LEVELS) -> np.ndarray:
    """`levels` log-spaced scales from `minimum` to `maximum` (float32)."""
    return np.exp(np.linspace(np.log(minimum), np.log(maximum), levels)).astype(np.float32)


def _upper_tail_cdf(distribution: str, x: tf.Tensor) -> tf.Tensor:
    """P(X > x) of the zero-mean unit-scale distribution (precise in the upper tail)."""
    if distribution == "gaussian":
        return .5 * tf.math.erfc(x / math.sqrt(2.))
    return tf.math.sigmoid(-x)


def bin_probability(distribution: str, offset: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Mass of the unit bin centred `offset` from the mean, under scale `scale`: computed on
    the upper tail of |offset| (the precise side, as TFC and CompressAI do)."""
    magnitude = tf.abs(offset)
    return (_upper_tail_cdf(distribution, (magnitude - .5) / scale)
            - _upper_tail_cdf(distribution, (magnitude + .5) / scale))


def _quantile(distribution: str, p: float) -> float:
    if distribution == "gaussian":
        from scipy.special import ndtri  # pylint: disable=import-outside-toplevel
        return float(ndtri(p))
    return math.log(p / (1 - p))


class ConditionalEntropyModel(tf.Module):
    """Per-element scale (and mean) model; see the module docstring.

    Args:
      distribution: "gaussian" or "logistic" (the base of the bin likelihood).
      scales: the table's scales (default `scale_table()`).
      tail_mass: probability mass outside each table (coded through the escape symbol).
      precision: CDF precision in bits.
    """

    def __init__(self, distribution: str = "gaussian", scales: np.ndarray | None = None, *,
                 tail_mass: float = 2 ** -8, precision: int = 12, name: str | None = None):
        super().__init__(name=name)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        scales = scale_table() if scales is None else np.asarray(scales, np.float32)
        if scales.ndim != 1 or len(scales) < 1 or not np.all(np.diff(scales) > 0) or \
                scales[0] <= 0:
            raise ValueError("scales must be a rising 1-D sequence of positive values")
        if not 0 < tail_mass < 1 or not 5 <= precision <= 16:
            raise ValueError("need 0 < tail_mass < 1 and 5 ≤ precision ≤ 16")
        self.distribution = distribution
        self.tail_mass = float(tail_mass)
        self.precision = int(precision)
        self.scales = tf.constant(scales)
        self._cdf = self._offsets = None

    # ------------------------------------------------------------------ training / rate
    def bits(self, y: tf.Tensor, scale: tf.Tensor, mean: tf.Tensor | None = None) -> tf.Tensor:
        """−log2 of each element's bin probability (bits, shape of `y`); `y` is the noisy or
        quantized latent, `scale` > 0 (bounded below by the table's smallest scale)."""
        y = tf.convert_to_tensor(y)
        offset = y if mean is None else y - tf.cast(mean, y.dtype)
        scale = tf.maximum(tf.cast(scale, y.dtype), tf.cast(self.scales[0], y.dtype))
        p = bin_probability(self.distribution, offset, scale)
        return -tf.math.log(tf.maximum(p, LIKELIHOOD_BOUND)) / math.log(2.)

    @staticmethod
    def noisy(y: tf.Tensor, noise: tf.Tensor | None = None) -> tf.Tensor:
        """y + U(−½, ½) (the training proxy for quantization); `noise` replaces the draw."""
        if noise is None:
            noise = tf.random.uniform(tf.shape(y), -.5, .5, dtype=y.dtype)
        return y + tf.cast(noise, y.dtype)

    @staticmethod
    def quantize(y: tf.Tensor, mean: tf.Tensor | None = None) -> tf.Tensor:
        """ŷ = round(y − μ) + μ, what `decompress` returns."""
        if mean is None:
            return tf.round(y)
        return tf.round(y - mean) + mean

    # ------------------------------------------------------------------------ tables
    def build_tables(self) -> None:
        """Integer CDFs of every table scale (eagerly, once): the flat layout of
        `codec.entropy.coders` (one `[-precision, 0, …, 2^precision]` row per table)."""
        import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel
        upper = _quantile(self.distribution, 1 - self.tail_mass / 2)
        radius = np.ceil(self.scales.numpy() * upper).astype(np.int32)
        if 2 * int(radius.max()) + 2 > 2 ** self.precision // 2:
            raise ValueError(f"precision {self.precision} bits is too low for the widest table "
                             f"({2 * int(radius.max()) + 1} symbols); raise precision or "
                             "tail_mass, or lower the largest scale")
        rows = []
        for scale, r in zip(self.scales.numpy(), radius):
            offsets = np.arange(-r, r + 1, dtype=np.float32)
            pmf = bin_probability(self.distribution, tf.constant(offsets),
                                  tf.constant(scale)).numpy().astype(np.float32)
            overflow = np.float32(max(1. - pmf.sum(), 0.))
            cdf = tco.pmf_to_quantized_cdf(np.append(pmf, overflow), precision=self.precision)
            rows.append(np.concatenate([[-self.precision], cdf.numpy()]).astype(np.int32))
        self._cdf = tf.Variable(np.concatenate(rows), trainable=False, name="cdf")
        self._offsets = tf.Variable(-radius, trainable=False, name="cdf_offset")

    @property
    def cdf(self) -> tf.Tensor:
        self._check_tables()
        return tf.convert_to_tensor(self._cdf)

    def _check_tables(self) -> None:
        if self._cdf is None:
            raise RuntimeError("call build_tables() before coding")

    def index(self, scale: tf.Tensor) -> tf.Tensor:
        """int32 table index per element: the smallest table scale ≥ `scale` (the last table
        for larger ones). Coding is exact only if encoder and decoder get the same indexes."""
        scale = tf.cast(scale, tf.float32)
        below = tf.cast(scale[..., None] > self.scales[:-1], tf.int32)
        return tf.reduce_sum(below, axis=-1)

    def symbols(self, y: tf.Tensor, indexes: tf.Tensor, mean: tf.Tensor | None = None):
        """int32 symbols (table-relative) of `y` under `indexes`."""
        self._check_tables()
        offset = y if mean is None else y - tf.cast(mean, y.dtype)
        q = tf.cast(tf.round(offset), tf.int32)
        return q - tf.gather(self._offsets, indexes)

    # ------------------------------------------------------------------------ coding
    def compress(self, y: tf.Tensor, indexes: tf.Tensor,
                 mean: tf.Tensor | None = None) -> tf.Tensor:
        """`y[B, ...]` under `indexes` (same shape) → `string[B]` (portable rANS v2)."""
        from codec.entropy import rans_lanes  # pylint: disable=import-outside-toplevel
        batch = tf.shape(y)[0]
        symbols = tf.reshape(self.symbols(y, indexes, mean), tf.stack([batch, -1]))
        return rans_lanes.encode(symbols, tf.reshape(indexes, tf.stack([batch, -1])), self.cdf)

    def decompress(self, strings: tf.Tensor, indexes: tf.Tensor,
                   mean: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """`string[B]` with `indexes[B, ...]` → `(ŷ` float32 of the shape of `indexes`, `ok[B])`."""
        from codec.entropy import rans_lanes  # pylint: disable=import-outside-toplevel
        batch = tf.shape(indexes)[0]
        flat = tf.reshape(indexes, tf.stack([batch, -1]))
        symbols, ok = rans_lanes.decode(strings, flat, self.cdf)
        values = tf.cast(symbols + tf.gather(self._offsets, flat), tf.float32)
        values = tf.reshape(values, tf.shape(indexes))
        return (values if mean is None else values + tf.cast(mean, tf.float32)), ok
