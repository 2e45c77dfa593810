"""Issue 13: photos in, `.bin` files out, for image codecs — conversion rules, the container
header and its errors, tiles, CLI and client round trips, the model zoo."""
from __future__ import annotations

import dataclasses

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.entropy import container

from codec.data import image_io

from codec import photo_codec
from cli.main import main

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _kodak_crop(height=96, width=128, name="kodim23.png") -> np.ndarray:
    return np.asarray(Image.open(KODAK / name).convert("RGB"))[:height, :width]


# ------------------------------------------------------------------ conversion rules
def _load(path, channels=3):
    return image_io.load_photo(path, channels)


def test_greyscale_becomes_rgb_and_rgb_becomes_grey_with_a_warning(tmp_path):
    grey = np.arange(48 * 32, dtype=np.uint32).reshape(48, 32).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgb, warnings = _load(tmp_path / "grey.png")
    assert rgb.shape == (48, 32, 3) and not warnings
    assert (rgb == grey[..., None]).all()
    Image.fromarray(_kodak_crop()).save(tmp_path / "colour.png")
    luma, warnings = _load(tmp_path / "colour.png", channels=1)
    assert luma.shape == (96, 128, 1) and any("greyscale" in w for w in warnings)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200                    # red, half of it fully transparent
    rgba[:4, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image, warnings = _load(tmp_path / "rgba.png")
    assert (image[:4] == [200, 0, 0]).all() and (image[4:] == 255).all()
    assert any("composited on white (50%" in w for w in warnings)
    la = np.stack([np.full((8, 8), 10, np.uint8), np.full((8, 8), 0, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image, warnings = _load(tmp_path / "la.png")
    assert (image == 255).all() and warnings
    rgba[..., 3] = 255                    # opaque alpha: dropped silently
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    image, warnings = _load(tmp_path / "opaque.png")
    assert (image == [200, 0, 0]).all() and not warnings


def test_palette_cmyk_and_bilevel_are_converted(tmp_path):
    crop = Image.fromarray(_kodak_crop(32, 32))
    crop.convert("P", palette=Image.ADAPTIVE).save(tmp_path / "palette.png")
    image, _ = _load(tmp_path / "palette.png")
    assert image.shape == (32, 32, 3) and np.abs(image.astype(int) - crop).mean() < 12
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((0, 0), 1)
    palette.save(tmp_path / "transparent.png", transparency=0)
    image, warnings = _load(tmp_path / "transparent.png")
    assert tuple(image[0, 0]) == (255, 0, 0) and tuple(image[1, 1]) == (255, 255, 255)
    assert warnings
    crop.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    image, _ = _load(tmp_path / "cmyk.jpg")
    assert image.shape == (32, 32, 3) and np.abs(image.astype(int) - crop).mean() < 12
    crop.convert("1").save(tmp_path / "bilevel.bmp")
    image, _ = _load(tmp_path / "bilevel.bmp")
    assert set(np.unique(image)) <= {0, 255}
    for suffix in ("tif", "webp", "bmp"):
        crop.save(tmp_path / f"plain.{suffix}", **({"lossless": True} if suffix == "webp"
                                                   else {}))
        image, warnings = _load(tmp_path / f"plain.{suffix}")
        assert (image == np.asarray(crop)).all() and not warnings


def _png_48_bit(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow writes none), chunk by chunk."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    height, width, _ = rgb16.shape
    rows = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16_bit_images_are_reduced_to_8_bits_with_a_warning(tmp_path):
    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    image, warnings = _load(tmp_path / "grey16.png", channels=1)
    assert any("16 bits" in w for w in warnings)
    np.testing.assert_array_equal(image[..., 0],
                                  np.round(grey16 / 65535. * 255).astype(np.uint8))
    rgb16 = np.stack([grey16, grey16 // 2, 65535 - grey16], -1)
    _png_48_bit(tmp_path / "rgb48.png", rgb16)
    image, warnings = _load(tmp_path / "rgb48.png")
    assert any("16 bits" in w for w in warnings) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb16 / 257).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    crop = Image.fromarray(_kodak_crop(32, 64))     # 64 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6                                # "rotate 90° clockwise to view"
    crop.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image, _ = _load(tmp_path / "rotated.jpg")
    assert image.shape == (64, 32, 3)
    expected = np.asarray(crop.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(image.astype(int) - expected).mean() < 8


def test_animated_images_code_their_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    image, warnings = _load(tmp_path / "anim.gif")
    assert any("animated" in w and "2 frames" in w for w in warnings)
    assert tuple(image[0, 0]) == (255, 0, 0)


def test_non_images_are_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(image_io.ImageReadError, match="not a readable image"):
        _load(tmp_path / "notes.png")
    Image.fromarray(_kodak_crop()).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(image_io.ImageReadError):
        _load(tmp_path / "cut.png")


# ---------------------------------------------------------------- container header
HEADER = container.Header("bls2017-q3", .01, bytes(range(1, 9)), 100, 150, 3, 64)


def _file() -> bytes:
    return container.pack(HEADER, [bytes([i]) * (i + 3) for i in range(6)])


def test_container_round_trip_and_tile_grid():
    header = container.unpack(_file())
    assert header == HEADER and len(header.segments) == 6
    assert header.boxes[0] == (0, 0, 64, 64) and header.boxes[-1] == (64, 128, 100, 150)
    assert header.segments[5] == bytes([5]) * 8
    assert "bls2017-q3 (λ=0.01, tables 0102030405060708)" == header.model_label


def test_container_v2_records_the_string_format_and_v1_files_still_read():
    """Version 2 names the segments' coder (4: headerless `portable-range`) once per file;
    version 1 files (no such byte) read as format 0, and a file whose coder differs from the
    decoding model's is refused naming both."""
    header = dataclasses.replace(HEADER, string_format=4)
    data = container.pack(header, [b"x"] * 6)
    assert data[4] == container.VERSION == 2 and container.unpack(data).string_format == 4
    name = HEADER.model.encode()
    v1 = data[:4] + b"\x01" + data[5:7 + len(name) + 12] + data[7 + len(name) + 13:]
    old = container.unpack(v1)
    assert old.string_format == 0 and old.segments == (b"x",) * 6 and old.height == 100

    class Backend:
        name, lmbda, fingerprint, channels, fixed_size = "m", .01, None, 3, None
        string_format = 1
    with pytest.raises(container.ContainerError, match="coder format 4 .portable-range."):
        photo_codec.check_model(container.unpack(data), Backend())
    photo_codec.check_model(old, Backend())             # unknown format: no claim to check


def test_container_errors_are_clear():
    data = _file()
    with pytest.raises(container.ContainerError, match="not an rdpipe file"):
        container.unpack(b"\x89PNG" + data[4:])
    future = data[:4] + bytes([container.VERSION + 1]) + data[5:]
    with pytest.raises(container.ContainerError, match="newer than this rdpipe"):
        container.unpack(future)
    for end in range(len(data)):           # every truncation: a ContainerError, nothing else
        with pytest.raises(container.ContainerError):
            container.unpack(data[:end])
    with pytest.raises(container.ContainerError, match="truncated"):
        container.unpack(data[:12])
    with pytest.raises(container.ContainerError, match="after the last tile"):
        container.unpack(data + b"\0")
    rng = np.random.default_rng(0)
    for _ in range(300):                   # arbitrary bytes after the magic never crash
        try:
            container.unpack(container.MAGIC + bytes([1, 0]) + rng.bytes(int(rng.integers(40))))
        except container.ContainerError:
            pass


# ------------------------------------------------------------ a small trained model
@pytest.fixture(scope="module")
def image_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny trained image codecs (different seeds, so different tables): output dirs with
    summary.json, checkpoints/ and saved_model/."""
    from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
    images = [_kodak_crop(96, 128, name) for name in ("kodim01.png", "kodim02.png")]
    models = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"lmbda_0.01_seed{seed}")
        config = ImageTrainConfig(lmbda=.01, filters=8, patch_size=32, batch_size=2,
                                  steps_per_epoch=4, epochs=1, seed=seed, verbose=0)
        train_image_codec(config, out, images=images)
        models.append(out)
    return tuple(models)


def test_tiled_round_trip_above_the_tile_size(image_models, tmp_path):
    from codec.saved_codec import SavedCodec
    codec = SavedCodec(image_models[0])
    image = _kodak_crop(100, 150)
    whole, _ = photo_codec.encode_image(codec, image)
    tiled, bits = photo_codec.encode_image(codec, image, tile=64, overlap=32)
    header = container.unpack(tiled)
    assert (header.tile, header.overlap, len(header.segments)) == (64, 32, 6) and bits > 0
    assert header.coded_boxes[0] == (0, 0, 80, 80)
    assert header.coded_boxes[4] == (48, 48, 100, 144)
    assert container.unpack(whole).tile == 0
    decoded, _ = photo_codec.decode_file(codec, tiled)
    assert decoded.shape == image.shape
    # Outside the shared bands a tile decodes exactly as its coded box alone; inside them the
    # decoder cross-fades two tiles, so every blended pixel lies between their two values.
    first = codec.decompress(codec.compress(image[None, :80, :80])[0])[0]
    np.testing.assert_array_equal(decoded[:48, :48], first[:48, :48])
    second = codec.decompress(codec.compress(image[None, :80, 48:144])[0])[0]
    band_first, band_second = first[:48, 48:80].astype(int), second[:48, :32].astype(int)
    blended = decoded[:48, 48:80].astype(int)
    assert (blended >= np.minimum(band_first, band_second) - 1).all()
    assert (blended <= np.maximum(band_first, band_second) + 1).all()
    no_overlap, _ = photo_codec.encode_image(codec, image, tile=64, overlap=0)
    assert len(no_overlap) < len(tiled)       # the shared bands cost bits


def test_cli_round_trip_of_photos_with_metrics(image_models, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(_kodak_crop()).save(photos / "colour.png")
    Image.fromarray(_kodak_crop()).convert("L").save(photos / "sub" / "grey.jpg")
    rgba = np.dstack([_kodak_crop(), np.full((96, 128), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(photos / "sub" / "alpha.webp", lossless=True)
    model = str(image_models[0])
    assert main(["compress", str(photos), "--model", model, "--metrics",
                 "--output-dir", str(tmp_path / "bin"), "--tile", "64"]) == 0
    captured = capsys.readouterr()
    assert "colour.bin" in captured.out and "sub/grey.bin" in captured.out
    assert "3 images" in captured.out and "PSNR" in captured.out and "bpp" in captured.out
    assert "composited on white" in captured.err
    bins = sorted((tmp_path / "bin").rglob("*.bin"))
    assert len(bins) == 3 and all(container.unpack(b.read_bytes()).tile == 64 for b in bins)
    assert main(["decompress", str(tmp_path / "bin" / "*.bin"), str(tmp_path / "bin" / "sub"),
                 "--model", model, "--output-dir", str(tmp_path / "png")]) == 0
    decoded = np.asarray(Image.open(tmp_path / "png" / "colour.png"))
    # The CLI writes and reads exactly what the library does on the same bytes.
    from codec.saved_codec import SavedCodec
    library = SavedCodec(image_models[0])
    data = (tmp_path / "bin" / "colour.bin").read_bytes()
    assert data == photo_codec.encode_image(library, _kodak_crop(), tile=64)[0]
    np.testing.assert_array_equal(decoded, photo_codec.decode_file(library, data)[0])
    assert decoded.shape == (96, 128, 3)
    assert main(["decompress", str(bins[0]), "--model", model, "--format", "webp",
                 "--output-dir", str(tmp_path / "prev")]) == 0
    assert (tmp_path / "prev" / f"{bins[0].stem}.webp").is_file()
    # The header names the model: without --model, a model outside the zoo is a clear error.
    assert main(["decompress", str(bins[0]), "--output-dir", str(tmp_path / "x")]) == 2
    assert "not in the zoo" in capsys.readouterr().err


def test_decoding_with_another_model_names_both(image_models, tmp_path, capsys):
    Image.fromarray(_kodak_crop()).save(tmp_path / "photo.png")
    first, second = map(str, image_models)
    assert main(["compress", str(tmp_path / "photo.png"), "--model", first,
                 "--output-dir", str(tmp_path / "bin")]) == 0
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "bin" / "photo.bin"), "--model", second,
                 "--output-dir", str(tmp_path / "png")]) == 2
    error = capsys.readouterr().err
    assert f"written by model {Path(first).name}" in error
    assert f"decoding it is {Path(second).name}" in error and "tables" in error


def test_client_round_trip_follows_the_model_signature(image_models, tiny_model, tmp_path,
                                                       test_digits, capsys):
    """`rdpipe client compress|decompress` against `rdpipe serve`'s server: an RGB any-size
    image model (tiled) and the greyscale 28×28 MNIST model; client files decode locally."""
    from serving.models import ModelRegistry
    from serving.server import ModelServer, ServerOptions
    base = tmp_path / "models"
    shutil.copytree(image_models[0] / "saved_model", base / "images_l0.01" / "1")
    shutil.copytree(tiny_model / "saved_model", base / "mnist_l500" / "1")
    registry = ModelRegistry(base)
    registry.refresh()
    server = ModelServer(registry, ServerOptions(port=0, rest_port=0)).start()
    try:
        target = f"127.0.0.1:{server.port}"
        Image.fromarray(_kodak_crop()).convert("L").save(tmp_path / "grey.png")
        assert main(["client", "compress", str(tmp_path / "grey.png"), "--server", target,
                     "--model", "images_l0.01", "--tile", "64", "--metrics",
                     "--output-dir", str(tmp_path / "bin")]) == 0
        assert "PSNR" in capsys.readouterr().out
        data = (tmp_path / "bin" / "grey.bin").read_bytes()
        header = container.unpack(data)
        assert (header.model, header.channels, header.tile) == ("images_l0.01", 3, 64)
        # The served model writes the same tiles as the library on the same pixels.
        from codec.saved_codec import SavedCodec
        grey, _ = _load(tmp_path / "grey.png")
        local_file = photo_codec.encode_image(SavedCodec(image_models[0]), grey, tile=64)[0]
        assert container.unpack(local_file).segments == header.segments
        assert main(["decompress", str(tmp_path / "bin" / "grey.bin"), "--model",
                     str(image_models[0]), "--output-dir", str(tmp_path / "local")]) == 0
        assert main(["client", "decompress", str(tmp_path / "bin" / "grey.bin"), "--server",
                     target, "--model", "images_l0.01", "--output-dir",
                     str(tmp_path / "served")]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "local" / "grey.png")),
                                      np.asarray(Image.open(tmp_path / "served" / "grey.png")))
        Image.fromarray(test_digits[0][0, ..., 0]).convert("RGB").save(tmp_path / "digit.png")
        assert main(["client", "compress", str(tmp_path / "digit.png"), "--server", target,
                     "--model", "mnist_l500", "--output-dir", str(tmp_path / "mnist")]) == 0
        captured = capsys.readouterr()
        assert "colour image converted to greyscale" in captured.err
        data = (tmp_path / "mnist" / "digit.bin").read_bytes()
        payload = len(container.unpack(data).segments[0])
        assert (f"1 image: {len(data)} bytes, {8 * len(data) / 784:.3f} bpp in files, of which "
                f"{len(data) - payload} bytes container headers; payload {8 * payload:.1f} "
                "bits/image") in captured.out
        assert main(["decompress", str(tmp_path / "mnist" / "digit.bin"), "--model",
                     str(tiny_model), "--output-dir", str(tmp_path / "mnist")]) == 0
        digit = np.asarray(Image.open(tmp_path / "mnist" / "digit.png"))
        mnist = SavedCodec(tiny_model)
        np.testing.assert_array_equal(
            digit, mnist.decompress(mnist.compress(test_digits[0][:1])[0])[0, ..., 0])
    finally:
        server.stop()


# ------------------------------------------------------------------------ the zoo
def test_zoo_build_writes_cards_and_refuses_oversize(image_models, tmp_path, monkeypatch):
    from codec import zoo
    from codec.saved_codec import SavedCodec
    models = tmp_path / "models"
    shutil.copytree(image_models[0], models / "lmbda_0.01")
    point = {"parameter": "lmbda_0.01", "bpp": .5, "psnr": 28., "ms_ssim": .95,
             "encode_seconds": .1, "decode_seconds": .3}
    report = tmp_path / "kodak.json"
    report.write_text(json.dumps({"rdpipe": [point], "bd_rate_psnr": {"jpeg": -2.5},
                                  "training": [{"model": "lmbda_0.01", "lmbda": .01,
                                                "steps": 4, "patch_size": 32,
                                                "batch_size": 2, "filters": 8,
                                                "learning_rate": 2e-4}]}))
    target = tmp_path / "zoo"
    cards = zoo.build_zoo(models, report, target, progress=lambda line: None)
    assert [c["name"] for c in cards] == ["bls2017-q1"]
    codec = SavedCodec(zoo.resolve_model("0.01", target))
    assert codec.name == "bls2017-q1" and codec.lmbda == pytest.approx(.01)
    assert codec.fingerprint.hex() == cards[0]["tables_fingerprint"]
    assert "λ = 0.01" in (target / "bls2017-q1" / "card.md").read_text()
    monkeypatch.setattr(zoo, "MAX_ZOO_BYTES", 1000)
    with pytest.raises(zoo.ZooError, match="above the"):
        zoo.build_zoo(models, report, target, progress=lambda line: None)
    assert (target / "bls2017-q1" / "card.json").is_file()     # the old zoo is kept
    with pytest.raises(zoo.ZooError, match="bls2017-q1"):
        zoo.resolve_model("bls2017-q9", target)
    layout = tmp_path / "serving"
    assert zoo.serving_layout(layout, target) == ["bls2017-q1"]
    assert (layout / "bls2017-q1" / "1" / "saved_model.pb").is_file()


def test_zoo_is_replaced_only_by_a_curve_better_at_every_point(image_models, tmp_path):
    from codec import zoo
    old = [(.14, 25.4), (.26, 27.1), (.41, 28.2), (.61, 29.0)]
    assert zoo.worse_points([(.2, 27.0), (.5, 29.5), (.9, 31.0), (.1, 24.0)], old) == []
    assert zoo.worse_points([(.3, 27.0), (.8, 28.5)], old) == [(.3, 27.0), (.8, 28.5)]
    models = tmp_path / "models"
    shutil.copytree(image_models[0], models / "q1_l0.01")
    report = tmp_path / "kodak.json"
    point = {"parameter": "q1_l0.01", "bpp": .5, "psnr": 20., "ms_ssim": .9,
             "encode_seconds": .1, "decode_seconds": .3}
    report.write_text(json.dumps({"rdpipe": [point], "training": [
        {"model": "q1_l0.01", "lmbda": .01, "steps": 4, "patch_size": 32, "batch_size": 2,
         "filters": 8, "learning_rate": 2e-4}]}))
    current = tmp_path / "zoo"
    shutil.copytree(zoo.ZOO_DIR, current)
    with pytest.raises(zoo.ZooError, match="0.500 bpp / 20.00 dB"):
        zoo.build_zoo(models, report, current, progress=lambda line: None)
    assert sorted(p.name for p in current.iterdir() if p.is_dir()) == sorted(
        c["name"] for c in zoo.cards())
    cards = zoo.build_zoo(models, report, current, progress=lambda line: None, force=True)
    assert [c["name"] for c in cards] == ["bls2017-q1"]


def test_zoo_gains_a_family_beside_the_others_and_the_better_one_becomes_default(
        image_models, tmp_path):
    """Issue 22: a second family's ladder joins the zoo (the first stays); it becomes the
    default of `--quality` / `--target-bpp` / a bare λ only if it beats the default's curve."""
    from codec import zoo
    models = tmp_path / "models"
    shutil.copytree(image_models[0], models / "q1_l0.01")

    def report(family, psnr):
        path = tmp_path / f"{family}-{psnr}.json"
        path.write_text(json.dumps({"family": family, "rdpipe": [
            {"parameter": "q1_l0.01", "bpp": .5, "psnr": psnr, "ms_ssim": .9,
             "encode_seconds": .1, "decode_seconds": .3}], "training": [
            {"model": "q1_l0.01", "lmbda": .01, "steps": 4, "patch_size": 32, "batch_size": 2,
             "filters": 8, "learning_rate": 2e-4}]}))
        return path
    target = tmp_path / "zoo"
    zoo.build_zoo(models, report("bls2017", 28.), target, progress=lambda line: None)
    assert zoo.default_family(target) == "bls2017"
    zoo.build_zoo(models, report("mbt2018-mean", 27.), target, progress=lambda line: None)
    assert zoo.families(target) == ["bls2017", "mbt2018-mean"]
    assert zoo.default_family(target) == "bls2017"              # worse: not the default
    assert zoo.resolve_model("0.01", target).name == "bls2017-q1"
    zoo.build_zoo(models, report("mbt2018-mean", 29.), target, progress=lambda line: None)
    assert zoo.default_family(target) == "mbt2018-mean"         # better everywhere
    assert zoo.resolve_model("0.01", target).name == "mbt2018-mean-q1"
    assert (target / "bls2017-q1" / "card.json").is_file()
    assert [c["family"] for c in zoo.cards(target)] == ["bls2017", "mbt2018-mean"]


def test_shipped_zoo_lists_and_codes_a_photo(tmp_path, capsys):
    from codec import zoo
    cards = zoo.cards()
    assert len(cards) >= 4 and cards[0]["name"] == "bls2017-q1"
    total = sum(p.stat().st_size for p in zoo.ZOO_DIR.rglob("*") if p.is_file())
    assert total <= zoo.MAX_ZOO_BYTES
    assert main(["zoo", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(card["name"] in listing for card in cards)
    Image.fromarray(_kodak_crop(128, 192, "kodim05.png")).save(tmp_path / "photo.png")
    assert main(["compress", str(tmp_path / "photo.png"), "--model", "bls2017-q4",
                 "--metrics", "--output-dir", str(tmp_path)]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if "photo.bin" in line][0]
    assert float(row.split()[4]) > 24      # PSNR of the round trip, dB
    assert main(["decompress", str(tmp_path / "photo.bin"), "--output-dir",
                 str(tmp_path)]) == 0     # the model named in the file, from the zoo
    assert np.asarray(Image.open(tmp_path / "photo.png")).shape == (128, 192, 3)


def test_target_bpp_picks_the_highest_quality_whose_file_fits(tmp_path, capsys):
    """`--target-bpp` (issue 22): per photo, the best zoo model whose actual file is ≤ X bpp,
    by bisection; `--quality K` names the K-th model; below the lowest rate: q1 and a warning."""
    from codec import zoo
    from codec.saved_codec import SavedCodec
    names = [card["name"] for card in zoo.cards() if card["family"] == "bls2017"]
    image = _kodak_crop(96, 128, "kodim05.png")
    Image.fromarray(image).save(tmp_path / "photo.png")
    ladder = photo_codec.ModelLadder(names, lambda name: SavedCodec(zoo.resolve_model(name)))
    sizes = [8 * len(photo_codec.encode_image(ladder[i], image)[0]) / image[..., 0].size
             for i in range(len(names))]
    assert sizes == sorted(sizes)                       # rate grows with quality
    target = (sizes[1] + sizes[2]) / 2                  # q2 fits, q3 does not
    choice = photo_codec.encode_at_target(ladder, image, target)
    assert (choice.model, choice.met) == (names[1], True)
    assert choice.tried <= int(np.ceil(np.log2(len(names) + 1)))
    assert choice.data == photo_codec.encode_image(ladder[1], image)[0]
    assert photo_codec.encode_at_target(ladder, image, sizes[-1]).model == names[-1]
    assert main(["compress", str(tmp_path / "photo.png"), "--target-bpp", f"{target:.4f}",
                 "--output-dir", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if "photo.bin" in line][0]
    assert row.split()[-1] == names[1] and float(row.split()[3]) <= target
    assert container.unpack((tmp_path / "t" / "photo.bin").read_bytes()).model == names[1]
    assert main(["compress", str(tmp_path / "photo.png"), "--target-bpp", "0.001",
                 "--output-dir", str(tmp_path / "low")]) == 0
    assert "even the lowest quality (bls2017-q1)" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "photo.png"), "--quality", "3",
                 "--output-dir", str(tmp_path / "q")]) == 0
    assert container.unpack((tmp_path / "q" / "photo.bin").read_bytes()).model == names[2]
    assert main(["compress", str(tmp_path / "photo.png"), "--quality", "99",
                 "--output-dir", str(tmp_path / "q")]) != 0
    assert f"qualities 1–{len(names)}" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "photo.png"), "--target-bpp", "-1",
                 "--output-dir", str(tmp_path / "q")]) != 0
