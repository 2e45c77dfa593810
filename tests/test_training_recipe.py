"""The Ballé 2017 training recipe: GDN as a 1×1 convolution, TFC's conv layer (RDFT kernels,
fan-in init), checkpoint compatibility, the prior's numerics and optimizer, crop sampling, and
training under a tf.distribute strategy."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer, crop_seed
from codec.data.crops import crop_stream
from codec.entropy.deep_factorized import DeepFactorizedParameters
from codec.layers.gdn import GDN, _store
from codec.layers.ops import lower_bound
from codec.layers.signal_conv import SignalConv2D, kernel_to_rdft, rdft_to_kernel

ROOT = Path(__file__).resolve().parent.parent


def _gdn_with_random_parameters(inverse: bool, channels: int) -> GDN:
    rng = np.random.default_rng(0)
    layer = GDN(inverse=inverse)
    layer.build((None, channels))
    layer._beta.assign(_store(rng.uniform(.5, 2., channels)))
    layer._gamma.assign(_store(rng.uniform(0, .3, (channels, channels))))
    return layer


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 6, 5, 8), (3, 8)])
def test_gdn_conv_form_matches_the_old_matvec_form_with_gradients(inverse, shape):
    layer = _gdn_with_random_parameters(inverse, shape[-1])
    x = tf.constant(np.random.default_rng(1).normal(size=shape).astype(np.float32))

    def old_form(x):   # rdpipe ≤ 0.x: broadcast batched matvec
        norm = layer.beta + tf.linalg.matvec(layer.gamma, tf.square(x))
        return x * tf.sqrt(norm) if inverse else x * tf.math.rsqrt(norm)

    results = []
    for fn in (old_form, layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.sin(y))
        results.append([y] + tape.gradient(loss, [x, layer._beta, layer._gamma]))
    for old, new in zip(*results):
        np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-5, atol=1e-6)


def test_gdn_variables_are_unchanged_so_checkpoints_still_load(tmp_path):
    """The variables (names, shapes) are those of earlier releases: a checkpoint written by
    one GDN restores into another."""
    source = _gdn_with_random_parameters(False, 4)
    assert sorted(v.name for v in source.weights) == ["reparam_beta:0", "reparam_gamma:0"]
    path = tf.train.Checkpoint(layer=source).write(str(tmp_path / "ckpt"))
    target = GDN()
    target.build((None, 4))
    tf.train.Checkpoint(layer=target).read(path).assert_consumed()
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), rtol=1e-6)


def test_rdft_parameterization_round_trips_the_kernel():
    kernel = tf.random.normal((5, 5, 3, 4), seed=1)
    real, imag = kernel_to_rdft(kernel)
    assert real.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(rdft_to_kernel(real, imag, (5, 5)).numpy(), kernel.numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("transpose", [False, True])
def test_rdft_and_plain_layers_compute_the_same_convolution(transpose):
    x = tf.random.normal((2, 8, 8, 3), seed=2)
    rdft = SignalConv2D(4, 5, 2, transpose=transpose)
    plain = SignalConv2D(4, 5, 2, transpose=transpose, parameterization="plain")
    rdft.build(x.shape)
    plain.build(x.shape)
    kernel = rdft.kernel
    plain._kernel.assign(tf.transpose(kernel, (0, 1, 3, 2)) if transpose else kernel)
    expected = (2, 16, 16, 4) if transpose else (2, 4, 4, 4)
    assert rdft(x).shape == expected
    np.testing.assert_allclose(rdft(x).numpy(), plain(x).numpy(), atol=1e-4)


@pytest.mark.parametrize("transpose", [False, True])
def test_kernel_init_is_fan_in_variance_scaling_like_tfc(transpose):
    """The first analysis layer (9×9, 3 → 128): TFC's init is ≈ 4.7× Keras' Glorot."""
    layer = SignalConv2D(128, 9, 4, transpose=transpose)
    layer.build((None, None, None, 3))
    fan_in = 9 * 9 * 3                        # TFC counts h·w·in for both directions
    std = float(tf.math.reduce_std(layer.kernel))
    assert std == pytest.approx(fan_in ** -.5, rel=.1)
    glorot = SignalConv2D(128, 9, 4, transpose=transpose, kernel_init="glorot_uniform")
    glorot.build((None, None, None, 3))
    assert std / float(tf.math.reduce_std(glorot.kernel)) == pytest.approx(4.7, rel=.1)


@pytest.mark.parametrize("transpose", [False, True])
def test_plain_layer_restores_a_checkpoint_of_the_keras_layer_it_replaced(tmp_path, transpose):
    """Models trained before SignalConv2D existed used Keras' Conv2D / Conv2DTranspose; with
    parameterization="plain" their checkpoints restore and compute the same outputs."""
    keras_layer = (keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D)(
        4, 5, strides=2, padding="same")
    x = tf.random.normal((1, 8, 8, 3), seed=3)
    keras_layer(x)
    keras_layer.bias.assign(tf.random.normal((4,), seed=4))
    path = tf.train.Checkpoint(layer=keras_layer).write(str(tmp_path / "ckpt"))
    ours = SignalConv2D(4, 5, 2, transpose=transpose, parameterization="plain")
    ours.build(x.shape)
    tf.train.Checkpoint(layer=ours).read(path).assert_consumed()
    np.testing.assert_allclose(ours(x).numpy(), keras_layer(x).numpy(), atol=1e-5)


def _symmetric_prior(legacy: bool) -> DeepFactorizedParameters:
    """All biases 0: the CDF logits are odd in x, so f(−½) + f(½) = 0 exactly at y = 0."""
    params = DeepFactorizedParameters(2, legacy_numerics=legacy)
    for bias in params.biases:
        bias.assign(tf.zeros_like(bias))
    return params


def test_likelihood_at_the_median_bin_is_exact_not_zero():
    y = tf.zeros((1, 2))
    new = float(tf.reduce_max(_symmetric_prior(False).prior().prob(y)))
    old = float(tf.reduce_max(_symmetric_prior(True).prior().prob(y)))
    assert old == pytest.approx(1e-9, rel=1e-3)      # sign(0) = 0: likelihood 0, floored
    assert new > .01


def test_likelihood_lower_bound_passes_gradients_that_raise_it():
    x = tf.constant([1e-12, .5])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        bits = -tf.math.log(lower_bound(x, 1e-9))     # descent raises x: passes
        negated = tf.math.log(lower_bound(x, 1e-9))   # descent lowers x below: blocked
    assert float(tape.gradient(bits, x)[0]) < 0
    assert float(tape.gradient(negated, x)[0]) == 0
    assert float(lower_bound(x, 1e-9)[0]) == pytest.approx(1e-9)


def test_every_variable_is_trained_and_the_prior_has_its_own_optimizer():
    trainer = build_image_trainer(ImageTrainConfig(filters=8, prior_lr_multiplier=10.))
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), tf.uint8)
    before = [v.numpy().copy() for v in trainer.trainable_variables]
    out = trainer.optimize(images)
    assert np.isfinite(float(out["loss"]))
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before,
                                                                trainer.trainable_variables)]
    assert all(changed), [v.name for v, c in zip(trainer.trainable_variables, changed) if not c]
    assert int(trainer.prior_optimizer.iterations) == 1
    assert int(trainer.optimizer.iterations) == 1
    assert float(trainer.prior_optimizer.learning_rate) == pytest.approx(
        10 * float(trainer.optimizer.learning_rate))


def test_area_weighted_crops_follow_pixel_counts_and_flip():
    small = np.zeros((16, 16, 1), np.uint8)                      # 256 pixels
    large = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] + 1, (64, 1, 1))  # 4,096
    crops = list(itertools.islice(crop_stream([small, large], 16, 0, sampling="area"), 3400))
    share_small = np.mean([c.max() == 0 for c in crops])
    assert share_small == pytest.approx(256 / (256 + 4096), abs=.02)
    per_file = list(itertools.islice(
        crop_stream([small, large], 16, 0, sampling="per_file"), 2000))
    assert np.mean([c.max() == 0 for c in per_file]) == pytest.approx(.5, abs=.05)
    rows = {bool(c[0, 0, 0] > c[0, -1, 0]) for c in crops if c.max()}
    assert rows == {True, False}                                 # horizontal flips happen
    no_flips = itertools.islice(crop_stream([large], 16, 0, flips=False), 200)
    assert all(c[0, 0, 0] < c[0, -1, 0] for c in no_flips)


def test_crop_stream_is_reproducible_and_fine_tunes_draw_fresh_crops():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    first = list(itertools.islice(crop_stream([image], 16, 7), 5))
    again = list(itertools.islice(crop_stream([image], 16, 7), 5))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    anchor = ImageTrainConfig(lmbda=.01)
    tune = ImageTrainConfig(lmbda=.004, init_from="models/anchor")
    other = ImageTrainConfig(lmbda=.03, init_from="models/anchor")
    seeds = {crop_seed(anchor), crop_seed(tune), crop_seed(other)}
    assert len(seeds) == 3
    assert crop_seed(anchor) == crop_seed(ImageTrainConfig(lmbda=.01))   # resumes: same stream


def test_training_runs_under_a_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Two logical CPU devices (configured before TF starts: a subprocess) stand in for two
    GPUs: the trainer builds under the strategy scope and fits with gradients summed."""
    script = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    trainer = build_image_trainer(ImageTrainConfig(filters=8, batch_size=4))
images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
history = trainer.fit(tf.data.Dataset.from_tensor_slices(images).batch(4), epochs=1, verbose=0)
print(json.dumps({{"replicas": strategy.num_replicas_in_sync,
                   "loss": history.history["loss"][-1],
                   "mirrored": type(trainer.trainable_variables[0]).__name__}}))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert np.isfinite(result["loss"])
    assert "Mirrored" in result["mirrored"]


def test_mixed_bfloat16_trains_in_bfloat16_and_exports_a_working_codec():
    from codec.models.bls2017 import ImageCodec
    from codec.models.bls2017_train import inference_twin
    config = ImageTrainConfig(filters=8, precision_policy="mixed_bfloat16")
    trainer = build_image_trainer(config)
    assert keras.mixed_precision.global_policy().name == "float32"   # restored
    assert trainer.analysis_transform.layers[0].compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in trainer.trainable_variables)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)), tf.uint8)
    losses = [float(trainer.optimize(images)["loss"]) for _ in range(3)]
    assert np.all(np.isfinite(losses))
    codec = ImageCodec(inference_twin(trainer, config))      # what the export ships
    assert codec.analysis_transform.layers[0].compute_dtype == "float32"
    crop = images[:1, :17, :20].numpy()
    decoded = codec.decompress(codec.compress(crop)["strings"])["images"]
    assert decoded.shape == (1, 17, 20, 3)
    # The float32 export decodes exactly to the float32 synthesis of its quantized latents.
    from reference_paths import bls2017_reference_decode
    np.testing.assert_array_equal(decoded.numpy(), bls2017_reference_decode(codec, crop))


def test_auto_precision_picks_bfloat16_only_where_amx_makes_it_faster(monkeypatch):
    from codec import training
    monkeypatch.setattr(training, "cpu_has_amx", lambda: False)
    assert ImageTrainConfig(filters=8, precision_policy="auto").precision_policy == "float32"
    monkeypatch.setattr(training, "cpu_has_amx", lambda: True)
    assert ImageTrainConfig(filters=8, precision_policy="auto").precision_policy == \
        "mixed_bfloat16"
    assert ImageTrainConfig(filters=8, precision_policy="").precision_policy == ""
    with pytest.raises(ValueError, match="precision_policy"):
        ImageTrainConfig(filters=8, precision_policy="float16")


@pytest.mark.parametrize("parameterization", ["rdft", "plain"])
def test_float16_weights_store_half_precision_and_compute_in_float32(parameterization):
    from codec.layers.signal_conv import read_weight
    x = tf.random.stateless_normal((2, 12, 12, 4), (1, 2))
    full = SignalConv2D(6, 5, 2, parameterization=parameterization)
    half = SignalConv2D(6, 5, 2, parameterization=parameterization, weights_dtype="float16")
    full.build(x.shape), half.build(x.shape)
    for target, source in zip(half.weights, full.weights):
        target.assign(tf.cast(source + .01, tf.float16))
        source.assign(source + .01)
    assert {w.dtype for w in half.weights} == {tf.float16}
    assert all(read_weight(w).dtype == tf.float32 for w in half.weights)
    out_half, out_full = half(x), full(x)
    assert out_half.dtype == tf.float32
    # Rounded weights, float32 arithmetic: close to the float32 layer, not equal.
    np.testing.assert_allclose(out_half, out_full, rtol=0, atol=5e-3)
    assert np.abs(out_half - out_full).max() > 0
    gdn = GDN(inverse=True, weights_dtype="float16")
    gdn.build(x.shape)
    assert gdn._gamma.dtype == tf.float16 and gdn.gamma.dtype == tf.float32
    with pytest.raises(ValueError, match="weights_dtype"):
        SignalConv2D(6, 5, weights_dtype="bfloat16")


def test_float16_export_is_smaller_decodes_near_the_float32_one_and_reexports(tmp_path):
    from codec.models.bls2017_train import export_image_codec, reexport_saved_image_codec
    config = ImageTrainConfig(filters=32)
    trainer = build_image_trainer(config)
    full = export_image_codec(trainer, tmp_path / "f32", config)
    half = export_image_codec(trainer, tmp_path / "f16", config, weights_dtype="float16")
    size = lambda d: sum(f.stat().st_size for f in (tmp_path / d / "variables").rglob("*"))  # noqa: E731
    assert size("f16") < .6 * size("f32")
    image = np.random.default_rng(1).integers(0, 256, (1, 40, 56, 3)).astype(np.uint8)
    strings = full.compress(image)["strings"]
    a = full.decompress(strings)["images"].numpy().astype(int)
    b = half.decompress(strings)["images"].numpy().astype(int)
    assert np.abs(a - b).max() <= 2        # the same tables decode the float32 export's string
    loaded = tf.saved_model.load(str(tmp_path / "f16"))
    np.testing.assert_array_equal(loaded.signatures["decompress"](strings=strings)["images"], b)
    again = reexport_saved_image_codec(tmp_path / "f16", tmp_path / "again", filters=32)
    assert size("again") == size("f16")     # still float16, weights unchanged
    np.testing.assert_array_equal(again.compress(image)["strings"],
                                  half.compress(image)["strings"])


def test_ms_ssim_distortion_trains_on_bpp_plus_lambda_one_minus_ms_ssim():
    """Issue 22 req 5: loss = bpp + λ·(1 − MS-SSIM) for both trainer families."""
    with pytest.raises(ValueError, match="patch_size ≥ 176"):
        ImageTrainConfig(filters=8, distortion="ms-ssim")
    with pytest.raises(ValueError, match="distortion"):
        ImageTrainConfig(filters=8, distortion="l1")
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 192, 192, 3)), tf.uint8)
    for architecture in ("factorized", "hyperprior"):
        config = ImageTrainConfig(filters=8, lmbda=8.73, distortion="ms-ssim", patch_size=192,
                                  architecture=architecture)
        trainer = build_image_trainer(config)
        out = trainer(images, training=False)
        expected = out["bpp"] + 8.73 * (1 - out["ms_ssim"])
        np.testing.assert_allclose(out["loss"], expected, rtol=1e-5)
        assert 0 < float(out["ms_ssim"]) < 1
        before = [v.numpy().copy() for v in trainer.trainable_variables]
        step = trainer.optimize(images)
        assert np.isfinite(float(step["loss"]))
        assert any(np.abs(a - v.numpy()).max() > 0
                   for a, v in zip(before, trainer.trainable_variables))
    mse = build_image_trainer(ImageTrainConfig(filters=8, lmbda=.01))(images)
    np.testing.assert_allclose(mse["loss"], mse["bpp"] + .01 * mse["mse"], rtol=1e-5)
