"""Writes the golden artefacts of today's formats (run once per format version; never in tests):

- `bls2017-q1_kodim23.bin`: an rdpipe container file (schemas/container.md, version 1) of a
  64×96 crop of Kodak 23, coded by the shipped zoo model `bls2017-q1`;
- `bls2017-q1_kodim23.string`: the raw `compress` signature string inside it (bitstream
  version 1, portable coder: schemas/bitstream.md);
- `bls2017-q1_kodim23.png`: what `decompress` returned for it when written;
- `manifest.json`: sizes, SHA-256 of every file and of the decoded pixels, the format versions.

MNIST (`--family mnist`; the model itself, 10 MB, is not committed — these pin the bitstream):

- `mnist_tables.npz`: the integer CDF tables of a tiny MNIST model (λ 2000; 50 channels, 12-bit), its
  quantization offsets, 8 test digits' symbols and the raw `compress` strings of those digits;
- `mnist_digit0.bin`: the container file `rdpipe compress` wrote for the first digit.

Multi-lane portable strings of bitstream format 1 (`--family lanes`), pinned before format 2
replaced them in new exports (schemas/bitstream.md):

- `lanes_v1.npz`: the raw format-1 strings (16 and 64 lanes) that the zoo model `bls2017-q1`
  wrote for a 256×256 and a 512×768 crop of Kodak 23, and their symbols; the tables are the
  zoo model's own.

rANS v2 strings of the lane counts before 2026-12-02 (`--family lanes-v2`; written with the code
of git fd0c9bd, see `write_lanes_v2`):

- `lanes_v2.npz`: one-lane (12,288 symbols) and 8-lane (16,384) format-3 strings and their
  symbols, under the tables of `bls2017-q1`.

Headerless `portable-range` strings (`--family mnist-range`, MNIST's coder since 2026-12):

- `mnist_range.npz`: the strings of the 8 golden digits' symbols under `mnist_tables.npz`;
- `mnist_range_digit0.bin`: a version-2 container holding the first (string format byte 4).

The zoo model that wrote the image and lane goldens (`bls2017-q1` of 2026-11) is kept in
`models/bls2017-q1-2026-11/` since the zoo moved on to a new ladder (2026-12-02): the same
files as in the zoo's history, so the repository stores them once.

tests/test_golden.py decodes them with today's code. A format change must keep them decoding
(or replace them here, saying why in the README). Run: `.venv/bin/python tests/golden/make_golden.py
[--family bls2017|mnist]` (each family writes only its own files).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"
MODEL = "bls2017-q1"
NAME = f"{MODEL}_kodim23"


def crop() -> np.ndarray:
    """The golden input: rows 200–263, columns 300–395 of Kodak 23 (uint8 RGB)."""
    return np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[200:264, 300:396]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bls2017(manifest: dict) -> None:
    from codec import photo_codec, zoo
    from codec.entropy import container
    from codec.saved_codec import SavedCodec
    codec = SavedCodec(zoo.resolve_model(MODEL))
    image = crop()
    data, _ = photo_codec.encode_image(codec, image)
    string = container.unpack(data).segments[0]
    decoded = codec.decompress([string])[0]
    (HERE / f"{NAME}.bin").write_bytes(data)
    (HERE / f"{NAME}.string").write_bytes(string)
    Image.fromarray(decoded).save(HERE / f"{NAME}.png")
    manifest.update({"model": MODEL, "input": "kodim23.png[200:264, 300:396]",
                     "container_version": data[4], "bitstream_format_byte": f"0x{string[0]:02x}",
                     "decoded_pixels_sha256": sha256(decoded.tobytes())})


def write_mnist(manifest: dict) -> None:
    """Trains a tiny MNIST model (λ 2000, 2 epochs of 8,000 digits), keeps its tables and strings."""
    import tempfile
    import tensorflow as tf
    from codec import photo_codec
    from codec.data.datasets import mnist_arrays
    from codec.models.mnist_train import MnistTrainConfig, train_mnist
    from codec.saved_codec import SavedCodec
    out = Path(tempfile.mkdtemp()) / "mnist_golden"
    config = MnistTrainConfig(lmbda=2000., epochs=2, train_split="train[:8000]",
                              validation_split="test[:200]", verbose=0,
                              data_dir=str(ROOT / ".cache" / "tensorflow_datasets"))
    codec = train_mnist(config, out)["codec"]
    digits, _ = mnist_arrays("test[:8]", data_dir=config.data_dir)
    y = codec.analysis_transform(tf.cast(digits, tf.float32) / 255.)
    tables = codec.entropy_model.tables
    strings = codec.compress(digits)["strings"].numpy()
    np.savez(HERE / "mnist_tables.npz", cdf=tables.cdf.numpy(),
             cdf_offset=tables.cdf_offset.numpy(), cdf_length=tables.cdf_length.numpy(),
             quantization_offset=codec.entropy_model._quantization_offset.numpy(),
             symbols=codec.entropy_model.symbols(y).numpy(),
             string_bytes=np.frombuffer(b"".join(strings), np.uint8),
             string_lengths=np.array([len(s) for s in strings], np.int64))
    data, _ = photo_codec.encode_fixed_size(SavedCodec(out), digits[:1])[0]
    (HERE / "mnist_digit0.bin").write_bytes(data)
    manifest["mnist"] = {"model": "tiny: λ 2000, 2 epochs of train[:8000], not committed",
                         "input": "MNIST test[:8]", "container_version": data[4],
                         "bitstream_format_byte": f"0x{strings[0][0]:02x}",
                         "latent_channels": int(tables.cdf_offset.shape[0])}


def write_lanes(manifest: dict) -> None:
    """Format-1 multi-lane strings written by the zoo model (its baked coder), and their symbols
    as the format-1 decoder of the day read them."""
    import tensorflow as tf
    from codec import zoo
    from codec.entropy import portable_coder
    from codec.models.bls2017 import split_image_shape
    model = tf.saved_model.load(str(Path(zoo.resolve_model(MODEL)) / "saved_model"))
    cdf = tf.convert_to_tensor(model.entropy_model._cdf)
    channels = int(model.entropy_model._cdf_offset.shape[0])
    image = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    arrays = {}
    for name, (rows, cols) in {"lanes16": (256, 256), "lanes64": (512, 768)}.items():
        payload = split_image_shape(model.compress(tf.constant(image[:rows, :cols][None]))[
            "strings"])[0]
        positions = (rows // 16) * (cols // 16)
        symbols, ok = portable_coder.decode(payload, positions, channels, cdf)
        assert ok.numpy().all()
        arrays[f"{name}_string"] = np.frombuffer(payload.numpy()[0], np.uint8)
        arrays[f"{name}_positions"] = np.array(positions, np.int64)
        arrays[f"{name}_symbols"] = symbols.numpy()[0].astype(np.int16)
    np.savez_compressed(HERE / "lanes_v1.npz", **arrays)
    manifest["lanes"] = {"model": MODEL, "input": "kodim23.png[:256, :256] and [:512, :768]",
                         "bitstream_format_byte": f"0x{arrays['lanes16_string'][0]:02x}",
                         "lanes": [16, 64]}


def write_lanes_v2(manifest: dict) -> None:
    """Format-3 (rANS v2) strings as encoders wrote them before 2026-12-02, when the lane count
    was `lanes_log2(n)`: one lane for 12,288 symbols (a hyperprior's z on a Kodak image) and 8
    for 16,384. Written by running this function on the code of that day (git fd0c9bd):
    symbols of the zoo model `bls2017-q1` for two crops of Kodak 23, under its tables."""
    import tensorflow as tf
    from codec import zoo
    from codec.entropy import rans_lanes
    from codec.entropy.coders import PortableRansCoder, channel_tables
    from codec.models.bls2017 import split_image_shape
    model = tf.saved_model.load(str(Path(zoo.resolve_model(MODEL)) / "saved_model"))
    cdf = tf.convert_to_tensor(model.entropy_model._cdf)
    channels = int(model.entropy_model._cdf_offset.shape[0])
    image = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))
    arrays = {}
    for name, (rows, cols) in {"n12288": (128, 192), "n16384": (128, 256)}.items():
        payload = split_image_shape(model.compress(tf.constant(image[:rows, :cols][None]))[
            "strings"])[0]
        positions = (rows // 16) * (cols // 16)
        symbols, ok = PortableRansCoder().decode(payload, positions, channels, cdf)
        assert ok.numpy().all()
        string = rans_lanes.encode(tf.reshape(symbols, [1, -1]),
                                   channel_tables(1, positions, channels), cdf).numpy()[0]
        arrays[f"{name}_string"] = np.frombuffer(string, np.uint8)
        arrays[f"{name}_positions"] = np.array(positions, np.int64)
        arrays[f"{name}_symbols"] = symbols.numpy()[0].astype(np.int16)
    arrays["cdf"] = cdf.numpy()        # the tables travel with the strings
    np.savez_compressed(HERE / "lanes_v2.npz", **arrays)
    manifest["lanes_v2"] = {"model": MODEL, "code": "git fd0c9bd (lane count lanes_log2(n))",
                            "input": "kodim23.png[:128, :192] and [:128, :256]",
                            "lanes": [1 << ((int(arrays[f"{n}_string"][0]) >> 1) & 15)
                                      for n in ("n12288", "n16384")]}


def write_mnist_range(manifest: dict) -> None:
    """The headerless `portable-range` strings (MNIST's coder since 2026-12) of the 8 golden
    digits' symbols under the golden tables (`mnist_tables.npz`), and a version-2 container."""
    import tensorflow as tf
    from codec.entropy import container, range_coder
    tables = dict(np.load(HERE / "mnist_tables.npz"))
    strings = range_coder.encode(tf.constant(tables["symbols"]), tf.constant(tables["cdf"]))
    strings = list(strings.numpy())
    np.savez(HERE / "mnist_range.npz", string_bytes=np.frombuffer(b"".join(strings), np.uint8),
             string_lengths=np.array([len(s) for s in strings], np.int64))
    header = container.Header("mnist_golden", 2000., bytes(8), 28, 28, 1, string_format=4)
    data = container.pack(header, [strings[0]])
    (HERE / "mnist_range_digit0.bin").write_bytes(data)
    manifest["mnist_range"] = {"tables": "mnist_tables.npz", "coder": "portable-range",
                               "format_id": 4, "container_version": data[4],
                               "string_bits": [8 * len(s) for s in strings]}


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("bls2017", "mnist", "lanes", "lanes-v2",
                                             "mnist-range"),
                        default="bls2017")
    args = parser.parse_args(argv)
    path = HERE / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    {"bls2017": write_bls2017, "mnist": write_mnist, "lanes": write_lanes,
     "lanes-v2": write_lanes_v2, "mnist-range": write_mnist_range}[args.family](manifest)
    manifest["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p.read_bytes())}
                         for p in sorted(HERE.iterdir())
                         if p.suffix in (".bin", ".string", ".png", ".npz")}
    manifest["command"] = ".venv/bin/python tests/golden/make_golden.py --family FAMILY"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
