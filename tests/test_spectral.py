"""Spectral tools (codec/layers/spectral.py) and gradients through eigh / svd."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from codec.layers.spectral import (PixelNorm, SpectralNormalization, SpectralNormConstraint,
                            fit_spectrum, power_iteration)


def test_power_iteration_matches_the_largest_singular_value():
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(40, 25)), tf.float32)
    exact = float(tf.linalg.svd(w, compute_uv=False)[0])
    u = tf.constant(rng.normal(size=40), tf.float32)
    sigma, _ = power_iteration(w, u, iterations=50)
    assert abs(float(sigma) - exact) <= 1e-3 * exact
    # Persistent u: repeated single iterations converge like many at once.
    for _ in range(50):
        sigma, u = power_iteration(w, u, iterations=1)
    assert abs(float(sigma) - exact) <= 1e-3 * exact


def test_wrapper_normalizes_the_kernel_and_persists_u():
    layer = SpectralNormalization(keras.layers.Dense(16), iterations=3)
    x = tf.random.stateless_normal((8, 32), (1, 2))
    layer(x, training=True)
    u_before = layer.u.numpy().copy()
    for _ in range(30):
        layer(x, training=True)
    assert not np.allclose(u_before, layer.u.numpy())
    kernel = layer.layer.kernel
    expected = x @ (kernel / tf.linalg.svd(kernel, compute_uv=False)[0]) + layer.layer.bias
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected.numpy(), rtol=1e-3,
                               atol=1e-4)
    # Gradients reach the original kernel through the normalization.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) ** 2)
    assert tape.gradient(loss, layer.layer.kernel) is not None


def test_constraint_caps_sigma_during_training_on_a_conv_kernel():
    constraint = SpectralNormConstraint(iterations=2, strict=True)
    model = keras.Sequential([keras.layers.Conv2D(4, 3, kernel_constraint=constraint,
                                                  input_shape=(8, 8, 2))])
    model.compile(keras.optimizers.Adam(.1), "mse")
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 2)).astype(np.float32)
    model.fit(x, 10 * np.ones((16, 6, 6, 4), np.float32), epochs=20, verbose=0)
    kernel = model.layers[0].kernel
    sigma = float(tf.linalg.svd(tf.reshape(kernel, [-1, 4]), compute_uv=False)[0])
    assert abs(sigma - 1.0) < 0.05, sigma


def _constrained_model(constraint):
    model = keras.Sequential([keras.layers.Dense(16, kernel_constraint=constraint,
                                                 input_shape=(24,))])
    model.compile(keras.optimizers.SGD(.05), "mse")
    return model


def test_constraint_normalizes_by_sigma_by_default_and_clip_is_named():
    small = np.full((24, 16), .25 / np.sqrt(24 * 16), np.float32)   # σ = 0.25
    for mode, expected in (("strict", 1.0), ("clip", .25)):
        constraint = SpectralNormConstraint(iterations=20, **({} if mode == "strict"
                                                              else {"mode": mode}))
        out = constraint(tf.constant(small))
        assert float(tf.linalg.svd(out, compute_uv=False)[0]) == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="mode"):
        SpectralNormConstraint(mode="loose")


def test_constraint_vector_u_persists_in_checkpoints(tmp_path):
    """Train (u converges), checkpoint, restore into a fresh model: one more step leaves the
    kernel at σ within 1 % of 1. A fresh u would give ≈ 1.1 after one iteration."""
    keras.utils.set_random_seed(0)     # same initial kernel in any process and test order
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 24)).astype(np.float32), rng.normal(size=(64, 16)).astype(
        np.float32)
    trained = _constrained_model(SpectralNormConstraint())
    # 400 steps: u converges to the top singular vector (one power iteration per step).
    trained.fit(x, y, epochs=50, batch_size=8, verbose=0)
    tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt"))
    assert any("spectral_norm_u" in name or "kernel_constraint" in name
               for name, _ in tf.train.list_variables(str(tmp_path / "ckpt")))

    def sigma_after_one_step(model) -> float:
        model.fit(x, y, epochs=1, batch_size=64, verbose=0)
        return float(tf.linalg.svd(model.layers[0].kernel, compute_uv=False)[0])

    restored = _constrained_model(SpectralNormConstraint(seed=7))
    restored.layers[0].kernel_constraint.build(restored.layers[0].kernel)
    tf.train.Checkpoint(model=restored).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    np.testing.assert_allclose(restored.layers[0].kernel_constraint.u.numpy(),
                               trained.layers[0].kernel_constraint.u.numpy())
    assert sigma_after_one_step(restored) == pytest.approx(1.0, rel=.01)
    fresh = _constrained_model(SpectralNormConstraint(seed=7))
    fresh.layers[0].kernel.assign(trained.layers[0].kernel)
    assert abs(sigma_after_one_step(fresh) - 1.0) > .01      # what persisting u prevents


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = tf.random.stateless_normal((2, 5, 5, 7), (3, 4)) * 9.
    y = PixelNorm()(x)
    np.testing.assert_allclose(tf.reduce_mean(y ** 2, -1).numpy(), 1., rtol=1e-4)


def _finite_difference(f, a: np.ndarray, direction: np.ndarray, h: float = 1e-6) -> float:
    return (f(a + h * direction) - f(a - h * direction)) / (2 * h)


@pytest.mark.parametrize("kind", ["eigh", "svd"])
def test_spectral_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 6))
    if kind == "eigh":
        a = (a + a.T) / 2
        weights = np.arange(1., 7.)
        def f(m): return float(np.dot(np.linalg.eigvalsh((m + m.T) / 2), weights))
        def tf_f(m): return tf.tensordot(tf.linalg.eigh((m + tf.transpose(m)) / 2)[0], weights, 1)
    else:
        weights = np.arange(1., 7.)
        def f(m): return float(np.dot(np.linalg.svd(m, compute_uv=False), weights))
        def tf_f(m): return tf.tensordot(tf.linalg.svd(m, compute_uv=False), weights, 1)
    variable = tf.Variable(a, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = tf_f(variable)
    gradient = tape.gradient(value, variable).numpy()
    for _ in range(5):
        direction = rng.normal(size=a.shape)
        if kind == "eigh":
            direction = (direction + direction.T) / 2
        assert abs(_finite_difference(f, a, direction) - (gradient * direction).sum()) < 1e-5


@pytest.mark.parametrize("method", ["tape", "minimize"])
def test_fit_spectrum_converges_to_the_target(method):
    target = [-2., .5, 1., 3.]
    fit = fit_spectrum(target, method=method, tolerance=1e-8)
    np.testing.assert_allclose(fit.eigenvalues, sorted(target), atol=1e-3)
    np.testing.assert_allclose(fit.matrix, fit.matrix.T)
    assert fit.loss <= 1e-8


@pytest.mark.parametrize("bad", [[], [np.nan, 1.], [[1., 2.]]])
def test_fit_spectrum_rejects_bad_targets(bad):
    with pytest.raises(ValueError, match="target_eigenvalues"):
        fit_spectrum(bad)


def test_bad_iteration_counts_are_refused():
    with pytest.raises(ValueError, match="iterations"):
        SpectralNormConstraint(iterations=0)
    with pytest.raises(ValueError, match="iterations"):
        SpectralNormalization(keras.layers.Dense(2), iterations=0)


@pytest.mark.parametrize("normalization", ["spectral", "pixel"])
def test_codec_transforms_take_the_normalization_and_export(normalization, tmp_path, tfds_dir):
    from codec.models.mnist_train import MnistTrainConfig, train_mnist
    from codec.saved_codec import SavedCodec
    from codec.data.datasets import mnist_arrays
    config = MnistTrainConfig(lmbda=500., epochs=1, train_split="train[:256]",
                              validation_split="test[:64]", verbose=0, data_dir=tfds_dir,
                              normalization=normalization)
    summary = train_mnist(config, tmp_path)
    assert np.isfinite(summary["history"]["loss"]).all()
    codec = SavedCodec(tmp_path)
    digits, _ = mnist_arrays("test[:8]", data_dir=tfds_dir)
    strings, _ = codec.compress(digits)
    assert codec.decompress(strings).shape == digits.shape
    from codec.models.mnist import make_synthesis_transform
    layers = [type(layer).__name__ for layer in make_synthesis_transform(normalization).layers]
    assert ("SpectralNormalization" if normalization == "spectral" else "PixelNorm") in layers


def test_unknown_normalization_is_refused():
    from codec.models.mnist import make_analysis_transform
    with pytest.raises(ValueError, match="normalization must be one of"):
        make_analysis_transform(normalization="batch")
