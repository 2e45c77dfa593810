"""Integer inference of a small convolution stack, bit-identical on every machine (Ballé,
Johnston & Minnen 2019, "Integer networks for data compression with latent-variable models").

Why: a hyperprior's decoder derives each latent's coding table from the side information. If
that path runs in floating point, a different CPU, thread count, oneDNN setting or GPU can sum
a convolution in another order, move a value across a rounding boundary, pick another table,
and from there every symbol of the string decodes wrong — the "garbage on another device"
reports of TFC and CompressAI. Here the path is integer arithmetic by construction:

- weights: each layer's float kernel times 2^s (s per layer, so the largest |weight| uses
  `weight_bits` bits), rounded to integers; biases times 2^(s + a), rounded;
- activations: fixed point with `a` fractional bits (integers); the input is rounded onto that
  grid (it is ẑ = k + offset, an exact float32 sum, the same everywhere);
- each convolution adds integer products; every partial sum is an integer far below 2^53, so
  float64 arithmetic computes it exactly in any order, with or without FMA — hence the same
  result from every float64 convolution that sums products (CPU im2col/GEMM, Eigen, BLAS);
- after the bias and the ReLU, the accumulator goes back to `a` fractional bits by
  floor((acc + 2^(s−1)) / 2^s), exact (a power of two), and saturates at ±`max_value`: with
  every layer input bounded, the worst-case accumulator is bounded too, and checked below
  2^52 when the stack is built — exactness holds for any input, not only for typical ones.

The float64 convolutions are stock TF ops, so exports stay loadable anywhere. The integer
network approximates the trained float one; what that costs in rate is measured, not assumed.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras as keras

from codec.layers.signal_conv import SignalConv2D

ACTIVATION_BITS = 8            # fractional bits of the activations
WEIGHT_BITS = 15               # magnitude bits of each layer's largest weight
_EXACT_LIMIT = 2.0 ** 52       # partial sums must stay below this to be exact in float64


class IntegerConvStack(tf.Module):
    """The integer version of a `keras.Sequential` of `SignalConv2D` layers, each optionally
    followed by a ReLU. Call it on float inputs; it returns float64 values on the grid of
    `2^-ACTIVATION_BITS`, identical on every machine for identical inputs."""

    def __init__(self, stack: keras.Sequential, activation_bits: int = ACTIVATION_BITS,
                 weight_bits: int = WEIGHT_BITS, max_value: float = 2. ** 10,
                 name: str | None = None):
        super().__init__(name=name)
        self.activation_bits = int(activation_bits)
        self.limit = float(max_value) * 2. ** activation_bits   # |input| of every layer
        self._layers: list[dict] = []
        bound = self.limit
        for layer in stack.layers:
            if isinstance(layer, keras.layers.ReLU):
                if not self._layers:
                    raise ValueError("a ReLU must follow a convolution")
                self._layers[-1]["relu"] = True
                continue
            if not isinstance(layer, SignalConv2D):
                raise ValueError(f"integer inference supports SignalConv2D and ReLU layers, "
                                 f"not {type(layer).__name__}")
            kernel = layer.kernel.numpy().astype(np.float64)
            largest = float(np.abs(kernel).max()) or 1.
            shift = int(math.floor(math.log2((2 ** weight_bits - 1) / largest)))
            weights = np.round(kernel * 2. ** shift)
            bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else \
                np.zeros(layer.filters)
            biases = np.round(bias * 2. ** (shift + activation_bits))
            # Worst case of one output: every product at its largest, plus the bias.
            worst = bound * float(np.abs(weights).sum(axis=(0, 1, 2)).max()) + \
                float(np.abs(biases).max())
            if worst >= _EXACT_LIMIT:
                raise ValueError(f"{layer.name}: integer accumulators could reach {worst:.3g}"
                                 ", beyond exact float64 sums; lower weight_bits or max_value")
            self._layers.append({
                "weights": tf.Variable(weights.astype(np.int32), trainable=False,
                                       name=f"{layer.name}_weights"),
                "biases": tf.Variable(biases, trainable=False, name=f"{layer.name}_biases"),
                "shift": shift, "strides": layer.strides, "transpose": layer.transpose,
                "filters": layer.filters, "relu": False})

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        scale = 2. ** self.activation_bits
        # Exact: x · 2^a, rounding, saturation.
        x = tf.clip_by_value(tf.round(tf.cast(x, tf.float64) * scale), -self.limit, self.limit)
        for spec in self._layers:
            kernel = tf.cast(spec["weights"], tf.float64)
            if spec["transpose"]:
                shape = tf.shape(x)
                output_shape = tf.stack([shape[0], shape[1] * spec["strides"],
                                         shape[2] * spec["strides"], spec["filters"]])
                acc = tf.nn.conv2d_transpose(x, tf.transpose(kernel, (0, 1, 3, 2)),
                                             output_shape, spec["strides"], padding="SAME")
            else:
                acc = tf.nn.conv2d(x, kernel, spec["strides"], padding="SAME")
            acc = acc + spec["biases"]
            if spec["relu"]:
                acc = tf.maximum(acc, 0.)
            half = 2. ** (spec["shift"] - 1) if spec["shift"] > 0 else 0.
            x = tf.clip_by_value(tf.floor((acc + half) / 2. ** spec["shift"]), -self.limit,
                                 self.limit)
        return x / scale
