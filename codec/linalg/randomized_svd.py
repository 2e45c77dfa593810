"""Truncated SVD for batched matrices: randomized range finder (Halko, Martinsson & Tropp 2011)
with a fallback to `tf.linalg.svd`.

For `A [..., m, n]` and a target rank r, with ℓ = r + oversampling columns:
    Y = A Ω (Ω Gaussian n×ℓ, stateless seed: deterministic), Q = qr(Y);
    `power_iterations` times: Q = qr(A qr(Aᵀ Q))      (subspace iteration, re-orthonormalized by
                                                      QR each half step to keep small σ alive);
    B = Qᵀ A (ℓ×n), B = Ũ Σ Vᵀ, U = Q Ũ, keep the top r triplets.
Cost O(mnℓ) per iteration instead of O(mn·min(m,n)); the error approaches the optimal rank-r
error Σ_{i>r} σ_i² as oversampling and iterations grow (HMT §10). Written by hand because
TensorFlow has no truncated/randomized SVD; scikit-learn's is NumPy-only (not exportable).
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

# Oversampling p = max(10, r/2) with 2 power iterations: measured on a 1024² natural image
# (benchmarks/bench_svd.py), p = 10 leaves 1.4 % excess error at r = 100 while p = r/2 gets
# within 0.3 % at 1.2× the time; more iterations buy less accuracy per second than p does.
MIN_OVERSAMPLING = 10
DEFAULT_POWER_ITERATIONS = 2
# Randomized only pays off when ℓ is small next to min(m, n); beyond this fraction the full
# decomposition is as fast and exact.
RANDOMIZED_MAX_FRACTION = 0.25


class TruncatedSvd(NamedTuple):
    s: tf.Tensor   # [..., r] singular values, descending
    u: tf.Tensor   # [..., m, r]
    v: tf.Tensor   # [..., n, r]


def _orthonormal(y: tf.Tensor) -> tf.Tensor:
    q, _ = tf.linalg.qr(y)
    return q


def oversampling_for(rank) -> tf.Tensor:
    """Default oversampling p = max(10, rank // 2) (int32)."""
    return tf.maximum(MIN_OVERSAMPLING, tf.convert_to_tensor(rank, tf.int32) // 2)


def randomized_svd(a: tf.Tensor, rank: int, *, oversampling=None,
                   power_iterations: int = DEFAULT_POWER_ITERATIONS,
                   seed: tuple[int, int] = (0, 0)) -> TruncatedSvd:
    """Top-`rank` SVD of float `a [..., m, n]` by the randomized range finder.

    `rank` is a Python int or int32 scalar tensor; ℓ = min(rank + oversampling, min(m, n)),
    oversampling by default `oversampling_for(rank)`.
    Deterministic for a given `seed` (stateless random sketch).
    """
    a = tf.convert_to_tensor(a)
    shape = tf.shape(a)
    m, n = shape[-2], shape[-1]
    rank = tf.convert_to_tensor(rank, tf.int32)
    if oversampling is None:
        oversampling = oversampling_for(rank)
    width = tf.minimum(rank + oversampling, tf.minimum(m, n))
    omega = tf.random.stateless_normal(tf.concat([shape[:-2], [n, width]], 0), seed, dtype=a.dtype)
    q = _orthonormal(tf.matmul(a, omega))                                # [..., m, ℓ]
    for _ in range(power_iterations):
        z = _orthonormal(tf.matmul(a, q, adjoint_a=True))                 # [..., n, ℓ]
        q = _orthonormal(tf.matmul(a, z))
    b = tf.matmul(q, a, adjoint_a=True)                                  # [..., ℓ, n]
    s, u_b, v = tf.linalg.svd(b)
    u = tf.matmul(q, u_b)
    return TruncatedSvd(s[..., :rank], u[..., :rank], v[..., :rank])


def full_truncated_svd(a: tf.Tensor, rank) -> TruncatedSvd:
    """Top-`rank` triplets of the exact `tf.linalg.svd` (the reference)."""
    s, u, v = tf.linalg.svd(a)
    return TruncatedSvd(s[..., :rank], u[..., :rank], v[..., :rank])


def use_randomized(rank, m, n, oversampling=None) -> tf.Tensor:
    """Whether `truncated_svd` takes the randomized path for this rank and shape."""
    if oversampling is None:
        oversampling = oversampling_for(rank)
    small = tf.cast(tf.minimum(m, n), tf.float32)
    return tf.cast(rank + oversampling, tf.float32) <= RANDOMIZED_MAX_FRACTION * small


def truncated_svd(a: tf.Tensor, rank, *, oversampling=None,
                  power_iterations: int = DEFAULT_POWER_ITERATIONS) -> TruncatedSvd:
    """Top-`rank` SVD: randomized when `rank + oversampling ≤ min(m, n) / 4`, else exact."""
    a = tf.convert_to_tensor(a)
    shape = tf.shape(a)
    rank = tf.convert_to_tensor(rank, tf.int32)
    return tf.cond(
        use_randomized(rank, shape[-2], shape[-1], oversampling),
        lambda: randomized_svd(a, rank, oversampling=oversampling,
                               power_iterations=power_iterations),
        lambda: full_truncated_svd(a, rank))


def reconstruct(t: TruncatedSvd) -> tf.Tensor:
    """`U diag(σ) Vᵀ` → `[..., m, n]` (einsum over the kept triplets)."""
    return tf.einsum("...ik,...k,...jk->...ij", t.u, t.s, t.v)
