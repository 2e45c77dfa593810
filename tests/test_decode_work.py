"""Decode work bounded by the string (schemas/bitstream.md): a string too short for the image
size it claims is refused before any decoding, by new exports, by `SavedCodec` for exports made
before, by the server and the CLI; and arbitrary short strings never crash the decoder."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from codec import zoo
from codec.entropy import framing, portable_coder
from codec.entropy.byte_reader import varint
from codec.models.bls2017 import latent_positions
from codec.saved_codec import SavedCodec

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
# The zoo model of 2026-11 (before rANS v2), kept with the golden files it wrote.
GOLDEN_WRITER = Path(__file__).resolve().parent / "golden" / "models" / "bls2017-q1-2026-11"
SINGLE_LANE_POSITIONS = portable_coder.SINGLE_LANE_MAX // 128   # N = 128 latent channels


def _claiming(string: bytes, height: int, width: int) -> bytes:
    """`string` (format byte, shape, payload) with its shape header replaced."""
    payload, _, _, ok = framing.split_image_shape(tf.constant([string]))
    assert bool(ok.numpy()[0])
    payload = payload.numpy()[0]
    return payload[:1] + varint(height) + varint(width) + payload[1:]


@pytest.fixture(scope="module")
def q1() -> SavedCodec:
    return SavedCodec(zoo.resolve_model("bls2017-q1"))


def _kodak(name: str) -> np.ndarray:
    return np.asarray(Image.open(KODAK / name).convert("RGB"))


@pytest.mark.parametrize("model", ["bls2017-q1", "bls2017-q4"])
def test_the_bound_holds_for_real_strings_and_is_tight_enough_to_matter(model):
    codec = SavedCodec(zoo.resolve_model(model))
    cdf = codec._module.entropy_model._cdf    # pylint: disable=protected-access
    for name, (height, width) in [("kodim01.png", (128, 256)), ("kodim13.png", (256, 384)),
                                  ("kodim23.png", (512, 768))]:
        strings, _ = codec.compress(_kodak(name)[None, :height, :width])
        payload, _, _, _ = framing.split_image_shape(tf.constant(strings))
        length = len(payload.numpy()[0])
        need = int(portable_coder.min_string_bytes(cdf, latent_positions(height, width), 128))
        assert need <= length, (name, need, length)           # never refuses a real string
        assert need >= .2 * length, (name, need, length)      # and is far from trivial
    assert not codec.too_short_for_their_size(strings).any()
    # A 16 MP claim needs > 100 KB, so a short string can claim only a small image.
    assert int(portable_coder.min_string_bytes(cdf, latent_positions(4096, 4096), 128)) > 1e5
    # One-lane strings (< 16,384 symbols) have no bound.
    assert int(portable_coder.min_string_bytes(cdf, SINGLE_LANE_POSITIONS - 1, 128)) == 0


def test_a_short_string_claiming_a_large_image_is_refused_before_decoding(q1):
    """A real 72-byte string with its header rewritten to claim 4096×4096 (16 MP: before, the
    synthesis ran over all of it): refused, decoded as 1×1, by an export made before this check
    (via SavedCodec) and by a new export (the check inside its decompress signature)."""
    from codec.models.bls2017 import BLS2017Trainer, ImageCodec
    crop = _kodak("kodim23.png")[None, 200:264, 300:396]
    strings, _ = q1.compress(crop)
    hostile = _claiming(strings[0], 4096, 4096)
    assert len(hostile) < 80
    assert q1.too_short_for_their_size([hostile, strings[0]]).tolist() == [True, False]
    images, ok = q1.decompress_with_status([hostile])
    assert ok.tolist() == [False] and images.shape == (1, 1, 1, 3)
    images, ok = q1.decompress_with_status([hostile, strings[0]])   # the other still decodes
    assert ok.tolist() == [False, True]
    np.testing.assert_array_equal(images[1], q1.decompress(strings)[0])
    new_export = ImageCodec(BLS2017Trainer(filters=8))
    string = new_export.compress(crop)["strings"].numpy()[0]
    out = new_export.decompress_unchecked(tf.constant([_claiming(string, 4096, 4096)]))
    assert out["sanity_ok"].numpy().tolist() == [False]
    assert out["images"].shape == (1, 1, 1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="failed the image-shape"):
        new_export.decompress(tf.constant([_claiming(string, 2048, 2048)]))


def test_arbitrary_short_strings_never_crash_and_decode_little(q1):
    """Random, truncated, bit-flipped and re-headed strings of ≤ 200 bytes: never an exception;
    whatever is decoded stays under the one-lane size (the multi-lane sizes need more bytes)."""
    rng = np.random.default_rng(7)
    crop = _kodak("kodim23.png")[None, 200:264, 300:396]
    good = q1.compress(crop)[0][0]
    cases = [good[:n] for n in range(0, len(good), 7)]
    for _ in range(30):
        flipped = bytearray(good)
        flipped[int(rng.integers(1, len(good)))] ^= 1 << int(rng.integers(8))
        cases.append(bytes(flipped))
    for height, width in [(4096, 4096), (65535, 256), (1024, 1024), (300, 300), (128, 256)]:
        cases.append(_claiming(good, height, width))
    for n in rng.integers(1, 200, 25):     # portable format byte, random shape and payload
        cases.append(bytes([0x20 | int(rng.integers(32))]) + rng.bytes(int(n)))
    most = (SINGLE_LANE_POSITIONS - 1) * 16 * 16
    for case in cases:
        images, ok = q1.decompress_with_status([case])
        assert images.dtype == np.uint8 and ok.shape == (1,)
        assert ok[0] == (case == good) or case == good
        assert images.shape[1] * images.shape[2] <= most, (len(case), images.shape)


def test_the_server_refuses_short_strings_and_too_many_pixels(tmp_path):
    """`rdpipe serve`'s request guard (cli/serving.py) on the zoo model, an export made before
    the check existed in the graph."""
    from cli.serving import decode_work_guard
    from serving.models import ModelRegistry
    from serving.predict import Predictor, RequestError
    base = tmp_path / "models" / "bls2017-q1"
    base.mkdir(parents=True)
    (base / "1").symlink_to(zoo.resolve_model("bls2017-q1") / "saved_model")
    registry = ModelRegistry(tmp_path / "models")
    registry.refresh()
    predictor = Predictor(registry, request_guard=decode_work_guard(100_000))
    crop = _kodak("kodim23.png")[None, 200:264, 300:396]
    good = predictor.predict("bls2017-q1", None, "compress", {"images": crop}).outputs["strings"]
    strings = np.array(list(good) * 2, dtype=object)
    decoded = predictor.predict("bls2017-q1", None, "decompress", {"strings": strings})
    assert decoded.outputs["images"].shape == (2, 64, 96, 3)
    hostile = np.array([_claiming(good[0], 4096, 4096)], dtype=object)
    with pytest.raises(RequestError) as error:
        predictor.predict("bls2017-q1", None, "decompress", {"strings": hostile})
    assert error.value.code == "RESOURCE_EXHAUSTED" and "--max-decoded-pixels" in str(error.value)
    short = np.array([_claiming(good[0], 256, 384)], dtype=object)      # 98,304 px: allowed
    with pytest.raises(RequestError) as error:
        predictor.predict("bls2017-q1", None, "decompress", {"strings": short})
    assert error.value.code == "INVALID_ARGUMENT" and "too short" in str(error.value)
    unchecked = predictor.predict("bls2017-q1", None, "decompress_unchecked", {"strings": short})
    assert unchecked.outputs["sanity_ok"].tolist() == [False]
    assert unchecked.outputs["images"].shape[1:3] == (1, 1)


def test_cli_max_pixels_refuses_large_claims(tmp_path, capsys):
    from cli.main import main
    golden = Path(__file__).resolve().parent / "golden" / "bls2017-q1_kodim23.bin"
    shutil.copy(golden, tmp_path / "photo.bin")
    assert main(["decompress", str(tmp_path / "photo.bin"), "--max-pixels", "6000",
                 "--output-dir", str(tmp_path / "out"), "--quiet"]) == 2
    assert "over --max-pixels 6,000" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "photo.bin"), "--max-pixels", "6144",
                 "--model", str(GOLDEN_WRITER), "--output-dir", str(tmp_path / "out"),
                 "--quiet"]) == 0


def test_the_cheapest_string_there_is_still_meets_the_bound(q1):
    """Every symbol its channel's most probable one — the shortest string the coder can write
    for that many positions — is at least as long as the bound, and within 10 % of it."""
    cdf = q1._module.entropy_model._cdf    # pylint: disable=protected-access
    info = portable_coder.TableInfo(cdf)
    freq, splits = info.freq.numpy(), info.splits.numpy()
    most_probable = np.array([np.argmax(freq[splits[c]:splits[c + 1] - 1])     # not the escape
                              for c in range(len(splits) - 1)])
    for positions in (SINGLE_LANE_POSITIONS, 1024):
        symbols = np.broadcast_to(most_probable, (1, positions, len(most_probable)))
        length = len(portable_coder.encode(tf.constant(symbols, tf.int32), cdf).numpy()[0])
        need = int(portable_coder.min_string_bytes(cdf, positions, len(most_probable)))
        assert need <= length <= 1.1 * need, (positions, need, length)


def test_new_exports_bound_one_lane_v2_strings_and_refuse_unbounded_v1_ones(tmp_path):
    """Since rANS v2, new exports write v2 from 2,048 symbols (a lane per 768 symbols), whose
    length is bounded below; a v1 one-lane string of that size (which only the model's earlier
    export writes, and whose decode work nothing bounds) is refused by the new export before
    any decoding, and still decoded by the export that wrote it."""
    from codec.entropy import rans_lanes
    from codec.entropy.coders import PortableRansCoder
    from codec.models.bls2017_train import reexport_saved_image_codec
    saved = GOLDEN_WRITER / "saved_model"          # an export made before rANS v2
    codec = reexport_saved_image_codec(saved, tmp_path / "q1")
    old = tf.saved_model.load(str(saved))
    cdf = codec.entropy_model._cdf       # pylint: disable=protected-access
    positions = latent_positions(160, 192)        # 10 × 12 × 128 = 15,360 symbols: 16 lanes
    need = int(rans_lanes.min_string_bytes(cdf, positions, 128))
    assert need > 0 == int(portable_coder.min_string_bytes(cdf, positions, 128))
    image = _kodak("kodim05.png")[None, :160, :192]
    new_string = codec.compress(image)["strings"].numpy()[0]
    old_string = old.compress(image)["strings"].numpy()[0]
    new_payload = framing.split_image_shape(tf.constant([new_string]))[0].numpy()[0]
    assert new_payload[0] >> 5 == 3 and (new_payload[0] >> 1) & 15 == 4     # v2, 16 lanes
    assert len(new_payload) >= need
    assert codec.decompress_unchecked(tf.constant([new_string]))["sanity_ok"].numpy().tolist() \
        == [True]
    assert codec.decompress_unchecked(tf.constant([old_string]))["sanity_ok"].numpy().tolist() \
        == [False]
    assert old.decompress_unchecked(tf.constant([old_string]))["sanity_ok"].numpy().tolist() \
        == [True]
    np.testing.assert_array_equal(codec.decompress(tf.constant([new_string]))["images"],
                                  old.decompress(tf.constant([old_string]))["images"])
    # A v2 string too short for the size it claims is refused; the bound is per layout.
    short = new_payload[:need - 1]
    assert PortableRansCoder().too_short(tf.constant([short, new_payload]), cdf, positions,
                                         128).numpy().tolist() == [True, False]
    header = len(new_string) - len(new_payload)            # the image-size varints
    hostile = new_string[:header + need - 1]
    assert codec.decompress_unchecked(tf.constant([hostile]))["sanity_ok"].numpy().tolist() \
        == [False]
