"""Strided 2-D convolution and its transpose with TFC's initialization and kernel
parameterization (the role of `tfc.SignalConv2D` in TFC's `models/bls2017.py`).

- **Initialization** (`kernel_init="variance_scaling"`, the default): truncated normal with
  variance 1 / fan-in, fan-in counted on the `[h, w, in, out]` kernel (`h·w·in`) for the
  down- and the up-sampling layers alike, as TFC. Keras' `Conv2D` default (Glorot uniform)
  makes the first 9×9 analysis filter ≈ 4.7× smaller, so the latents start far below the
  quantization noise. `kernel_init="glorot_uniform"` keeps the old behaviour for comparison.
- **Parameterization** (`parameterization="rdft"`, the default): the trainable variables are
  the real and imaginary parts of the kernel's 2-D real DFT over its spatial axes, scaled by
  1/sqrt(h·w) so the map is orthonormal; the kernel is their inverse RDFT. Gradient descent is
  the same under an orthonormal change of variables, but Adam's per-coordinate step sizes are
  not: on Fourier coefficients they equalize the learning speed of low and high frequencies
  (Ballé 2018, "Efficient nonlinear transforms for lossy image compression", arXiv 1802.00847).
  `parameterization="plain"` stores the kernel itself (variables named `kernel` / `bias` as a
  Keras `Conv2D`, so checkpoints written before this layer existed still load).

Written here because tensorflow-compression's Python package cannot be installed on this stack.
Padding is TF's "SAME" (zeros), so an `H × W` input gives `⌈H/s⌉ × ⌈W/s⌉` (down) or
`H·s × W·s` (up) outputs.
"""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

PARAMETERIZATIONS = ("rdft", "plain")
KERNEL_INITS = ("variance_scaling", "glorot_uniform")
WEIGHTS_DTYPES = ("float32", "float16")


def read_weight(variable) -> tf.Tensor:
    """A stored weight as float32 arithmetic wants it: float16-stored weights (exports that
    halve their size, `weights_dtype="float16"`) are cast up before any math, so the transform
    computes in float32 whatever the storage."""
    if variable.dtype.base_dtype == tf.float16:
        return tf.cast(variable, tf.float32)
    return variable


def initial_kernel(shape: tuple[int, int, int, int], kernel_init: str,
                   seed: int | None = None) -> tf.Tensor:
    """Initial `[h, w, in, out]` kernel; fan-in is `h·w·in` for both directions (TFC)."""
    if kernel_init == "variance_scaling":
        initializer = keras.initializers.VarianceScaling(
            1., "fan_in", "truncated_normal", seed=seed)
    elif kernel_init == "glorot_uniform":
        initializer = keras.initializers.GlorotUniform(seed=seed)
    else:
        raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
    return initializer(shape, tf.float32)


def kernel_to_rdft(kernel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`[h, w, in, out]` kernel → (real, imag) of its orthonormal 2-D RDFT, `[in, out, h, w//2+1]`."""
    h, w = kernel.shape[:2]
    spectrum = tf.signal.rfft2d(tf.transpose(kernel, (2, 3, 0, 1))) / math.sqrt(h * w)
    return tf.math.real(spectrum), tf.math.imag(spectrum)


def rdft_to_kernel(real: tf.Tensor, imag: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Inverse of `kernel_to_rdft`: `[in, out, h, w//2+1]` coefficients → `[h, w, in, out]`
    (float32: the FFT has no half-precision kernels)."""
    spectrum = tf.complex(tf.cast(real, tf.float32), tf.cast(imag, tf.float32))
    spectrum *= math.sqrt(size[0] * size[1])
    return tf.transpose(tf.signal.irfft2d(spectrum, fft_length=size), (2, 3, 0, 1))


class SignalConv2D(keras.layers.Layer):
    """Correlation + downsampling (`transpose=False`) or upsampling + convolution (`True`).

    Args:
      filters: output channels.
      kernel_size: square support (e.g. 9 or 5).
      strides: down- (or up-) sampling factor.
      transpose: upsample (synthesis) instead of downsample (analysis).
      use_bias: add a bias per output channel (TFC's bls2017 leaves it out of the last
        analysis layer: the latents' offset is the prior's business).
      parameterization: "rdft" (default) or "plain"; see the module docstring.
      kernel_init: "variance_scaling" (default, TFC) or "glorot_uniform" (Keras' default).
      weights_dtype: storage of the variables, "float32" (training) or "float16" (exports:
        half the bytes; the layer still computes in float32).
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, *,
                 transpose: bool = False, use_bias: bool = True,
                 parameterization: str = "rdft", kernel_init: str = "variance_scaling",
                 weights_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, "
                             f"got {parameterization!r}")
        if kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
        if weights_dtype not in WEIGHTS_DTYPES:
            raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, "
                             f"got {weights_dtype!r}")
        self.weights_dtype = weights_dtype
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.transpose, self.use_bias = bool(transpose), bool(use_bias)
        self.parameterization, self.kernel_init = parameterization, kernel_init

    def build(self, input_shape):
        channels = int(input_shape[-1])
        shape = (self.kernel_size, self.kernel_size, channels, self.filters)
        initial = initial_kernel(shape, self.kernel_init)
        if self.parameterization == "rdft":
            real, imag = kernel_to_rdft(initial)
            self.kernel_real = self.add_weight(
                name="kernel_real", shape=real.shape, dtype=self._storage_dtype,
                initializer=keras.initializers.Constant(real.numpy()))
            self.kernel_imag = self.add_weight(
                name="kernel_imag", shape=imag.shape, dtype=self._storage_dtype,
                initializer=keras.initializers.Constant(imag.numpy()))
        else:   # Keras' layout: [h, w, out, in] for a transposed convolution
            stored = tf.transpose(initial, (0, 1, 3, 2)) if self.transpose else initial
            self._kernel = self.add_weight(
                name="kernel", shape=stored.shape, dtype=self._storage_dtype,
                initializer=keras.initializers.Constant(stored.numpy()))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        dtype=self._storage_dtype, initializer="zeros")
        super().build(input_shape)

    @property
    def _storage_dtype(self):
        """None (the layer's policy: float32 variables) unless float16 storage is asked."""
        return tf.float16 if self.weights_dtype == "float16" else None

    @property
    def kernel(self) -> tf.Tensor:
        """The `[h, w, in, out]` kernel (for `transpose=True`: in = latent channels)."""
        if self.parameterization == "rdft":
            return rdft_to_kernel(read_weight(self.kernel_real), read_weight(self.kernel_imag),
                                  (self.kernel_size, self.kernel_size))
        kernel = read_weight(self._kernel)
        return tf.transpose(kernel, (0, 1, 3, 2)) if self.transpose else kernel

    def call(self, x):
        kernel = tf.cast(self.kernel, x.dtype)   # x may be bfloat16 under mixed precision
        if self.transpose:
            shape = tf.shape(x)
            output_shape = tf.stack([shape[0], shape[1] * self.strides,
                                     shape[2] * self.strides, self.filters])
            y = tf.nn.conv2d_transpose(x, tf.transpose(kernel, (0, 1, 3, 2)), output_shape,
                                       self.strides, padding="SAME")
        else:
            y = tf.nn.conv2d(x, kernel, self.strides, padding="SAME")
        return y + tf.cast(read_weight(self.bias), y.dtype) if self.use_bias else y

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        h, w = input_shape[1], input_shape[2]
        scale = (lambda n: None if n is None else n * self.strides) if self.transpose else \
            (lambda n: None if n is None else -(-n // self.strides))
        return tf.TensorShape([input_shape[0], scale(h), scale(w), self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "transpose": self.transpose, "use_bias": self.use_bias,
                "parameterization": self.parameterization, "kernel_init": self.kernel_init,
                "weights_dtype": self.weights_dtype}
