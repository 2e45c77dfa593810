"""Golden artefacts of today's formats (tests/golden/, written once by make_golden.py) decode
with today's code: a container file, the raw signature string inside it, and the image the
decoder returned when they were written. A format change must keep these passing."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cli.main import main
from codec.entropy import container

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
NAME = "bls2017-q1_kodim23"
# The zoo model that wrote the image goldens, kept here when the zoo moved on (2026-12-02):
# the same files as in the zoo's history, so git stores them once.
WRITER = GOLDEN / "models" / "bls2017-q1-2026-11"


def _expected() -> np.ndarray:
    return np.asarray(Image.open(GOLDEN / f"{NAME}.png"))


def _assert_decodes_to_golden(decoded: np.ndarray) -> None:
    """Equal to the recorded decode. The entropy decoding is integer arithmetic, exact on any
    machine; the synthesis transform is float32, whose rounding may move a pixel by one grey
    level on another CPU: the pixels must agree within 1 and almost all exactly."""
    expected = _expected()
    assert decoded.shape == expected.shape == (64, 96, 3)
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < .01


def test_golden_files_are_the_ones_recorded():
    for name, entry in MANIFEST["files"].items():
        data = (GOLDEN / name).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == \
            entry["sha256"], f"{name} changed: rewrite it only with make_golden.py"


def test_golden_raw_string_decodes_with_todays_code():
    from codec.saved_codec import SavedCodec
    string = (GOLDEN / f"{NAME}.string").read_bytes()
    assert f"0x{string[0]:02x}" == MANIFEST["bitstream_format_byte"]    # portable coder, v1
    codec = SavedCodec(WRITER)
    _assert_decodes_to_golden(codec.decompress([string])[0])
    images, ok = codec.decompress_with_status([string])
    assert ok.tolist() == [True]


def test_golden_container_decodes_by_the_model_it_names(tmp_path):
    data = (GOLDEN / f"{NAME}.bin").read_bytes()
    header = container.unpack(data)
    assert (header.model, header.width, header.height, header.channels) == \
        (MANIFEST["model"], 96, 64, 3)
    assert data[4] == MANIFEST["container_version"] == 1
    assert header.segments[0] == (GOLDEN / f"{NAME}.string").read_bytes()
    assert main(["decompress", str(GOLDEN / f"{NAME}.bin"), "--model", str(WRITER),
                 "--output-dir", str(tmp_path), "--quiet"]) == 0
    _assert_decodes_to_golden(np.asarray(Image.open(tmp_path / f"{NAME}.png")))
    assert container.unpack(data).fingerprint == _writer_fingerprint()


def _writer_fingerprint() -> bytes:
    from codec.saved_codec import SavedCodec
    return SavedCodec(WRITER).fingerprint


def test_golden_container_without_model_uses_the_zoo_model_it_names(tmp_path, capsys):
    """No --model: the header's name picks the zoo model; a zoo that moved on to new tables
    refuses the file naming both models, and loses nothing."""
    from codec import zoo
    from codec.saved_codec import SavedCodec
    code = main(["decompress", str(GOLDEN / f"{NAME}.bin"), "--output-dir", str(tmp_path),
                 "--quiet"])
    if SavedCodec(zoo.resolve_model(MANIFEST["model"])).fingerprint == _writer_fingerprint():
        assert code == 0
        _assert_decodes_to_golden(np.asarray(Image.open(tmp_path / f"{NAME}.png")))
    else:
        assert code != 0 and not (tmp_path / f"{NAME}.png").exists()
        assert "written by model bls2017-q1" in capsys.readouterr().err


def test_one_corrupt_tile_fails_its_file_alone(tmp_path, capsys):
    """A container with a valid header whose tile string is damaged is refused with a clear
    error; the other files of the same call are decoded."""
    data = bytearray((GOLDEN / f"{NAME}.bin").read_bytes())
    for i in range(len(data) - 30, len(data)):          # inside the tile's payload
        data[i] ^= 0x5a
    (tmp_path / "broken.bin").write_bytes(bytes(data))
    (tmp_path / "good.bin").write_bytes((GOLDEN / f"{NAME}.bin").read_bytes())
    container.unpack(bytes(data))                        # the header still parses
    out = tmp_path / "out"
    assert main(["decompress", str(tmp_path / "broken.bin"), str(tmp_path / "good.bin"),
                 "--model", str(WRITER), "--output-dir", str(out), "--quiet"]) == 2
    assert "broken.bin" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    _assert_decodes_to_golden(np.asarray(Image.open(out / "good.png")))


def test_encode_image_checks_its_arguments_before_any_transform():
    import pytest
    from codec import photo_codec
    from codec.saved_codec import SavedCodec
    codec = SavedCodec(WRITER)
    image = np.asarray(Image.open(GOLDEN / f"{NAME}.png"))
    with pytest.raises(ValueError, match="1 channels, the model codes 3"):
        photo_codec.encode_image(codec, image[..., :1])
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8193, 8193, 3))   # no memory used
    with pytest.raises(ValueError, match="64 MP"):
        photo_codec.encode_image(codec, huge)
    with pytest.raises(ValueError, match="tile"):
        photo_codec.encode_image(codec, image, tile=7)


def _mnist_golden() -> tuple[dict, list[bytes]]:
    data = dict(np.load(GOLDEN / "mnist_tables.npz"))
    ends = np.cumsum(data["string_lengths"])
    blob = data["string_bytes"].tobytes()
    return data, [blob[end - n:end] for end, n in zip(ends, data["string_lengths"])]


def test_mnist_golden_strings_decode_to_their_symbols():
    """The MNIST family's bitstream (format byte + one-lane rANS under 50 per-channel tables)
    as written when the golden files were made: today's decoder reads back the same symbols,
    and today's writer still writes the same bytes."""
    import tensorflow as tf
    from codec.entropy.coders import PortableRansCoder, coder_of_string
    data, strings = _mnist_golden()
    assert f"0x{strings[0][0]:02x}" == MANIFEST["mnist"]["bitstream_format_byte"]
    assert {coder_of_string(s) for s in strings} == {"portable"}
    channels = MANIFEST["mnist"]["latent_channels"]
    cdf = tf.constant(data["cdf"])
    symbols, ok = PortableRansCoder().decode(tf.constant(strings), 1, channels, cdf)
    assert np.asarray(ok).all()
    np.testing.assert_array_equal(np.reshape(symbols, data["symbols"].shape), data["symbols"])
    assert len(np.unique(data["symbols"])) > 1                    # not a degenerate record
    rewritten = PortableRansCoder().encode(tf.constant(data["symbols"]), cdf).numpy()
    assert list(rewritten) == strings


def test_mnist_golden_container_names_its_model_and_holds_the_string():
    _, strings = _mnist_golden()
    data = (GOLDEN / "mnist_digit0.bin").read_bytes()
    header = container.unpack(data)
    assert (header.model, header.height, header.width, header.channels, header.tile) == \
        ("mnist_golden", 28, 28, 1, 0)
    assert data[4] == MANIFEST["mnist"]["container_version"] == 1
    assert list(header.segments) == [strings[0]]
    assert header.string_format == 0        # version 1: the strings name their coder


def test_mnist_headerless_range_strings_decode_and_rewrite_byte_for_byte():
    """The `portable-range` strings (MNIST's coder since 2026-12; no format byte) of the golden
    digits: today's decoder reads back their symbols, today's encoder writes the same bytes,
    each is within a byte of the information under the golden tables, and the version-2
    container records their coder (format 4)."""
    import tensorflow as tf
    from codec.entropy.coders import PortableRangeCoder
    tables, v1_strings = _mnist_golden()
    data = dict(np.load(GOLDEN / "mnist_range.npz"))
    ends = np.cumsum(data["string_lengths"])
    blob = data["string_bytes"].tobytes()
    strings = [blob[end - n:end] for end, n in zip(ends, data["string_lengths"])]
    cdf = tf.constant(tables["cdf"])
    channels = MANIFEST["mnist"]["latent_channels"]
    symbols, ok = PortableRangeCoder().decode(tf.constant(strings), 1, channels, cdf)
    assert np.asarray(ok).all()
    np.testing.assert_array_equal(np.reshape(symbols, tables["symbols"].shape), tables["symbols"])
    assert list(PortableRangeCoder().encode(tf.constant(tables["symbols"]), cdf).numpy()) == strings
    assert sum(map(len, strings)) < sum(map(len, v1_strings)) - len(strings)   # ≥ 1 byte less each
    header = container.unpack((GOLDEN / "mnist_range_digit0.bin").read_bytes())
    assert (header.string_format, list(header.segments)) == (4, [strings[0]])


def test_format1_multilane_strings_still_decode():
    """Multi-lane strings of bitstream format 1 (16 and 64 lanes), written by the zoo model
    before format 2 replaced them in new exports: today's decoder reads back the same symbols
    under the model's own tables, and the model's baked decoder still accepts them."""
    import tensorflow as tf
    from codec.entropy.coders import PortableRansCoder
    data = dict(np.load(GOLDEN / "lanes_v1.npz"))
    assert MANIFEST["lanes"]["model"] == WRITER.name.rsplit("-", 2)[0]
    model = tf.saved_model.load(str(WRITER / "saved_model"))
    cdf = tf.convert_to_tensor(model.entropy_model._cdf)
    channels = int(model.entropy_model._cdf_offset.shape[0])
    for name, lanes in (("lanes16", 16), ("lanes64", 64)):
        string = data[f"{name}_string"].tobytes()
        assert string[0] >> 5 == 1 and (string[0] >> 2) & 7 == int(np.log2(lanes))
        symbols, ok = PortableRansCoder().decode(
            tf.constant([string]), int(data[f"{name}_positions"]), channels, cdf)
        assert np.asarray(ok).tolist() == [True]
        np.testing.assert_array_equal(np.asarray(symbols)[0], data[f"{name}_symbols"])
        assert len(np.unique(data[f"{name}_symbols"])) > 3
        # One flipped byte in the middle of the words must not decode as valid.
        broken = bytearray(string)
        broken[len(broken) // 2] ^= 0x5A
        _, ok = PortableRansCoder().decode(tf.constant([bytes(broken)]),
                                           int(data[f"{name}_positions"]), channels, cdf)
        assert np.asarray(ok).tolist() == [False]


def test_format3_strings_of_the_earlier_lane_counts_still_decode():
    """rANS v2 strings written before encoders took more lanes for short strings (one lane for
    12,288 symbols, 8 for 16,384): today's decoder reads the lane count from the header and
    returns the same symbols; a header naming a count outside the range for n is refused."""
    import tensorflow as tf
    from codec.entropy import rans_lanes
    from codec.entropy.coders import PortableRansCoder, channel_tables
    data = dict(np.load(GOLDEN / "lanes_v2.npz"))
    cdf = tf.constant(data["cdf"])
    channels = int(np.sum(data["cdf"] < 0))
    for name, lanes in (("n12288", 1), ("n16384", 8)):
        string = data[f"{name}_string"].tobytes()
        positions = int(data[f"{name}_positions"])
        assert string[0] >> 5 == 3 and 1 << ((string[0] >> 1) & 15) == lanes
        symbols, ok = PortableRansCoder().decode(tf.constant([string]), positions, channels, cdf)
        assert np.asarray(ok).tolist() == [True]
        np.testing.assert_array_equal(np.asarray(symbols)[0], data[f"{name}_symbols"])
        # Today's encoder writes more lanes for these sizes, and the same symbols back.
        n = positions * channels
        again = PortableRansCoder().encode(tf.constant(data[f"{name}_symbols"][None], tf.int32),
                                           cdf).numpy()[0]
        assert 1 << ((again[0] >> 1) & 15) == 1 << int(rans_lanes.encoder_lanes_log2(n)) > lanes
        assert len(again) <= len(string) + 4 * (1 << int(rans_lanes.encoder_lanes_log2(n)))
        # A lane count beyond what any encoder writes for n: refused, not decoded.
        table_index = channel_tables(1, positions, channels)
        wide = bytes([(3 << 5) | (7 << 1)]) + string[1:]
        assert np.asarray(rans_lanes.decode(tf.constant([wide]), table_index, cdf)[1]).tolist() \
            == [False]
