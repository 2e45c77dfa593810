"""Batched entropy model for continuous latents (the role of `tfc.ContinuousBatchedEntropyModel`).

Training mode: latents get additive U(-.5, .5) noise and the rate is `-log2 p̃(ỹ)` summed over
each coding unit (bits). Inference: latents are rounded around a prior-dependent quantization
offset, mapped to integer symbols and entropy-coded to one byte string per coding unit with
integer CDF tables that are built once from the prior, stored as variables, and shared by the
compressor and the decompressor (tables rebuilt independently on two machines may differ in the
last bit and break decoding — Ballé et al., "Integer networks for data compression").

Latent layout: `[batch, *positions, channels]`; the prior has one scalar distribution per channel
(shape `[channels]`) and the innermost `coding_rank` axes form one coding unit (one string).
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Protocol

import numpy as np
import tensorflow as tf

from codec.entropy.coders import DEFAULT_CODER, CdfTables, EntropyCoder, get_coder


class Prior(Protocol):
    """What an entropy model needs from a (noisy) prior with batch shape `[channels]`."""

    dtype: tf.DType
    batch_shape: tf.TensorShape

    def log_prob(self, y): ...
    def prob(self, y): ...
    def lower_tail(self, tail_mass: float): ...
    def upper_tail(self, tail_mass: float): ...
    def quantization_offset(self): ...


@tf.custom_gradient
def _round_straight_through(x):
    """Rounding whose gradient is the identity (straight-through estimator)."""
    return tf.round(x), lambda dy: dy


class DecodeError(ValueError):
    """Raised (eagerly) when strings fail the coder's end-of-stream sanity check."""


class EntropyModel(tf.Module):
    """Entropy model over a per-channel prior; see the module docstring.

    Args:
      prior_fn: returns the current prior (called each time, so trainable parameters are live).
      coding_rank: number of innermost latent axes coded as one unit (1 for MNIST's `[B, 50]`).
      compression: build the integer coding tables now (eagerly), enabling compress/decompress.
      tail_mass: probability mass left outside the tables and coded through the escape symbol.
      precision: range coder precision in bits (CDF entries sum to `2**precision`).
      coder: entropy coder name (see `codec.entropy.coders`).
    """

    def __init__(self, prior_fn: Callable[[], Prior], coding_rank: int, *,
                 compression: bool = False, tail_mass: float = 2 ** -8,
                 precision: int = 12, coder: str = DEFAULT_CODER,
                 name: str | None = None):
        super().__init__(name=name)
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        if not 1 <= precision <= 16:
            raise ValueError(f"precision must be in [1, 16] bits, got {precision}")
        if coder in ("portable", "portable-range") and precision < 5:
            # The portable coder's escape chunks are uniform 5-bit items (frequency 2^(P−5)).
            raise ValueError(f"the portable coder needs precision ≥ 5 bits, got {precision}")
        self._prior_fn = prior_fn
        self.coding_rank = int(coding_rank)
        self.tail_mass = float(tail_mass)
        self.precision = int(precision)
        self.coder_name = coder
        self._coder: EntropyCoder | None = None
        self.compression = bool(compression)
        if self.compression:
            self._build_tables()

    @property
    def prior(self) -> Prior:
        return self._prior_fn()

    @property
    def coder(self) -> EntropyCoder:
        if self._coder is None:
            self._coder = get_coder(self.coder_name)
        return self._coder

    # ----------------------------------------------------------------------- training / rate
    def __call__(self, y: tf.Tensor, training: bool,
                 noise: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns `(y_perturbed, bits)`; `bits` has the shape of `y` minus the coding axes.

        training=True: `ỹ = y + U(-.5,.5)`, differentiable upper bound on the coded rate;
        `noise` (shape of `y`, values in [-.5, .5)) replaces the draw from TF's global RNG,
        e.g. for training that resumes exactly.
        training=False: `ŷ = quantize(y)`, information content of the quantized latents under
        the continuous prior (the tutorial's validation "rate").
        """
        prior = self.prior
        if training:
            if noise is None:
                noise = tf.random.uniform(tf.shape(y), -.5, .5, dtype=y.dtype)
            y_perturbed = y + tf.cast(noise, y.dtype)
        else:
            y_perturbed = self.quantize(y)
        log_probs = prior.log_prob(y_perturbed)
        axes = tuple(range(-self.coding_rank, 0))
        bits = tf.reduce_sum(log_probs, axis=axes) / -math.log(2.0)
        return y_perturbed, bits

    def quantize(self, y: tf.Tensor) -> tf.Tensor:
        """Rounds to the grid `offset + Z` (straight-through gradient)."""
        offset = self._offset()
        return _round_straight_through(y - offset) + offset

    def _offset(self) -> tf.Tensor:
        if self.compression:
            return self._quantization_offset
        return self.prior.quantization_offset()

    # ------------------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        """Samples the prior's bin masses and quantizes them to integer CDFs (eagerly, once)."""
        import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel

        prior = self.prior
        if prior.batch_shape.rank != 1:
            raise ValueError(f"prior must have batch shape [channels], got {prior.batch_shape}")
        offset = prior.quantization_offset().numpy()
        # Integer range [minima, maxima] such that minima + offset < lower tail and
        # maxima + offset > upper tail; mass outside goes to the escape symbol.
        minima = np.floor(prior.lower_tail(self.tail_mass).numpy() - offset).astype(np.int32)
        maxima = np.ceil(prior.upper_tail(self.tail_mass).numpy() - offset).astype(np.int32)
        pmf_length = maxima - minima + 1
        max_length = int(pmf_length.max())
        if max_length > 2048:
            raise ValueError(
                f"prior too wide for coding tables ({max_length} symbols); increase tail_mass")
        if max_length + 1 > 2 ** self.precision // 2:
            # Each symbol (and the escape) needs at least one of the 2^precision CDF slots; TFC's
            # pmf_to_quantized_cdf aborts the process rather than raising when they do not fit.
            raise ValueError(
                f"precision {self.precision} bits is too low for a {max_length}-symbol table; "
                f"raise precision or tail_mass")
        samples = np.arange(max_length)[:, None] + minima[None, :] + offset[None, :]
        pmf = prior.prob(tf.constant(samples, prior.dtype)).numpy().T  # [C, max_length]
        rows = []
        for channel, length in enumerate(pmf_length):
            p = pmf[channel, :length].astype(np.float32)
            overflow = np.maximum(1.0 - p.sum(), 0.0).astype(np.float32)
            cdf = tco.pmf_to_quantized_cdf(np.append(p, overflow), precision=self.precision)
            rows.append(np.concatenate([[-self.precision], cdf.numpy()]).astype(np.int32))
        self._cdf = tf.Variable(np.concatenate(rows), trainable=False, name="cdf")
        self._cdf_offset = tf.Variable(minima, trainable=False, name="cdf_offset")
        self._cdf_length = tf.Variable(pmf_length + 2, trainable=False, name="cdf_length")
        self._quantization_offset = tf.Variable(
            offset.astype(prior.dtype.as_numpy_dtype), trainable=False,
            name="quantization_offset")

    @property
    def tables(self) -> CdfTables:
        self._check_compression()
        return CdfTables(tf.convert_to_tensor(self._cdf), tf.convert_to_tensor(self._cdf_offset),
                         tf.convert_to_tensor(self._cdf_length))

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying the coding tables (see `table_fingerprint`)."""
        self._check_compression()
        return table_fingerprint(self._cdf, self._cdf_offset, self._cdf_length,
                                 self._quantization_offset).hex()

    def fingerprint_strings(self, batch_size: tf.Tensor) -> tf.Tensor:
        """`string[batch_size]` of `fingerprint`: the `model_fingerprint` output of exported
        compress signatures, so a client of a server can label the files it writes."""
        with tf.init_scope():   # the tables are read eagerly at trace time: a constant
            fingerprint = self.fingerprint
        return tf.fill(tf.reshape(batch_size, [1]), tf.constant(fingerprint))

    def _check_compression(self) -> None:
        if not self.compression:
            raise RuntimeError("entropy model was built with compression=False: no coding tables")

    # ---------------------------------------------------------------------- coding
    def symbols(self, y: tf.Tensor) -> tf.Tensor:
        """Integer symbols `[B, M, C]` (table-relative) of the quantized latents `y[B, ..., C]`."""
        self._check_compression()
        q = tf.cast(tf.round(y - self._quantization_offset), tf.int32)
        q = tf.reshape(q, [tf.shape(q)[0], -1, tf.shape(q)[-1]])
        return q - self._cdf_offset

    def compress(self, y: tf.Tensor) -> tf.Tensor:
        """Quantizes and codes `y[B, *positions, C]` to `string[B]` (one string per unit)."""
        self._check_compression()
        if self.coding_rank != y.shape.rank - 1:
            raise ValueError(
                f"compress expects latents [batch, ...] with coding_rank={self.coding_rank} "
                f"innermost axes, got rank {y.shape.rank}")
        return self.coder.encode(self.symbols(y), self._cdf)

    def decompress(self, strings: tf.Tensor, broadcast_shape) -> tuple[tf.Tensor, tf.Tensor]:
        """Decodes `string[B]` to `(ŷ[B, *broadcast_shape, C], ok[B])`.

        `ok` is the coder's sanity check per string; see `check_decoded` to turn it into an error.
        """
        self._check_compression()
        strings = tf.convert_to_tensor(strings, tf.string)
        broadcast_shape = tf.cast(tf.convert_to_tensor(broadcast_shape), tf.int32)
        channels = tf.shape(self._cdf_offset)[0]
        symbols, ok = self.coder.decode(
            strings, tf.reduce_prod(broadcast_shape), channels, self._cdf)
        values = tf.cast(symbols + self._cdf_offset, self._quantization_offset.dtype)
        values += self._quantization_offset
        shape = tf.concat([tf.shape(strings), broadcast_shape, [channels]], 0)
        return tf.reshape(values, shape), ok

    def min_string_bytes(self, num_positions) -> tf.Tensor:
        """The shortest string the coder can write for `num_positions` positions (int64, shape
        of `num_positions`; 0 where it gives no bound): see `EntropyCoder.min_string_bytes`."""
        self._check_compression()
        return self.coder.min_string_bytes(self._cdf, num_positions,
                                           tf.shape(self._cdf_offset)[0])

    def too_short(self, strings: tf.Tensor, num_positions) -> tf.Tensor:
        """bool `[B]`: strings too short to code `num_positions[B]` positions under these
        tables, by the layout each names (`EntropyCoder.too_short`)."""
        self._check_compression()
        return self.coder.too_short(strings, self._cdf, num_positions,
                                    tf.shape(self._cdf_offset)[0])

    # ---------------------------------------------------------------------- accounting
    def table_information_bits(self, y: tf.Tensor) -> tf.Tensor:
        """Ideal code length (bits) of quantized `y[B, ..., C]` under the *integer* tables.

        In-range symbols cost `-log2(pmf)`; escaped ones cost the escape symbol plus an
        Elias-gamma estimate of the escaped magnitude (the exact overflow layout is coder
        specific). A real coder's output must stay within a few bytes of this.
        """
        symbols = self.symbols(y)  # [B, M, C]
        cdf, cdf_length = self._cdf, self._cdf_length
        # Each channel's row is [-precision, cdf_0, ..., cdf_{L}] with L + 1 = cdf_length.
        starts = tf.concat([[0], tf.cumsum(cdf_length + 1)[:-1]], 0)
        pmf_len = cdf_length - 2
        escape = symbols < 0
        escape |= symbols >= pmf_len
        index = tf.where(escape, pmf_len, symbols)  # escape symbol sits at index pmf_len
        lo = tf.gather(cdf, starts + 1 + index)
        hi = tf.gather(cdf, starts + 2 + index)
        bits = -tf.math.log(tf.cast(hi - lo, tf.float32) / 2.0 ** self.precision) / math.log(2.)
        # Escaped magnitude v>=0: Elias gamma of (v + 1) costs 2*floor(log2(v+1)) + 1 bits.
        over = tf.where(symbols < 0, -symbols - 1, symbols - pmf_len)
        gamma = 2.0 * tf.floor(tf.math.log(tf.cast(over, tf.float32) + 1.0) / math.log(2.)) + 1
        bits += tf.where(escape, gamma, 0.0)
        return tf.reduce_sum(bits, axis=[1, 2])


def table_fingerprint(cdf, cdf_offset, cdf_length, quantization_offset) -> bytes:
    """8 bytes of SHA-256 over the coding tables (big-endian int32 CDFs, offsets and lengths,
    float32 quantization offsets): equal for two models exactly when they code alike, so a
    `.bin` file can name the model that decodes it (codec/entropy/container.py)."""
    digest = hashlib.sha256()
    for array, dtype in ((cdf, ">i4"), (cdf_offset, ">i4"), (cdf_length, ">i4"),
                         (quantization_offset, ">f4")):
        values = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
        digest.update(np.ascontiguousarray(values.astype(dtype)).tobytes())
    return digest.digest()[:8]


def check_decoded(ok: tf.Tensor) -> None:
    """Raises `DecodeError` naming the strings that failed the coder's sanity check (eager)."""
    failed = np.flatnonzero(~np.asarray(ok))
    if failed.size:
        shown = ", ".join(map(str, failed[:10])) + (" ..." if failed.size > 10 else "")
        raise DecodeError(
            f"{failed.size} of {np.size(ok)} strings failed the decoder's end-of-stream sanity "
            f"check (indices {shown}): corrupt, truncated, or written by another model")
