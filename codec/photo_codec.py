"""Whole images ↔ `.bin` files: tiling, the container header and the model check, for any
codec backend — a local SavedModel (`codec.saved_codec.SavedCodec`) or a model behind a server
(`cli.served_codec.ServedCodec`); both speak the same signatures.

Images larger than `tile` pixels on a side are coded as independent tiles (one signature call
each, row-major), so memory stays bounded by one tile's transforms whatever the photo's size
(benchmarks/bench_big_photo.py measures it); the grid is in the container header.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, Sequence

import numpy as np

from codec.entropy.container import (MAX_PIXELS, MAX_TILE, MIN_TILE, UNKNOWN_FINGERPRINT,
                                     ContainerError, Header, describe_model, pack, unpack)

__all__ = ["CodecBackend", "DEFAULT_TILE", "encode_image", "encode_fixed_size", "decode_file",
           "decode_fixed_size", "check_model", "ContainerError", "ModelLadder", "TargetChoice",
           "encode_at_target"]

# 2048² tiles: a 64 MP photo is 16 calls; one tile's transforms peak near 2 GiB of float32
# activations (the first analysis layer: 1024² × 128 channels), measured in bench_big_photo.
DEFAULT_TILE = 2048
# Pixels two neighbouring tiles share and cross-fade: hides the seams independent tiles leave
# (visible steps in flat regions, 0.7 dB lower PSNR within 8 px of a seam at 48 MP without it).
DEFAULT_OVERLAP = 32


class CodecBackend(Protocol):
    """What the file layer needs from a model: its identity and its two signatures."""
    name: str
    lmbda: float
    fingerprint: bytes
    channels: int
    fixed_size: tuple[int, int] | None

    def compress(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """uint8 `[B, H, W, C]` → (raw strings, information content in bits per image)."""

    def decompress(self, strings: list[bytes]) -> np.ndarray:
        """Raw strings (one image size) → uint8 `[B, H, W, C]`; raises on corrupt strings."""


def _header(backend: CodecBackend, height: int, width: int, tile: int,
            overlap: int = 0) -> Header:
    return Header(backend.name, backend.lmbda, backend.fingerprint or UNKNOWN_FINGERPRINT,
                  height, width, backend.channels, tile, overlap,
                  string_format=getattr(backend, "string_format", 0))


def encode_image(backend: CodecBackend, image: np.ndarray, tile: int = DEFAULT_TILE,
                 overlap: int = DEFAULT_OVERLAP) -> tuple[bytes, float]:
    """uint8 `[H, W, C]` → (file bytes, information content in bits). Images with a side
    above `tile` pixels are split into `tile`² tiles, each coded independently with `overlap / 2`
    pixels of its neighbours, which the decoder cross-fades (no visible seams; 2–2.5 % more bits
    at the defaults, benchmarks/results/big_photo.md)."""
    height, width, channels = image.shape
    if channels != backend.channels:
        raise ValueError(f"image has {channels} channels, the model codes {backend.channels}")
    if height * width > MAX_PIXELS:
        raise ValueError(f"{height}×{width} image: above the {MAX_PIXELS:,}-pixel (64 MP) limit "
                         "of rdpipe files")
    if backend.fixed_size is not None:
        return encode_fixed_size(backend, image[None])[0]
    if not MIN_TILE <= tile <= MAX_TILE:
        raise ValueError(f"tile size must be in [{MIN_TILE}, {MAX_TILE}], got {tile}")
    if overlap % 2 or not 0 <= 2 * overlap <= tile:
        raise ValueError(f"tile overlap must be even and in [0, tile/2], got {overlap}")
    if max(height, width) <= tile:
        tile = overlap = 0
    grid = Header("", float("nan"), UNKNOWN_FINGERPRINT, height, width, channels, tile, overlap)
    segments, bits = [], 0.
    for top, left, bottom, right in grid.coded_boxes:
        strings, information = backend.compress(image[None, top:bottom, left:right])
        segments.append(strings[0])
        bits += float(information[0])
    # The model's identity last: a served model reports its fingerprint with its first call.
    return pack(_header(backend, height, width, tile, overlap), segments), bits


def encode_fixed_size(backend: CodecBackend,
                      images: np.ndarray) -> list[tuple[bytes, float]]:
    """`[B, H, W, C]` images of a fixed-size model (MNIST) in one call → (file, bits) each."""
    expected = tuple(backend.fixed_size) + (backend.channels,)
    if images.shape[1:] != expected:
        raise ValueError(f"this model codes {expected[0]}×{expected[1]} images; got "
                         f"{images.shape[1]}×{images.shape[2]}")
    strings, bits = backend.compress(images)
    height, width = backend.fixed_size
    return [(pack(_header(backend, height, width, 0), [string]), float(b))
            for string, b in zip(strings, bits)]


class ModelLadder:
    """The models of one family, lowest quality (fewest bits) first — e.g. the zoo's
    `bls2017-q1 … qN`, local or served — each loaded on first use by `load(name)`."""

    def __init__(self, names: Sequence[str], load: Callable[[str], CodecBackend]):
        if not names:
            raise ValueError("a model ladder needs at least one model")
        self.names = list(names)
        self._load = load
        self._loaded: dict[int, CodecBackend] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> CodecBackend:
        if index not in self._loaded:
            self._loaded[index] = self._load(self.names[index])
        return self._loaded[index]

    @property
    def channels(self) -> int:
        return self[0].channels

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        return self[0].fixed_size


class TargetChoice(NamedTuple):
    """What `encode_at_target` wrote: the file, its information content (bits), the ladder
    index and name of the model, whether the file meets the target, and the models tried."""
    data: bytes
    bits: float
    index: int
    model: str
    met: bool
    tried: int


def encode_at_target(ladder: ModelLadder, image: np.ndarray, target_bpp: float,
                     tile: int = DEFAULT_TILE) -> TargetChoice:
    """The file of the highest-quality model of `ladder` whose actual size (file bytes,
    container header included) is ≤ `target_bpp` bits per pixel, found by bisection over
    the ladder (⌈log₂(N + 1)⌉ encodes; rate grows with quality, as `tfci.py --target_bpp`
    assumes). If even the lowest quality is above the target, its file (`met=False`)."""
    if not target_bpp > 0:
        raise ValueError(f"target bits per pixel must be > 0, got {target_bpp}")
    pixels = image.shape[0] * image.shape[1]
    coded: dict[int, tuple[bytes, float]] = {}
    low, high, best = 0, len(ladder) - 1, None
    while low <= high:
        middle = (low + high) // 2
        coded[middle] = encode_image(ladder[middle], image, tile)
        if 8 * len(coded[middle][0]) / pixels <= target_bpp:
            best, low = middle, middle + 1
        else:
            high = middle - 1
    index = 0 if best is None else best      # bisection tried index 0 when nothing fits
    data, bits = coded[index]
    return TargetChoice(data, bits, index, ladder.names[index], best is not None, len(coded))


def check_model(header: Header, backend: CodecBackend) -> None:
    """Refuses a file written by another model (different entropy tables), naming both."""
    mine = backend.fingerprint or UNKNOWN_FINGERPRINT
    if UNKNOWN_FINGERPRINT not in (header.fingerprint, mine) and header.fingerprint != mine:
        raise ContainerError(
            f"written by model {header.model_label}, but the model decoding it is "
            f"{describe_model(backend.name, backend.lmbda, mine)}: decode it with "
            f"--model {header.model}")
    theirs, ours = header.string_format, getattr(backend, "string_format", 0)
    if theirs and ours and theirs != ours:
        from codec.entropy.coders import MODEL_FORMAT_IDS  # pylint: disable=import-outside-toplevel
        raise ContainerError(
            f"strings of coder format {theirs} ({MODEL_FORMAT_IDS.get(theirs, 'unknown')}), but "
            f"model {backend.name} writes format {ours} ({MODEL_FORMAT_IDS.get(ours, 'unknown')})")
    if header.channels != backend.channels:
        raise ContainerError(f"a {header.channels}-channel image, but model {backend.name} "
                             f"codes {backend.channels} channels")
    if backend.fixed_size is not None and (header.height, header.width) != backend.fixed_size:
        raise ContainerError(f"a {header.height}×{header.width} image, but model "
                             f"{backend.name} codes {backend.fixed_size[0]}×"
                             f"{backend.fixed_size[1]} images")


def decode_file(backend: CodecBackend, data: bytes) -> tuple[np.ndarray, Header]:
    """File bytes → (uint8 `[H, W, C]` image, header). Raises `ContainerError` for files that
    are not rdpipe files or come from another model, the backend's error for corrupt tiles.
    Memory: the output image plus one tile (its float32 weights and blend) at a time."""
    header = unpack(data)
    check_model(header, backend)
    image = np.zeros((header.height, header.width, header.channels), np.uint8)
    half = header.overlap // 2
    for core, box, segment in zip(header.boxes, header.coded_boxes, header.segments):
        top, left, bottom, right = box
        decoded = backend.decompress([segment])[0]
        if decoded.shape != (bottom - top, right - left, header.channels):
            raise ContainerError(f"corrupt rdpipe file: a tile decodes to {decoded.shape[:2]}, "
                                 f"the header says {(bottom - top, right - left)}")
        if not half:
            image[top:bottom, left:right] = decoded
            continue
        # Tiles arrive row-major: the bands above and left of this tile's core already hold
        # the neighbours' pixels; fade from theirs to ours across each 2·half-pixel band.
        weight = (_ramp(top, bottom, core[0], half)[:, None]
                  * _ramp(left, right, core[1], half)[None, :])[..., None]
        region = image[top:bottom, left:right].astype(np.float32)
        image[top:bottom, left:right] = np.round(
            weight * decoded + (1 - weight) * region).astype(np.uint8)
    return image, header


def _ramp(start: int, stop: int, core_start: int, half: int) -> np.ndarray:
    """Weights of this tile along one axis over `[start, stop)`: 0 → 1 across the band
    `[core_start − half, core_start + half)` shared with the previous tile, 1 after it."""
    position = np.arange(start, stop, dtype=np.float32)
    if core_start == 0:
        return np.ones_like(position)
    return np.clip((position - (core_start - half) + .5) / (2 * half), 0, 1)


def decode_fixed_size(backend: CodecBackend, files: Sequence[bytes]) -> np.ndarray:
    """Files of a fixed-size model (MNIST digits) decoded in one call → `[B, H, W, C]`."""
    headers = [unpack(data) for data in files]
    for header in headers:
        check_model(header, backend)
    return backend.decompress([header.segments[0] for header in headers])
