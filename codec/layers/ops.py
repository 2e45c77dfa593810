"""Small differentiable ops shared by the layers and the priors."""
from __future__ import annotations

import tensorflow as tf


def lower_bound(x: tf.Tensor, bound: float) -> tf.Tensor:
    """`max(x, bound)` whose gradient still flows where it would push `x` back above the bound
    (TFC's `lower_bound` with the "identity_if_towards" gradient, CompressAI's `LowerBound`).

    A plain `tf.maximum` passes no gradient below the bound, so a parameter or a likelihood
    that falls under it can never recover.
    """
    @tf.custom_gradient
    def op(x):
        def grad(dy):
            return dy * tf.cast((x >= bound) | (dy < 0), dy.dtype)
        return tf.maximum(x, tf.cast(bound, x.dtype)), grad
    # A variable passed straight in (e.g. a MirroredVariable) would count as a captured
    # variable of the custom gradient; its value is what is bounded.
    return op(tf.convert_to_tensor(x))
