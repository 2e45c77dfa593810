"""Low-rank image approximation: batched, per channel, with a fast truncated SVD.

Images `[B, H, W, C]` are approximated per channel by a rank-r matrix (Eckart–Young): with the
channel as an `m×n` matrix A (m = H, n = W), `A_r = U_r diag(σ_r) V_rᵀ` is the best rank-r
approximation and `‖A − A_r‖²_F = Σ_{i>r} σ_i²`. Storing A_r takes `r·(m + n + 1)` numbers per
channel instead of `m·n`.

Ways to choose r (the seed recipes):
- `rank` directly, 1 ≤ r ≤ min(m, n);
- a compression factor c ∈ (0, 1]: the largest r whose stored size is ≤ c·m·n,
  `r = ⌊c·m·n / (m + n + 1)⌋` (at least 1, at most min(m, n));
- an energy factor e ∈ (0, 1]: the smallest r whose cumulative singular-value proportion
  `Σ_{i≤r} σ_i / Σ_i σ_i`, averaged over channels, reaches e (per image).
The factors U, V come from `codec.linalg.randomized_svd.truncated_svd` (randomized when r is small next
to min(m, n), else `tf.linalg.svd`). Pixels are approximated on the 0–255 scale; the result is
rounded and clipped to [0, 255].
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from codec.linalg.randomized_svd import TruncatedSvd, reconstruct, truncated_svd


class Approximation(NamedTuple):
    reconstruction: tf.Tensor    # uint8 [B, H, W, C]
    singular_values: tf.Tensor   # float32 [B, C, k]: the top k = max(ranks) values (rank and
    #                              compression modes) or all min(H, W) (energy mode)
    ranks: tf.Tensor             # int32 [B]: rank used per image (same for every channel)
    stored_size: tf.Tensor       # int64 [B]: numbers stored, C · r · (H + W + 1)


def stored_size(rank, m, n) -> tf.Tensor:
    """Numbers needed for a rank-r approximation of an m×n matrix: r·(m + n + 1) (int64)."""
    return tf.cast(rank, tf.int64) * (tf.cast(m, tf.int64) + tf.cast(n, tf.int64) + 1)


def rank_from_compression_factor(factor, m, n) -> tf.Tensor:
    """`⌊c·m·n/(m+n+1)⌋`, clipped to [1, min(m, n)]; c must be in (0, 1] (checked)."""
    factor = tf.convert_to_tensor(factor, tf.float32)
    _check_factor(factor, "compression_factor")
    m64, n64 = tf.cast(m, tf.float64), tf.cast(n, tf.float64)
    rank = tf.floor(tf.cast(factor, tf.float64) * m64 * n64 / (m64 + n64 + 1))
    return tf.cast(tf.clip_by_value(rank, 1, tf.minimum(m64, n64)), tf.int32)


def rank_from_energy_factor(singular_values: tf.Tensor, factor) -> tf.Tensor:
    """Smallest r with mean over channels of `cumsum(σ)/Σσ` ≥ e, per image.

    singular_values: `[B, C, k]` (all of them, descending); returns int32 `[B]` in [1, k].
    """
    factor = tf.convert_to_tensor(factor, tf.float32)
    _check_factor(factor, "energy_factor")
    s = tf.convert_to_tensor(singular_values, tf.float32)
    total = tf.reduce_sum(s, axis=-1, keepdims=True)
    proportion = tf.math.divide_no_nan(tf.cumsum(s, axis=-1), total)   # all-zero channel → 0
    proportion = tf.where(total > 0, proportion, 1.0)                  # …counts as complete
    mean = tf.reduce_mean(proportion, axis=1)                          # [B, k]
    # Float rounding may leave the last proportion a hair below 1: the full rank always counts.
    reached = (mean >= factor - 1e-6) | (tf.range(tf.shape(s)[-1]) == tf.shape(s)[-1] - 1)
    return tf.cast(tf.argmax(tf.cast(reached, tf.int32), axis=-1), tf.int32) + 1


def _check_factor(factor: tf.Tensor, name: str) -> None:
    tf.debugging.assert_rank(factor, 0, message=f"{name} must be a scalar")
    tf.debugging.Assert(tf.reduce_all((factor > 0) & (factor <= 1)),
                        [f"{name} must be in (0, 1], got", factor])


def _channels_first(images: tf.Tensor) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"images must be uint8 [batch, H, W, C], got {images.dtype}")
    tf.debugging.assert_rank(images, 4, message="images must be [batch, H, W, C]")
    return tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])    # [B, C, H, W]


def _reconstruct(x: tf.Tensor, t: TruncatedSvd, ranks: tf.Tensor) -> tf.Tensor:
    """Keeps the first ranks[b] triplets of image b; → uint8 `[B, H, W, C]`."""
    keep = tf.range(tf.shape(t.s)[-1])[None, None, :] < ranks[:, None, None]
    masked = TruncatedSvd(tf.where(keep, t.s, 0.), t.u, t.v)
    y = tf.transpose(reconstruct(masked), [0, 2, 3, 1])
    return tf.saturate_cast(tf.round(y), tf.uint8)


def _approximate_with_ranks(x: tf.Tensor, ranks: tf.Tensor) -> Approximation:
    m, n = tf.shape(x)[2], tf.shape(x)[3]
    t = truncated_svd(x, tf.reduce_max(ranks))
    size = tf.cast(tf.shape(x)[1], tf.int64) * stored_size(ranks, m, n)
    return Approximation(_reconstruct(x, t, ranks), t.s, ranks, size)


def _check_rank(rank: tf.Tensor, m, n) -> tf.Tensor:
    rank = tf.convert_to_tensor(rank, tf.int32)
    tf.debugging.assert_rank(rank, 0, message="rank must be a scalar")
    tf.debugging.Assert(rank >= 1, ["rank must be >= 1, got", rank])
    tf.debugging.Assert(rank <= tf.minimum(m, n),
                        ["rank must be <= min(height, width) =", tf.minimum(m, n), "got", rank])
    return rank


def approximate_rank(images: tf.Tensor, rank) -> Approximation:
    """uint8 `[B, H, W, C]` at a fixed rank (checked: 1 ≤ rank ≤ min(H, W))."""
    x = _channels_first(images)
    rank = _check_rank(rank, tf.shape(x)[2], tf.shape(x)[3])
    return _approximate_with_ranks(x, tf.fill(tf.shape(x)[:1], rank))


def approximate_compression(images: tf.Tensor, compression_factor) -> Approximation:
    """uint8 `[B, H, W, C]` at the largest rank whose stored size ≤ c · H · W per channel."""
    x = _channels_first(images)
    rank = rank_from_compression_factor(compression_factor, tf.shape(x)[2], tf.shape(x)[3])
    return _approximate_with_ranks(x, tf.fill(tf.shape(x)[:1], rank))


def approximate_energy(images: tf.Tensor, energy_factor) -> Approximation:
    """uint8 `[B, H, W, C]` at the smallest rank (per image) reaching the energy factor.
    Needs every singular value (values only: cheaper than a full decomposition)."""
    x = _channels_first(images)
    spectrum = tf.linalg.svd(x, compute_uv=False)                      # [B, C, min(H, W)]
    ranks = rank_from_energy_factor(spectrum, energy_factor)
    approx = _approximate_with_ranks(x, ranks)
    return approx._replace(singular_values=spectrum)


def low_rank_approximation(images: tf.Tensor, rank) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 reconstruction, top-`rank` singular values `[B, C, rank]`) — `approximate_rank`."""
    approx = approximate_rank(images, rank)
    return approx.reconstruction, approx.singular_values


_ANY_IMAGES = tf.TensorSpec((None, None, None, None), tf.uint8, name="images")


def svd_signatures() -> dict:
    """The three exported SVD signatures every codec SavedModel carries (attach them to the
    tf.Module being saved and pass them in `signatures=`): by rank, compression or energy factor,
    each returning the `Approximation` fields."""
    return {
        "svd_approximate": tf.function(
            lambda images, rank: approximate_rank(images, rank)._asdict(),
            input_signature=[_ANY_IMAGES, tf.TensorSpec((), tf.int32, name="rank")]),
        "svd_approximate_compression": tf.function(
            lambda images, compression_factor: approximate_compression(
                images, compression_factor)._asdict(),
            input_signature=[_ANY_IMAGES,
                             tf.TensorSpec((), tf.float32, name="compression_factor")]),
        "svd_approximate_energy": tf.function(
            lambda images, energy_factor: approximate_energy(images, energy_factor)._asdict(),
            input_signature=[_ANY_IMAGES, tf.TensorSpec((), tf.float32, name="energy_factor")]),
    }
