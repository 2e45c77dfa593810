"""Generalized divisive normalization (Ballé, Laparra & Simoncelli 2016) and its inverse.

    GDN:  y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)        IGDN: y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)

over the channel axis (last), at every spatial position. β > 0 and γ ≥ 0 are trained through the
non-negative reparameterization of the paper's appendix (TFC's `NonNegativeParameterization`):
a stored variable v gives `value = max(v, bound)² − pedestal`, where `pedestal = 2⁻³⁶` and
`bound = sqrt(minimum + pedestal)`, which keeps gradients alive near the constraint. Written here
because tensorflow-compression's Python package (which has `tfc.GDN`) cannot be installed on
this stack. Initial values as in TFC: β = 1, γ = 0.1 · I.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from codec.layers.ops import lower_bound
from codec.layers.signal_conv import WEIGHTS_DTYPES, read_weight

PEDESTAL = 2.0 ** -36


def _store(value: np.ndarray) -> np.ndarray:
    """Stored variable for a desired non-negative value: sqrt(value + pedestal)."""
    return np.sqrt(np.maximum(value + PEDESTAL, PEDESTAL))


def non_negative(variable: tf.Tensor, minimum: float) -> tf.Tensor:
    """`max(v, sqrt(minimum + pedestal))² − pedestal`: the reparameterized value (≥ minimum)."""
    bound = float(np.sqrt(minimum + PEDESTAL))
    return tf.square(lower_bound(variable, bound)) - PEDESTAL


def channel_mix(x: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """`y[..., i] = Σ_j matrix[i, j] · x[..., j]` as one dense product.

    A 1×1 convolution on `[B, H, W, C]` (as TFC and CompressAI compute GDN), a reshaped
    matmul otherwise. `tf.linalg.matvec` broadcast over `[B, H, W]` runs as B·H·W tiny batched
    products whose gradient w.r.t. the matrix materializes `[B, H, W, C, C]` (≈ 50× slower
    forward + backward at 8 × 32² × 128 on 2 CPU cores).
    """
    if x.shape.rank == 4:
        return tf.nn.conv2d(x, tf.transpose(matrix)[None, None], strides=1, padding="VALID")
    shape = tf.shape(x)
    flat = tf.matmul(tf.reshape(x, [-1, shape[-1]]), matrix, transpose_b=True)
    return tf.reshape(flat, tf.concat([shape[:-1], tf.shape(matrix)[:1]], 0))


class GDN(keras.layers.Layer):
    """GDN (`inverse=False`) or IGDN (`inverse=True`) over the last axis of `[..., C]`.
    `weights_dtype="float16"` stores β and γ's variables in half precision (exports); the
    reparameterization and the normalization still compute in float32."""

    def __init__(self, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = .1,
                 weights_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        if weights_dtype not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, "
                             f"got {weights_dtype!r}")
        self.weights_dtype = weights_dtype
        self.inverse = bool(inverse)
        self.beta_min = float(beta_min)
        self.gamma_init = float(gamma_init)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        storage = tf.float16 if self.weights_dtype == "float16" else None
        self._beta = self.add_weight(
            name="reparam_beta", shape=(channels,), dtype=storage,
            initializer=keras.initializers.Constant(_store(np.ones(channels))))
        self._gamma = self.add_weight(
            name="reparam_gamma", shape=(channels, channels), dtype=storage,
            initializer=keras.initializers.Constant(
                _store(self.gamma_init * np.eye(channels))))
        super().build(input_shape)

    @property
    def beta(self) -> tf.Tensor:
        return non_negative(read_weight(self._beta), self.beta_min)

    @property
    def gamma(self) -> tf.Tensor:
        """`[C_out, C_in]`: γ_ij weighs input channel j in the norm of output channel i."""
        return non_negative(read_weight(self._gamma), 0.)

    def call(self, x):
        norm = self.beta + channel_mix(tf.square(x), self.gamma)
        return x * tf.sqrt(norm) if self.inverse else x * tf.math.rsqrt(norm)

    def get_config(self):
        return {**super().get_config(), "inverse": self.inverse, "beta_min": self.beta_min,
                "gamma_init": self.gamma_init, "weights_dtype": self.weights_dtype}
