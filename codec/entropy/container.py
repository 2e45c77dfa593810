"""The `.bin` file container: a small self-describing header around signature strings.

A model's `compress` signature returns raw strings (schemas/bitstream.md): the serving contract,
unchanged. Files written by `rdpipe compress` / `rdpipe client compress` wrap them in a header
that names the model (name, λ, fingerprint of its entropy tables), the image size and, for big
photos, the tile grid; one raw string per tile follows. Layout: schemas/container.md.

Pure Python (no TensorFlow): a header is parsed and checked before any model runs, so a file from
another model, a truncated file or a non-rdpipe file fails with a clear `ContainerError`.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from codec.entropy.byte_reader import ByteReader, varint

__all__ = ["MAGIC", "VERSION", "MAX_PIXELS", "ContainerError", "Header", "pack", "unpack",
           "is_container", "tile_boxes", "expand_box", "describe_model", "UNKNOWN_FINGERPRINT"]

MAGIC = b"RDPC"
VERSION = 2                 # 2 added the string format byte; version 1 files still read
# 8192 × 8192: what a header may make a decoder allocate (uint8 output: 64 MiB per channel).
MAX_PIXELS = 1 << 26
MAX_DIMENSION = 65535
MAX_NAME_BYTES = 64
MIN_TILE, MAX_TILE = 16, 4096    # a tile is one signature call (the signatures' own limit: 4096²)
MAX_OVERLAP = 256
FINGERPRINT_BYTES = 8
UNKNOWN_FINGERPRINT = bytes(FINGERPRINT_BYTES)   # written when the model's tables are unknown


class ContainerError(ValueError):
    """A `.bin` file that is not a (complete, supported) rdpipe container, or one written by
    another model than the one decoding it."""


@dataclass(frozen=True)
class Header:
    """What a container says about its content.

    model: the writing model's name (e.g. `bls2017-q3`, `lmbda_0.01`, `images_l0.01/3`);
    lmbda: its λ (NaN if unknown); fingerprint: 8 bytes of SHA-256 over its entropy tables
    (`UNKNOWN_FINGERPRINT` if unknown); height, width, channels: the image in pixels;
    tile: tile edge in pixels (0: the image is one tile); overlap: pixels two neighbouring
    tiles share (each tile is coded `overlap / 2` pixels beyond its core on every interior
    side; the decoder cross-fades the shared band, so no seam shows); string_format: the
    coder format id of the segments (`codec.entropy.coders.MODEL_FORMAT_IDS`; 4 = headerless
    `portable-range` strings), 0 when unknown or named by each string's own first byte
    (version 1 files).
    """
    model: str
    lmbda: float
    fingerprint: bytes
    height: int
    width: int
    channels: int
    tile: int = 0
    overlap: int = 0
    segments: tuple = field(default=(), compare=False, repr=False)
    string_format: int = 0

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Core boxes of the tiles, row-major."""
        return tile_boxes(self.height, self.width, self.tile)

    @property
    def coded_boxes(self) -> list[tuple[int, int, int, int]]:
        """What each tile's string codes: its core grown by `overlap / 2` on interior sides."""
        return [expand_box(box, self.overlap // 2, self.height, self.width)
                for box in self.boxes]

    @property
    def model_label(self) -> str:
        return describe_model(self.model, self.lmbda, self.fingerprint)


def describe_model(name: str, lmbda: float, fingerprint: bytes) -> str:
    """"bls2017-q3 (λ=0.01, tables 1a2b3c4d5e6f7a8b)"."""
    parts = [] if math.isnan(lmbda) else [f"λ={lmbda:g}"]
    if fingerprint != UNKNOWN_FINGERPRINT:
        parts.append(f"tables {fingerprint.hex()}")
    return name + (f" ({', '.join(parts)})" if parts else "")


def expand_box(box: tuple[int, int, int, int], margin: int, height: int,
               width: int) -> tuple[int, int, int, int]:
    top, left, bottom, right = box
    return (max(top - margin, 0), max(left - margin, 0), min(bottom + margin, height),
            min(right + margin, width))


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Row-major tiles `(top, left, bottom, right)` of edge `tile` (the last row/column may be
    smaller); `tile = 0`: the whole image."""
    if tile <= 0:
        return [(0, 0, height, width)]
    return [(top, left, min(top + tile, height), min(left + tile, width))
            for top in range(0, height, tile) for left in range(0, width, tile)]


def pack(header: Header, segments: list[bytes]) -> bytes:
    """Header + one raw signature string per tile (row-major) → file bytes."""
    name = header.model.encode("utf-8")[:MAX_NAME_BYTES]
    if len(header.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
    if len(segments) != len(header.boxes):
        raise ValueError(f"{len(segments)} segments for {len(header.boxes)} tiles")
    out = bytearray(MAGIC)
    out += bytes([VERSION, 0, len(name)]) + name
    if not 0 <= header.string_format <= 255:
        raise ValueError(f"string format id must be a byte, got {header.string_format}")
    out += struct.pack(">f", header.lmbda) + header.fingerprint + bytes([header.string_format])
    for value in (header.height, header.width, header.channels, header.tile, header.overlap,
                  len(segments)):
        out += varint(value)
    for segment in segments:
        out += varint(len(segment)) + segment
    return bytes(out)


def is_container(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def unpack(data: bytes) -> Header:
    """File bytes → `Header` with `segments` (raw signature strings, one per tile).

    Raises `ContainerError`: not an rdpipe file (wrong magic), a newer container version,
    truncated or inconsistent header, trailing bytes."""
    if not is_container(data):
        start = data[:4]
        raise ContainerError(f"not an rdpipe file: starts with {start!r}, not {MAGIC!r} "
                             "(a raw signature string from the serving API decodes with --raw)")
    reader = ByteReader(data, ContainerError, "rdpipe file")
    reader.take(len(MAGIC), "magic")
    version, flags, name_length = reader.take(3, "header")
    if version > VERSION:
        raise ContainerError(f"container version {version} is newer than this rdpipe reads "
                             f"(≤ {VERSION}): upgrade rdpipe to decode it")
    if version < 1 or flags:
        raise ContainerError(f"corrupt rdpipe file: version {version}, flags {flags:#04x}")
    try:
        model = reader.take(name_length, "model name").decode("utf-8")
    except UnicodeDecodeError:
        raise ContainerError("corrupt rdpipe file: model name is not UTF-8") from None
    (lmbda,) = struct.unpack(">f", reader.take(4, "λ"))
    fingerprint = reader.take(FINGERPRINT_BYTES, "fingerprint")
    string_format = reader.take(1, "string format")[0] if version >= 2 else 0
    height = reader.varint("height", MAX_DIMENSION)
    width = reader.varint("width", MAX_DIMENSION)
    channels = reader.varint("channels", 4)
    tile = reader.varint("tile size", MAX_TILE)
    overlap = reader.varint("tile overlap", MAX_OVERLAP)
    count = reader.varint("tile count", MAX_PIXELS)
    if min(height, width, channels) < 1 or height * width > MAX_PIXELS:
        raise ContainerError(f"corrupt rdpipe file: image {height}×{width}×{channels} "
                             f"(1 ≤ height·width ≤ {MAX_PIXELS})")
    if tile and tile < MIN_TILE:
        raise ContainerError(f"corrupt rdpipe file: tile size {tile} < {MIN_TILE}")
    if overlap % 2 or (overlap and 2 * overlap > tile):
        raise ContainerError(f"corrupt rdpipe file: tile overlap {overlap} (even, ≤ tile/2)")
    expected = len(tile_boxes(height, width, tile))
    if count != expected:
        raise ContainerError(f"corrupt rdpipe file: {count} tiles where a {height}×{width} "
                             f"image in {tile or 'one'}-pixel tiles has {expected}")
    segments = tuple(reader.take(reader.varint(f"tile {i} length", len(data)), f"tile {i}")
                     for i in range(count))
    if reader.at != len(data):
        raise ContainerError(f"corrupt rdpipe file: {len(data) - reader.at} bytes after the "
                             "last tile")
    # λ travels as float32; 7 significant digits give back the decimal it was written from
    return Header(model, float(f"{lmbda:.7g}"), fingerprint, height, width, channels, tile,
                  overlap, segments, string_format)
