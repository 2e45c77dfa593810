"""Low-rank approximation (codec/linalg/svd.py) and the truncated SVD (codec/linalg/randomized_svd.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from codec.linalg import svd
from codec.linalg.randomized_svd import randomized_svd, reconstruct, truncated_svd, use_randomized

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _kodak_crop() -> np.ndarray:
    image = np.asarray(Image.open(sorted(KODAK.glob("*.png"))[0]).convert("RGB"))
    return image[None, :256, :320]                                # [1, 256, 320, 3]


def _exact(images: np.ndarray, rank: int):
    x = np.transpose(images.astype(np.float64), (0, 3, 1, 2))
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return x, s, np.einsum("bcik,bck,bckj->bcij", u[..., :rank], s[..., :rank], vt[..., :rank, :])


@pytest.mark.parametrize("source", ["random", "kodak"])
def test_frobenius_identity_and_clipped_uint8_result(source):
    rng = np.random.default_rng(0)
    images = (rng.integers(60, 190, (2, 24, 30, 3)).astype(np.uint8) if source == "random"
              else _kodak_crop())
    for rank in (1, 5, 20):
        x, sigma, exact = _exact(images, rank)
        # ‖A − A_r‖²_F = Σ_{i>r} σ_i² (the optimal error, before rounding).
        np.testing.assert_allclose(((x - exact) ** 2).sum((2, 3)),
                                   (sigma[..., rank:] ** 2).sum(-1), rtol=1e-6, atol=1e-6)
        approx = svd.approximate_rank(images, rank)
        assert approx.reconstruction.dtype == tf.uint8
        assert approx.reconstruction.shape == images.shape
        assert approx.singular_values.shape == images.shape[:1] + (3, rank)
        # Randomized values: the leading ones to 1e-4, the rest slightly low (within 5 %).
        values = approx.singular_values.numpy()
        np.testing.assert_allclose(values[..., 0], sigma[..., 0], rtol=1e-4)
        assert (values <= sigma[..., :rank] * (1 + 1e-4)).all()
        assert (values >= .95 * sigma[..., :rank]).all()
        ours = np.transpose(approx.reconstruction.numpy(), (0, 3, 1, 2)).astype(np.float64)
        reference = np.clip(np.round(exact), 0, 255)
        # Randomized factors: within 1 % of the optimal squared error (+ rounding noise).
        optimal = ((x - reference) ** 2).sum()
        assert ((x - ours) ** 2).sum() <= 1.01 * optimal + x.size / 4
        assert list(approx.ranks.numpy()) == [rank] * images.shape[0]
        assert (approx.stored_size.numpy() == 3 * rank * (x.shape[2] + x.shape[3] + 1)).all()


def test_randomized_matches_the_optimal_error_on_a_real_image():
    x = tf.transpose(tf.constant(_kodak_crop(), tf.float32), [0, 3, 1, 2])
    for rank in (5, 20):
        assert bool(use_randomized(rank, 256, 320))
        t = randomized_svd(x, rank)
        s = tf.linalg.svd(x, compute_uv=False)
        error = tf.reduce_sum((x - reconstruct(t)) ** 2)
        optimal = tf.reduce_sum(s[..., rank:] ** 2)
        assert float(error) <= 1.01 * float(optimal)
        # Orthonormal factors.
        np.testing.assert_allclose(tf.matmul(t.u, t.u, adjoint_a=True).numpy(),
                                   np.broadcast_to(np.eye(rank), t.u.shape[:-2] + (rank, rank)),
                                   atol=1e-4)
    # Large ranks take the exact path.
    assert not bool(use_randomized(100, 256, 320))
    t = truncated_svd(x, 100)
    np.testing.assert_allclose(t.s.numpy(), tf.linalg.svd(x, compute_uv=False)[..., :100].numpy(),
                               rtol=1e-4)


def test_rank_from_factors():
    assert int(svd.rank_from_compression_factor(.5, 28, 28)) == 6         # ⌊.5·784/57⌋
    assert int(svd.rank_from_compression_factor(1., 28, 28)) == 13
    assert int(svd.rank_from_compression_factor(1e-4, 28, 28)) == 1      # at least 1
    # Energy: channel spectra [3,1] and [1,1] → proportions [.75,1] and [.5,1] → mean [.625,1].
    s = tf.constant([[[3., 1.], [1., 1.]]])
    assert int(svd.rank_from_energy_factor(s, .6)[0]) == 1
    assert int(svd.rank_from_energy_factor(s, .7)[0]) == 2
    assert int(svd.rank_from_energy_factor(tf.zeros((1, 2, 4)), .9)[0]) == 1


def test_energy_and_compression_modes_pick_ranks_per_image():
    rng = np.random.default_rng(1)
    flat = np.full((1, 32, 32, 1), 128, np.uint8)                       # rank 1
    noisy = rng.integers(0, 256, (1, 32, 32, 1)).astype(np.uint8)       # full rank
    approx = svd.approximate_energy(np.concatenate([flat, noisy]), .9)
    ranks = approx.ranks.numpy()
    assert ranks[0] == 1 and ranks[1] > 10
    assert approx.singular_values.shape == (2, 1, 32)
    np.testing.assert_array_equal(approx.reconstruction.numpy()[0], flat[0])
    compressed = svd.approximate_compression(noisy, .25)
    assert int(compressed.ranks[0]) == 3                                # ⌊.25·1024/65⌋
    assert int(compressed.stored_size[0]) <= .25 * 32 * 32


@pytest.mark.parametrize("call, message", [
    (lambda x: svd.approximate_rank(x, 0), "rank must be >= 1"),
    (lambda x: svd.approximate_rank(x, 25), r"rank must be <= min"),
    (lambda x: svd.approximate_compression(x, 0.), "compression_factor must be in"),
    (lambda x: svd.approximate_compression(x, 1.5), "compression_factor must be in"),
    (lambda x: svd.approximate_energy(x, -1.), "energy_factor must be in"),
    (lambda x: svd.approximate_energy(x, float("nan")), "energy_factor must be in"),
])
def test_bad_arguments_are_clear_errors(call, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call(np.zeros((1, 24, 30, 1), np.uint8))


def test_non_uint8_or_wrong_rank_input_is_refused():
    with pytest.raises(TypeError, match="uint8"):
        svd.approximate_rank(np.full((1, 8, 8, 1), np.nan, np.float32), 2)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="batch, H, W, C"):
        svd.approximate_rank(np.zeros((8, 8, 1), np.uint8), 2)


def test_exported_codec_carries_the_svd_signatures(tiny_model):
    loaded = tf.saved_model.load(str(tiny_model / "saved_model"))
    images = tf.zeros((2, 40, 50, 3), tf.uint8) + 7
    out = loaded.signatures["svd_approximate"](images=images, rank=tf.constant(3))
    assert out["reconstruction"].shape == (2, 40, 50, 3)
    assert out["singular_values"].shape == (2, 3, 3)
    assert int(tf.reduce_max(tf.abs(tf.cast(out["reconstruction"], tf.int32) - 7))) == 0
    assert list(out["ranks"].numpy()) == [3, 3]
    assert list(out["stored_size"].numpy()) == [3 * 3 * 91] * 2
    out = loaded.signatures["svd_approximate_compression"](
        images=images, compression_factor=tf.constant(.1))
    assert list(out["ranks"].numpy()) == [int(.1 * 40 * 50 / 91)] * 2
    out = loaded.signatures["svd_approximate_energy"](images=images,
                                                      energy_factor=tf.constant(.99))
    assert list(out["ranks"].numpy()) == [1, 1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank must be"):
        loaded.signatures["svd_approximate"](images=images, rank=tf.constant(41))
