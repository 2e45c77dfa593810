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


def _briefly_trained(trainer_class):
    """A tiny trainer of `trainer_class` after one epoch on 4 random 64² patches."""
    keras.utils.set_random_seed(0)
    trainer = trainer_class(lmbda=.01, filters=8, hyper_filters=8)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    patches = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(patches).batch(2), epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    return trainer


@pytest.fixture(scope="module")
def tiny_codec():
    return HyperpriorCodec(_briefly_trained(HyperpriorTrainer))


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
    indexes = tiny_codec._side_parameters(z_hat)[0]
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
    # the same latent grid, e.g. 97 × 80: that string is valid and decodes a crop) and before
    # the escape values that end the y string (plain bits: a flip there decodes, to another
    # value).
    for _ in range(10):
        flipped = bytearray(string)
        flipped[int(rng.integers(5, len(string) // 3))] ^= 1 << int(rng.integers(8))
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


def test_integer_indexes_follow_the_float_network(tiny_codec):
    """The integer h_s approximates the float one: indexes within one table of the float
    network's rounding, and equal almost everywhere."""
    z_hat = tf.constant(np.random.default_rng(6).normal(0, 3, (2, 3, 4, 8)).round()
                        .astype(np.float32)) + tiny_codec.entropy_model._quantization_offset
    integer = tiny_codec._side_parameters(z_hat)[0].numpy()
    floating = table_index(tiny_codec.hyper_synthesis(z_hat)).numpy()
    assert np.abs(integer - floating).max() <= 1
    assert (integer == floating).mean() > .95


_DECODE_ELSEWHERE = """
import os, sys, json
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[3]))
tf.config.threading.set_inter_op_parallelism_threads(1)
model = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2])
strings = [bytes(data[f"s{i}"]) for i in range(int(data["count"]))]
out = {}
for i, s in enumerate(strings):
    decoded = model.decompress_unchecked(tf.constant([s]))
    np.save(sys.argv[2] + f".idx{i}.npy", model.decoder_indexes(tf.constant([s])).numpy())
    np.save(sys.argv[2] + f".img{i}.npy", decoded["images"].numpy())
    out[i] = bool(decoded["sanity_ok"].numpy()[0])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_indexes_and_symbols_are_identical_in_another_process_with_onednn_off(tiny_codec,
                                                                             tmp_path):
    """Encode here; decode in fresh processes with oneDNN off and on one thread: the table
    indexes the decoder derives are identical to the encoder's, every string passes the
    coder's check (a single differing index would desynchronize the rANS stream), and the
    pixels agree (the float32 synthesis may move one by a grey level)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    from PIL import Image
    tf.saved_model.save(tiny_codec, str(tmp_path / "m"), signatures=tiny_codec.signatures())
    kodak = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
    images = [np.asarray(Image.open(kodak / n).convert("RGB"))[:256, :384]
              for n in ("kodim04.png", "kodim19.png", "kodim23.png")]
    strings = [tiny_codec.compress(i[None])["strings"].numpy()[0] for i in images]
    here = [tiny_codec.decoder_indexes(tf.constant([s])).numpy() for s in strings]
    pixels = [tiny_codec.decompress(tf.constant([s]))["images"].numpy() for s in strings]
    data = tmp_path / "strings.npz"
    np.savez(data, count=len(strings),
             **{f"s{i}": np.frombuffer(s, np.uint8) for i, s in enumerate(strings)})
    for onednn, threads in (("0", 1), ("1", 2)):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run([sys.executable, "-c", _DECODE_ELSEWHERE, str(tmp_path / "m"),
                                 str(data), str(threads)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == \
            {str(i): True for i in range(len(strings))}
        for i in range(len(strings)):
            np.testing.assert_array_equal(np.load(f"{data}.idx{i}.npy"), here[i])
            assert np.abs(np.load(f"{data}.img{i}.npy").astype(int) - pixels[i]).max() <= 1


def test_integer_stack_outputs_grid_values_within_its_bounds():
    from codec.layers.integer_net import IntegerConvStack
    from codec.models.bmshj2018 import make_hyper_synthesis
    stack = make_hyper_synthesis(8, 8)
    stack(tf.zeros([1, 2, 2, 8]))
    integer = IntegerConvStack(stack)
    z = tf.constant(np.random.default_rng(7).normal(0, 1e4, (1, 2, 3, 8)).astype(np.float32))
    out = integer(z).numpy()
    assert out.shape == (1, 8, 12, 8) and out.dtype == np.float64
    np.testing.assert_array_equal(out * 256, np.round(out * 256))    # on the 2^-8 grid
    assert np.abs(out).max() <= 1024                                   # saturated
    with pytest.raises(ValueError, match="SignalConv2D and ReLU"):
        IntegerConvStack(keras.Sequential([keras.layers.Dense(3)]))


# ------------------------------------------------------------- mean-scale (mbt2018-mean)
@pytest.fixture(scope="module")
def tiny_mean_scale():
    from codec.models.mbt2018 import MeanScaleCodec, MeanScaleTrainer
    trainer = _briefly_trained(MeanScaleTrainer)
    assert trainer.hyper_synthesis.layers[-1].filters == 16        # index and mean per y
    return MeanScaleCodec(trainer)


@pytest.mark.parametrize("shape", [(1, 1), (40, 72)])
def test_mean_scale_round_trips_to_round_y_minus_mu_plus_mu(tiny_mean_scale, shape):
    """ŷ = round(y − μ) + μ with μ from the integer h_s: what the decoder must rebuild."""
    codec = tiny_mean_scale
    images = np.random.default_rng(3).integers(0, 256, (2,) + shape + (3,)).astype(np.uint8)
    decoded = codec.decompress(codec.compress(images)["strings"])["images"].numpy()
    x = tf.cast(images, tf.float32) / 255.
    y = tf.cast(codec.analysis_transform(_replicate_pad(x, DOWNSAMPLING)), tf.float32)
    z_hat = codec.entropy_model.quantize(tf.cast(codec.hyper_analysis(y), tf.float32))
    _, means = codec._side_parameters(z_hat)
    assert means is not None and float(tf.reduce_max(tf.abs(means))) > 0
    np.testing.assert_array_equal(means.numpy() * 256, np.round(means.numpy() * 256))
    x_hat = tf.cast(codec.synthesis_transform(tf.round(y - means) + means), tf.float32)
    expected = tf.saturate_cast(tf.round(x_hat[:, :shape[0], :shape[1]] * 255.), tf.uint8)
    np.testing.assert_array_equal(decoded, expected.numpy())
