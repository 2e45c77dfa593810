"""Writes the golden artefacts of today's formats (run once per format version; never in tests):

- `bls2017-q1_kodim23.bin`: an rdpipe container file (schemas/container.md, version 1) of a
  64×96 crop of Kodak 23, coded by the shipped zoo model `bls2017-q1`;
- `bls2017-q1_kodim23.string`: the raw `compress` signature string inside it (bitstream
  version 1, portable coder: schemas/bitstream.md);
- `bls2017-q1_kodim23.png`: what `decompress` returned for it when written;
- `manifest.json`: sizes, SHA-256 of every file and of the decoded pixels, the format versions.

tests/test_golden.py decodes them with today's code. A format change must keep them decoding
(or replace them here, saying why in the README). Run: `.venv/bin/python tests/golden/make_golden.py`.
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


def main() -> int:
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
    manifest = {"model": MODEL, "input": "kodim23.png[200:264, 300:396]",
                "container_version": data[4], "bitstream_format_byte": f"0x{string[0]:02x}",
                "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p.read_bytes())}
                          for p in sorted(HERE.glob(f"{NAME}.*"))},
                "decoded_pixels_sha256": sha256(decoded.tobytes()),
                "command": ".venv/bin/python tests/golden/make_golden.py"}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
