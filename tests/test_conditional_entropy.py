"""The conditional (per-element scale and mean) entropy model, codec/entropy/conditional.py:
likelihoods against SciPy, the scale table and its integer CDFs, table indexes, and round trips
with means and escapes through portable rANS v2."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from codec.entropy.conditional import ConditionalEntropyModel, scale_table
from codec.entropy.portable_coder import TableInfo


@pytest.fixture(scope="module")
def model() -> ConditionalEntropyModel:
    m = ConditionalEntropyModel()
    m.build_tables()
    return m


def test_scale_table_is_tfc_s():
    table = scale_table()
    assert len(table) == 64 and np.isclose(table[0], .11) and np.isclose(table[-1], 256.)
    ratios = table[1:] / table[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)        # log-spaced


@pytest.mark.parametrize("distribution,reference", [("gaussian", stats.norm),
                                                    ("logistic", stats.logistic)])
def test_bits_match_scipy(distribution, reference):
    rng = np.random.default_rng(0)
    y = rng.normal(0, 6, 2000).astype(np.float32)
    mean = rng.normal(0, 3, 2000).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(.2), np.log(40), 2000)).astype(np.float32)
    bits = ConditionalEntropyModel(distribution).bits(y, scale, mean).numpy()
    v = np.abs(y.astype(np.float64) - mean)
    p = reference.sf((v - .5) / scale) - reference.sf((v + .5) / scale)
    expected = -np.log2(np.maximum(p, 1e-9))
    np.testing.assert_allclose(bits, expected, rtol=2e-4, atol=2e-3)


def test_bits_are_differentiable_and_bound_the_scale():
    m = ConditionalEntropyModel()
    scale = tf.Variable([.01, 1., 5.])
    y = tf.Variable([.3, -2., 7.])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(m.bits(y, scale, tf.zeros(3)))
    g_y, g_scale = tape.gradient(total, [y, scale])
    assert np.all(np.isfinite(g_y.numpy())) and g_scale.numpy()[0] == 0    # below the bound
    assert g_scale.numpy()[2] < 0       # a far value is cheaper under a wider scale
    np.testing.assert_allclose(m.bits([.3], [.01]).numpy(), m.bits([.3], [.11]).numpy())


def test_tables_sum_to_one_and_cover_the_tails(model):
    info = TableInfo(model.cdf)
    lengths = info.pmf_length.numpy()
    radius = -model._offsets.numpy()
    assert len(lengths) == 64
    np.testing.assert_array_equal(lengths, 2 * radius + 1)
    assert radius[0] == 1 and radius[-1] == int(np.ceil(256 * stats.norm.isf(2 ** -9)))
    # Each table's frequencies (incl. escape) sum to 2^P, every symbol at least 1.
    freq = info.freq.numpy()
    splits = info.splits.numpy()
    for t in (0, 20, 63):
        row = freq[splits[t]:splits[t + 1]]
        assert row.sum() == 4096 and row.min() >= 1
    # The zero-offset symbol of a narrow table is its most probable one.
    narrow = freq[splits[5]:splits[6]]
    assert narrow.argmax() == radius[5]


def test_index_picks_the_smallest_table_scale_at_or_above(model):
    table = model.scales.numpy()
    scales = np.array([.01, .11, .1100001, table[10], table[10] * 1.001, 255., 256., 1e4],
                      np.float32)
    np.testing.assert_array_equal(model.index(scales).numpy(), [0, 0, 1, 10, 11, 63, 63, 63])


@pytest.mark.parametrize("shape", [(1, 5, 7, 16), (2, 24, 24, 32)])   # v2 one lane and 16 lanes
def test_round_trip_with_means_and_escapes(model, shape):
    rng = np.random.default_rng(sum(shape))
    scale = np.exp(rng.uniform(np.log(.05), np.log(300), shape)).astype(np.float32)
    mean = rng.normal(0, 10, shape).astype(np.float32)
    y = (mean + rng.normal(0, 1, shape) * scale).astype(np.float32)
    y.flat[::97] += 5000.                                  # far outside every table: escapes
    indexes = model.index(scale)
    strings = model.compress(y, indexes, mean)
    assert strings.shape == (shape[0],)
    y_hat, ok = model.decompress(strings, indexes, mean)
    assert np.asarray(ok).all()
    expected = np.round(y - mean) + mean
    np.testing.assert_array_equal(y_hat.numpy(), model.quantize(y, mean).numpy())
    np.testing.assert_allclose(y_hat.numpy(), expected, atol=1e-4)
    # Decoded under other indexes (a decoder whose scales differ), it must not pass as valid.
    _, ok = model.decompress(strings, tf.minimum(indexes + 1, 63), mean)
    assert not np.asarray(ok).any()


def test_coded_size_is_close_to_the_information(model):
    rng = np.random.default_rng(7)
    shape = (1, 32, 32, 64)
    scale = np.exp(rng.uniform(np.log(.3), np.log(20), shape)).astype(np.float32)
    y = (rng.normal(0, 1, shape) * scale).astype(np.float32)
    indexes = model.index(scale)
    information = float(tf.reduce_sum(model.bits(model.quantize(y), scale)))
    coded = 8 * len(model.compress(y, indexes).numpy()[0])
    # Tables use the table scale at or above each element's: a little above the information,
    # plus 4 bytes per lane.
    assert information < coded < 1.03 * information + 8 * 4 * 32 + 64


def test_refuses_bad_settings():
    with pytest.raises(ValueError, match="distribution"):
        ConditionalEntropyModel("laplace")
    with pytest.raises(ValueError, match="rising"):
        ConditionalEntropyModel(scales=[1., .5])
    with pytest.raises(ValueError, match="precision"):
        ConditionalEntropyModel(precision=8).build_tables()
    with pytest.raises(RuntimeError, match="build_tables"):
        ConditionalEntropyModel().compress(tf.zeros([1, 4]), tf.zeros([1, 4], tf.int32))
