"""Low-rank image approximation with `tf.linalg.svd` (the serving signature's baseline).

Images `[B, H, W, C]` are approximated per channel by their best rank-r matrix (Eckart–Young):
`A_r = U_r diag(σ_r) V_rᵀ`, with `‖A − A_r‖²_F = Σ_{i>r} σ_i²`. The SVD issue extends this module
(rank from compression/energy factors, randomized truncated SVD, an entropy-coded SVD codec).
"""
from __future__ import annotations

import tensorflow as tf


def low_rank_approximation(images: tf.Tensor, rank) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 `[B, H, W, C]` + rank → (uint8 reconstruction, float32 σ `[B, C, min(H, W)]`).

    Pixels are approximated on the 0–255 scale and the result is rounded and clipped to
    [0, 255]. `rank` must be in [1, min(H, W)] (checked at run time with a clear message).
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    rank = tf.convert_to_tensor(rank, tf.int32)
    x = tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])  # [B, C, H, W]
    max_rank = tf.minimum(tf.shape(x)[2], tf.shape(x)[3])
    checks = [tf.debugging.assert_rank(images, 4, message="images must be [batch, H, W, C]"),
              tf.debugging.assert_positive(rank, message="rank must be ≥ 1"),
              tf.debugging.assert_less_equal(rank, max_rank,
                                             message="rank must be ≤ min(height, width)")]
    with tf.control_dependencies(checks):
        s, u, v = tf.linalg.svd(x)
    reconstruction = tf.einsum("bcik,bck,bcjk->bcij", u[..., :rank], s[..., :rank],
                               v[..., :rank])
    reconstruction = tf.transpose(reconstruction, [0, 2, 3, 1])
    return tf.saturate_cast(tf.round(reconstruction), tf.uint8), s
