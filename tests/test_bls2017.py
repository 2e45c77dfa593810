"""Ballé 2017 building blocks: GDN/IGDN numerics, the deep factorized prior, and the image codec
round trip on odd image sizes (untrained tiny model: the mechanics, not the quality)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from codec.entropy.deep_factorized import DeepFactorizedParameters
from codec.layers.gdn import GDN, _store
from codec.models.bls2017 import BLS2017Trainer, ImageCodec
from reference_paths import bls2017_reference_decode


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_the_formula(inverse):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4, 6)).astype(np.float32)
    layer = GDN(inverse=inverse)
    layer.build(x.shape)
    beta = rng.uniform(.5, 2., 6)
    gamma = rng.uniform(0, .3, (6, 6))
    layer._beta.assign(_store(beta))
    layer._gamma.assign(_store(gamma))
    norm = beta + np.einsum("ij,...j->...i", gamma, x.astype(np.float64) ** 2)
    expected = x * np.sqrt(norm) if inverse else x / np.sqrt(norm)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gdn_parameters_stay_non_negative_and_get_gradients():
    layer = GDN()
    layer.build((None, 3))
    layer._gamma.assign(tf.fill((3, 3), -5.))      # stored value far below the bound
    assert float(tf.reduce_min(layer.gamma)) >= 0
    assert float(tf.reduce_min(layer.beta)) >= 1e-6 - 1e-12
    x = tf.ones((2, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))        # descent wants γ larger: back into the domain
    grad = tape.gradient(loss, layer._gamma)
    assert float(tf.reduce_max(tf.abs(grad))) > 0
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(layer(x))       # descent wants γ < 0: blocked at the bound
    assert float(tf.reduce_max(tf.abs(tape.gradient(loss, layer._gamma)))) == 0


def test_deep_factorized_prior_is_a_normalized_bin_mass_with_located_tails():
    params = DeepFactorizedParameters(4)
    prior = params.prior()
    grid = tf.constant(np.arange(-300, 301, dtype=np.float32)[:, None] * np.ones((1, 4)),
                       tf.float32)
    mass = tf.reduce_sum(prior.prob(grid), axis=0).numpy()
    np.testing.assert_allclose(mass, 1., atol=1e-3)
    low, high = prior.lower_tail(2 ** -8), prior.upper_tail(2 ** -8)
    cdf_low = tf.sigmoid(prior.logits_cumulative(low[None]))[0].numpy()
    np.testing.assert_allclose(cdf_low, 2 ** -9, rtol=1e-3)
    assert (high.numpy() > low.numpy()).all()


@pytest.fixture(scope="module")
def tiny_codec():
    trainer = BLS2017Trainer(lmbda=.01, filters=8)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    patches = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(patches).batch(2), epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return ImageCodec(trainer)


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (48, 64), (5, 200)])
def test_any_image_size_round_trips_exactly(tiny_codec, shape):
    """Strings decode to exactly the synthesis of the quantized latents (no coding), at any
    size; re-coding the reconstruction is deterministic too."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2,) + shape + (3,)).astype(np.uint8)
    out = tiny_codec.compress(images)
    strings = out["strings"]
    assert strings.shape == (2,) and out["bits_per_pixel"].shape == (2,)
    decoded = tiny_codec.decompress(strings)["images"]
    assert decoded.shape == images.shape and decoded.dtype == tf.uint8
    np.testing.assert_array_equal(decoded.numpy(), bls2017_reference_decode(tiny_codec, images))
    np.testing.assert_array_equal(tiny_codec.compress(images)["strings"].numpy(),
                                  strings.numpy())
    again = tiny_codec.decompress(tiny_codec.compress(decoded.numpy())["strings"])["images"]
    np.testing.assert_array_equal(again.numpy(),
                                  bls2017_reference_decode(tiny_codec, decoded.numpy()))


def test_the_saved_model_equals_the_in_process_codec(tiny_codec, tmp_path):
    """What the Pusher ships (a SavedModel, loaded as a server does) writes the same bytes and
    decodes them to the same pixels as the codec object it was exported from."""
    from codec.saved_codec import SavedCodec
    tf.saved_model.save(tiny_codec, str(tmp_path / "m"), signatures=tiny_codec.signatures())
    loaded = SavedCodec(tmp_path / "m")
    images = np.random.default_rng(3).integers(0, 256, (2, 40, 56, 3)).astype(np.uint8)
    strings, bits = loaded.compress(images)
    assert strings == list(tiny_codec.compress(images)["strings"].numpy())
    np.testing.assert_array_equal(loaded.decompress(strings),
                                  tiny_codec.decompress(strings)["images"].numpy())


def test_corrupt_or_mixed_size_strings_are_refused(tiny_codec):
    images = np.zeros((1, 20, 20, 3), np.uint8)
    good = tiny_codec.compress(images)["strings"].numpy()[0]
    other = tiny_codec.compress(np.zeros((1, 40, 20, 3), np.uint8))["strings"].numpy()[0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="share an image size"):
        tiny_codec.decompress(tf.constant([good, other]))
    rng = np.random.default_rng(2)
    garbage = [b"", good[:1], good[:3]] + [rng.bytes(int(n)) for n in rng.integers(1, 30, 50)]
    for string in garbage:
        out = tiny_codec.decompress_unchecked(tf.constant([string]))
        if not bool(out["sanity_ok"].numpy()[0]):
            with pytest.raises(tf.errors.InvalidArgumentError):
                tiny_codec.decompress(tf.constant([string]))


def test_pixel_limit_is_a_clear_error_and_headers_beyond_it_are_refused(tiny_codec):
    """Images above MAX_PIXELS fail before any transform runs; a header claiming a larger image
    (which would make the decoder allocate gigabytes) is refused without decoding."""
    from codec.entropy.framing import MAX_PIXELS
    too_big = np.zeros((1, 4097, 4096, 3), np.uint8)
    assert too_big.shape[1] * too_big.shape[2] > MAX_PIXELS
    with pytest.raises(tf.errors.InvalidArgumentError, match="split them into tiles"):
        tiny_codec.compress(too_big)
    good = tiny_codec.compress(np.zeros((1, 20, 20, 3), np.uint8))["strings"].numpy()[0]
    # format byte, varint(4097) = 0x81 0x20, varint(4096) = 0x80 0x20, then the payload.
    hostile = good[:1] + bytes([0x81, 0x20, 0x80, 0x20]) + good[3:]
    out = tiny_codec.decompress_unchecked(tf.constant([hostile]))
    assert not bool(out["sanity_ok"].numpy()[0]) and out["images"].shape[1:3] == (1, 1)


def test_export_reload_round_trip(tiny_codec, tmp_path):
    tf.saved_model.save(tiny_codec, str(tmp_path), signatures=tiny_codec.signatures())
    loaded = tf.saved_model.load(str(tmp_path))
    assert {"svd_approximate", "svd_approximate_compression",
            "svd_approximate_energy"} <= set(loaded.signatures)
    images = np.random.default_rng(3).integers(0, 256, (1, 23, 31, 3)).astype(np.uint8)
    strings = loaded.signatures["compress"](images=tf.constant(images))["strings"]
    np.testing.assert_array_equal(strings.numpy(), tiny_codec.compress(images)["strings"].numpy())
    decoded = loaded.signatures["decompress"](strings=strings)["images"]
    np.testing.assert_array_equal(decoded.numpy(),
                                  tiny_codec.decompress(strings)["images"].numpy())


def test_train_images_cli_exports_and_warm_starts(tmp_path):
    """`rdpipe train-images` on two tiny images (a non-image skipped), its export, a missing
    folder, and warm starts. (`rdpipe eval` of a model: test_rd_report.py, on the zoo.)"""
    import json
    from pathlib import Path
    from PIL import Image
    from cli.main import main
    kodak = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
    train = tmp_path / "train"
    train.mkdir()
    for i, name in enumerate(["kodim01.png", "kodim02.png"]):
        image = Image.open(kodak / name).convert("RGB")
        image.crop((0, 0, 96, 80)).save(train / f"{i}.png")
    (train / "broken.png").write_text("not an image")
    model = tmp_path / "model"
    assert main(["train-images", "--train-dir", str(train), "--filters", "8",
                 "--patch-size", "32", "--batch-size", "2", "--steps-per-epoch", "3",
                 "--epochs", "1", "--output", str(model), "--quiet"]) == 0
    summary = json.loads((model / "summary.json").read_text())
    assert summary["steps_per_second"] > 0
    # The trained export round-trips odd sizes (padding to 16 and the shape in the string).
    exported = tf.saved_model.load(str(model / "saved_model"))
    for shape in [(1, 1), (17, 33), (31, 16)]:
        image = np.asarray(Image.open(kodak / "kodim03.png").convert("RGB"))[None, :shape[0],
                                                                            :shape[1]]
        strings = exported.signatures["compress"](images=tf.constant(image))["strings"]
        decoded = exported.signatures["decompress"](strings=strings)["images"].numpy()
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert main(["train-images", "--train-dir", str(tmp_path / "none"), "--output",
                 str(tmp_path / "m2")]) == 2
    # Warm start (λ sweep fine-tuning): a new λ starts from the trained weights, not from a
    # fresh initialization; a model of another width is refused with a clear error.
    from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer, warm_start
    trained = build_image_trainer(ImageTrainConfig(lmbda=.01, filters=8, train_dir=str(train)))
    tf.train.Checkpoint(trainer=trained).restore(
        tf.train.latest_checkpoint(str(model / "checkpoints"))).expect_partial()
    fresh = build_image_trainer(ImageTrainConfig(lmbda=.05, filters=8, train_dir=str(train)))
    assert warm_start(fresh, model, tmp_path / "new")
    for a, b in zip(trained.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    wide = build_image_trainer(ImageTrainConfig(lmbda=.05, filters=16, train_dir=str(train)))
    with pytest.raises(ValueError, match="does not match"):
        warm_start(wide, model, tmp_path / "new")
    assert not warm_start(fresh, model, model)    # own checkpoints exist: resume instead
    assert main(["train-images", "--train-dir", str(train), "--filters", "8", "--lmbda", ".05",
                 "--patch-size", "32", "--batch-size", "2", "--steps-per-epoch", "1",
                 "--epochs", "1", "--init-from", str(model), "--output",
                 str(tmp_path / "m3"), "--quiet"]) == 0
    assert json.loads((tmp_path / "m3" / "summary.json").read_text())["config"]["init_from"]
