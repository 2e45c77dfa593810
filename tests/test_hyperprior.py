"""The scale hyperprior (codec/models/bmshj2018.py, family `bmshj2018-hyperprior`): exact round
trips against the reference path at any size, the SavedModel equal to the in-process codec and
made of stock ops, corrupt strings refused, the string layout, and training through the
shared image trainer (loss falls, checkpoints resume, export)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from codec.models.bls2017 import _replicate_pad
from codec.models.bmshj2018 import (DOWNSAMPLING, HyperpriorCodec, HyperpriorTrainer,
                                    _split_hyper_string, table_index)


@pytest.fixture(scope="module")
def tiny_codec():
    trainer = HyperpriorTrainer(lmbda=.01, filters=8, hyper_filters=8)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    patches = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(patches).batch(2), epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return HyperpriorCodec(trainer)


def reference_decode(codec: HyperpriorCodec, images: np.ndarray) -> np.ndarray:
    """What the strings must decode to, without coding: ẑ = round(z − o) + o, the table indexes
    from h_s(ẑ), ŷ = round(y), x̂ = g_s(ŷ) cropped and rounded."""
    x = tf.cast(images, tf.float32) / 255.
    y = tf.cast(codec.analysis_transform(_replicate_pad(x, DOWNSAMPLING)), tf.float32)
    y_hat = tf.round(y)
    x_hat = tf.cast(codec.synthesis_transform(y_hat), tf.float32)
    x_hat = x_hat[:, :images.shape[1], :images.shape[2], :]
    return tf.saturate_cast(tf.round(x_hat * 255.), tf.uint8).numpy()


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (64, 64), (70, 130)])
def test_any_image_size_round_trips_exactly(tiny_codec, shape):
    images = np.random.default_rng(1).integers(0, 256, (2,) + shape + (3,)).astype(np.uint8)
    out = tiny_codec.compress(images)
    assert out["strings"].shape == (2,) and out["bits_per_pixel"].shape == (2,)
    decoded = tiny_codec.decompress(out["strings"])["images"].numpy()
    assert decoded.shape == images.shape
    np.testing.assert_array_equal(decoded, reference_decode(tiny_codec, images))
    np.testing.assert_array_equal(tiny_codec.compress(images)["strings"].numpy(),
                                  out["strings"].numpy())


def test_string_layout_holds_z_then_y(tiny_codec):
    from codec.entropy.framing import split_image_shape
    image = np.random.default_rng(2).integers(0, 256, (1, 128, 192, 3)).astype(np.uint8)
    string = tiny_codec.compress(image)["strings"]
    payload, height, width, ok = split_image_shape(string)
    assert (int(height[0]), int(width[0]), bool(ok[0])) == (128, 192, True)
    z, y, split_ok = _split_hyper_string(payload)
    assert bool(split_ok[0]) and len(z.numpy()[0]) + len(y.numpy()[0]) < len(payload.numpy()[0])
    assert y.numpy()[0][0] >> 5 == 3                 # rANS v2 with per-element tables
    z_hat, z_ok = tiny_codec.entropy_model.decompress(z, [2, 3])
    assert bool(z_ok[0])
    np.testing.assert_array_equal(
        z_hat.numpy(), tiny_codec.entropy_model.quantize(tiny_codec.hyper_analysis(tf.abs(
            tiny_codec.analysis_transform(tf.cast(image, tf.float32) / 255.)))).numpy())
    indexes = table_index(tiny_codec.hyper_synthesis(z_hat))
    assert indexes.shape == (1, 8, 12, 8) and indexes.dtype == tf.int32


def test_saved_model_equals_in_process_codec_and_uses_stock_ops(tiny_codec, tmp_path):
    from codec.saved_codec import SavedCodec
    from serving.ops_audit import audit
    tf.saved_model.save(tiny_codec, str(tmp_path / "m"), signatures=tiny_codec.signatures())
    report = audit(tmp_path / "m")
    assert report == {name: [] for name in report}, f"non-stock ops: {report}"
    loaded = SavedCodec(tmp_path / "m")
    assert loaded.coder == "portable" and loaded.fixed_size is None
    images = np.random.default_rng(3).integers(0, 256, (2, 40, 56, 3)).astype(np.uint8)
    strings, _ = loaded.compress(images)
    assert strings == list(tiny_codec.compress(images)["strings"].numpy())
    np.testing.assert_array_equal(loaded.decompress(strings), reference_decode(tiny_codec,
                                                                               images))


def test_corrupt_truncated_and_random_strings_are_refused(tiny_codec):
    image = np.random.default_rng(4).integers(0, 256, (1, 96, 80, 3)).astype(np.uint8)
    string = tiny_codec.compress(image)["strings"].numpy()[0]
    rng = np.random.default_rng(5)
    bad = [string[:-1], string[:len(string) // 2], string[:6], b"", string + b"\x00"]
    # Flips after the image-size header (a flipped size bit can name another valid size with
    # the same latent grid, e.g. 97 × 80: that string is valid and decodes a crop).
    for _ in range(10):
        flipped = bytearray(string)
        flipped[int(rng.integers(5, len(string)))] ^= 1 << int(rng.integers(8))
        bad.append(bytes(flipped))
    bad += [rng.bytes(int(rng.integers(1, 200))) for _ in range(10)]
    for s in bad:   # one per call: strings of one call must share a size
        ok = tiny_codec.decompress_unchecked(tf.constant([s]))["sanity_ok"].numpy()
        assert not ok[0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="end-of-stream"):
        tiny_codec.decompress(tf.constant([string[:-1]]))


def test_trains_resumes_and_exports_through_the_image_trainer(tmp_path):
    """`rdpipe train bmshj2018-hyperprior` path: the shared trainer builds the hyperprior from
    the family's config, its loss falls, a second run resumes from the checkpoint, and the
    export decodes what it encodes."""
    from PIL import Image
    from pathlib import Path
    from codec.families import get_family
    family = get_family("bmshj2018-hyperprior")
    photos = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" /
                     "photos-train").glob("*.png"))[:2]
    images = [np.asarray(Image.open(p).convert("RGB"))[:192, :256] for p in photos]
    config = family.make_config({"filters": 16, "hyper_filters": 8, "patch_size": 64,
                                 "batch_size": 4, "steps": 40, "log_seconds": 0,
                                 "learning_rate": 1e-3, "verbose": 0, "lmbda": .01})
    assert config.architecture == "hyperprior"
    from codec.models.bls2017_train import train_image_codec
    summary = train_image_codec(config, tmp_path / "run", images=images)
    losses = summary["history"]["loss"]
    assert summary["finished"] and len(losses) == 40 \
        and np.mean(losses[-5:]) < np.mean(losses[:5])
    again = train_image_codec(config, tmp_path / "run", images=images)
    assert again["steps"] == 40
    codec = summary["codec"]
    out = codec.compress(images[0][None])
    decoded = codec.decompress(out["strings"])["images"].numpy()
    np.testing.assert_array_equal(decoded, reference_decode(codec, images[0][None]))
    with pytest.raises(ValueError, match="multiple of 64"):
        family.make_config({"patch_size": 96})
