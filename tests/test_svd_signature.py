"""The plain-SVD serving signature: Eckart–Young error identity, rank checks, SavedModel export."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from codec.svd import low_rank_approximation


def test_low_rank_error_matches_the_discarded_singular_values():
    rng = np.random.default_rng(0)
    images = rng.integers(60, 190, (2, 24, 30, 3)).astype(np.uint8)  # no clipping at 0/255
    for rank in (1, 5, 24):
        recon, s = low_rank_approximation(images, rank)
        assert recon.shape == images.shape and recon.dtype == tf.uint8 and s.shape == (2, 3, 24)
        x = np.transpose(images.astype(np.float64), (0, 3, 1, 2))
        u, sigma, vt = np.linalg.svd(x, full_matrices=False)
        exact = np.einsum("bcik,bck,bckj->bcij", u[..., :rank], sigma[..., :rank],
                          vt[..., :rank, :])
        np.testing.assert_allclose(s.numpy(), sigma, rtol=1e-4)
        # ‖A − A_r‖²_F = Σ_{i>r} σ_i² (before rounding to uint8).
        np.testing.assert_allclose(((x - exact) ** 2).sum((2, 3)),
                                   (sigma[..., rank:] ** 2).sum(-1), rtol=1e-6, atol=1e-6)
        err = np.abs(np.transpose(recon.numpy(), (0, 3, 1, 2)) - np.clip(np.round(exact), 0, 255))
        assert err.max() <= 1
    full, _ = low_rank_approximation(images, 24)
    assert np.abs(full.numpy().astype(int) - images).max() <= 1


@pytest.mark.parametrize("rank", [0, -2, 25])
def test_rank_outside_range_is_a_clear_error(rank):
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank must be"):
        low_rank_approximation(np.zeros((1, 24, 30, 1), np.uint8), rank)


def test_exported_codec_carries_the_svd_signature(tiny_model):
    import tensorflow_compression_ops  # noqa: F401  (registers the coder ops for loading)
    loaded = tf.saved_model.load(str(tiny_model / "saved_model"))
    out = loaded.signatures["svd_approximate"](
        images=tf.zeros((2, 40, 50, 3), tf.uint8) + 7, rank=tf.constant(3))
    assert out["reconstruction"].shape == (2, 40, 50, 3)
    assert out["singular_values"].shape == (2, 3, 40)
    assert int(tf.reduce_max(tf.abs(tf.cast(out["reconstruction"], tf.int32) - 7))) == 0
