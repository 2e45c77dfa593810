"""The reference paths the round-trip tests compare against, bit for bit.

`decompress(compress(x))` of a Ballé 2017 codec must equal the in-process synthesis of the
quantized latents — no entropy coding involved: ŷ = round(y − offset) + offset, x̂ = g_s(ŷ)
cropped to the image, rounded to uint8. A decoder that returns zeros, the wrong symbols, or a
blurred image differs from it.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from codec.models.bls2017 import DOWNSAMPLING, ImageCodec, _replicate_pad


def bls2017_reference_decode(codec: ImageCodec, images: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, C]: what the codec's strings must decode to (same batch, same shapes)."""
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, codec.channels), tf.uint8)])
    def reference(x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        y = tf.cast(codec.analysis_transform(
            _replicate_pad(tf.cast(x, tf.float32) / 255., DOWNSAMPLING)), tf.float32)
        offset = codec.entropy_model._quantization_offset  # pylint: disable=protected-access
        y_hat = tf.round(y - offset) + offset
        x_hat = tf.cast(codec.synthesis_transform(y_hat), tf.float32)[:, :height, :width, :]
        return tf.saturate_cast(tf.round(x_hat * 255.), tf.uint8)
    return reference(tf.constant(images)).numpy()
