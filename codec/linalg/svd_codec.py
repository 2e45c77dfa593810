"""The SVD codec: low-rank factors, quantized and entropy-coded into a real byte string.

Per channel (pixels on the 0–255 scale, centred at 128), the top-r SVD gives balanced factors
`L = U_r √Σ_r` (m×r) and `R = V_r √Σ_r` (n×r), so that `A − 128 ≈ L Rᵀ`. Both are quantized
with one uniform step Δ, `q = round(L / Δ)`, and the reconstruction is `Δ² q_L q_Rᵀ + 128`,
rounded and clipped to uint8. Rate–distortion is set by (rank, Δ): `benchmarks/bench_svd.py`
and `rdpipe eval --codec svd` sweep both and keep the operational R-D front.

Entropy coding uses the project's coders (`portable` by default) with discretized Laplace tables:
every factor column gets its own scale, picked from a fixed log-spaced grid and sent as one byte,
so the tables are rebuilt identically by the decoder from the header alone.

String layout (all integers unsigned LEB128 varints unless noted):
    'S' (0x53) | version (1 byte, = 1) | height | width | channels (1 byte) | rank
    | step index (1 byte: Δ = 2^((i − 128) / 16)) | scale index per column (1 byte each,
    2·channels·rank: L columns of every channel, then R columns) | len(L string) | L string
    | R string
The L / R strings are coder strings (format byte first, see schemas/bitstream.md) of symbols
`[1, m, channels·rank]` and `[1, n, channels·rank]`. Decoding validates every field and raises
`DecodeError` on anything malformed; it never crashes on arbitrary bytes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from codec.entropy.byte_reader import ByteReader, varint
from codec.entropy.coders import DEFAULT_CODER, get_coder
from codec.entropy.entropy_models import DecodeError
from codec.linalg.randomized_svd import truncated_svd

MAGIC, VERSION = 0x53, 1
PRECISION = 12
TAIL_MASS = 2 ** -8
MAX_TABLE_HALF_WIDTH = 1000
_SCALES = 2.0 ** (np.arange(256) / 8.0 - 6.0)        # Laplace scale grid, 2^-6 … 2^25.9
# Decode-bomb limits (a few header bytes must not make the decoder allocate gigabytes):
MAX_PIXELS = 1 << 26               # H·W·C, e.g. 4096×4096×3 fits
MAX_FACTOR_ENTRIES = 1 << 24       # (H + W)·C·rank


def step_from_index(index: int) -> float:
    return float(2.0 ** ((index - 128) / 16.0))


def index_from_step(step: float) -> int:
    index = int(round(16 * math.log2(step) + 128))
    if not 0 <= index <= 255:
        raise ValueError(f"step {step} outside the codable range [2^-8, 2^7.9]")
    return index


def _laplace_cdf_row(scale: float) -> np.ndarray:
    """Precision-12 CDF row `[-12, 0, …, 4096]` of a zero-mean discretized Laplace, symbols
    offset by the table's half width (stored in the row length), plus the escape symbol."""
    half = int(min(math.ceil(scale * math.log(1 / TAIL_MASS)), MAX_TABLE_HALF_WIDTH))
    grid = np.arange(-half, half + 1, dtype=np.float64)
    mass = np.exp(-np.maximum(np.abs(grid) - .5, 0) / scale) - np.exp(-(np.abs(grid) + .5) / scale)
    mass[half] = 1 - math.exp(-.5 / scale)
    pmf = mass / mass.sum() * (1 - TAIL_MASS)
    # Integer frequencies: every symbol ≥ 1, rounding error taken from the largest entry.
    # (Hand-written so the decoder rebuilds bit-identical tables without any op library.)
    total = 1 << PRECISION
    freq = np.maximum(1, np.floor(np.append(pmf, TAIL_MASS) * (total - len(pmf) - 1)).astype(
        np.int64))
    freq[np.argmax(freq)] += total - freq.sum()
    return np.concatenate([[-PRECISION, 0], np.cumsum(freq)]).astype(np.int32)


def _tables(scale_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CDF (flat, coder layout) and per-column half widths for the given scale indices."""
    rows = [_laplace_cdf_row(float(_SCALES[i])) for i in scale_indices]
    halves = np.array([(len(r) - 3) // 2 for r in rows], np.int32)
    return np.concatenate(rows), halves


def _scale_index(column: np.ndarray) -> int:
    """Grid index of the Laplace scale fitted to integers (mean |q|), at least the grid floor."""
    scale = max(float(np.mean(np.abs(column))), 1e-3)
    return int(np.clip(np.round(8 * (math.log2(scale) + 6)), 0, 255))


class SvdEncoded(NamedTuple):
    string: bytes
    reconstruction: np.ndarray     # uint8 [H, W, C], what the decoder will produce


def _factors(image: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    x = tf.transpose(tf.constant(image, tf.float32) - 128., [2, 0, 1])   # [C, H, W]
    t = truncated_svd(x, rank)
    root = tf.sqrt(t.s)[:, None, :]
    return (t.u * root).numpy().astype(np.float64), (t.v * root).numpy().astype(np.float64)


def _reconstruct(q_left: np.ndarray, q_right: np.ndarray, step: float) -> np.ndarray:
    """Integer factors `[C, m, r]`, `[C, n, r]` → uint8 `[m, n, C]` (float64, deterministic)."""
    y = step * step * np.einsum("cik,cjk->cij", q_left, q_right) + 128.
    return np.clip(np.round(np.transpose(y, (1, 2, 0))), 0, 255).astype(np.uint8)


def encode(image: np.ndarray, rank: int, step: float, coder: str = DEFAULT_CODER) -> SvdEncoded:
    """uint8 `[H, W, C]` → SVD-codec string (see module docstring) + its reconstruction."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"image must be uint8 [H, W, C], got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    if not 1 <= rank <= min(height, width):
        raise ValueError(f"rank must be in [1, {min(height, width)}], got {rank}")
    if (channels > 255 or max(height, width) > 65535 or image.size > MAX_PIXELS
            or (height + width) * channels * rank > MAX_FACTOR_ENTRIES):
        raise ValueError(f"image too large for the SVD codec: {image.shape} at rank {rank}")
    step_index = index_from_step(step)
    step = step_from_index(step_index)
    left, right = _factors(image, rank)
    q_left, q_right = np.round(left / step), np.round(right / step)
    strings, scales = [], []
    for q in (q_left, q_right):                                  # [C, rows, r]
        columns = np.transpose(q, (1, 0, 2)).reshape(q.shape[1], -1)   # [rows, C·r]
        indices = np.array([_scale_index(columns[:, j]) for j in range(columns.shape[1])])
        cdf, halves = _tables(indices)
        symbols = (columns + halves[None, :]).astype(np.int32)[None]
        strings.append(get_coder(coder).encode(symbols, tf.constant(cdf)).numpy()[0])
        scales.append(indices)
    header = (bytes([MAGIC, VERSION]) + varint(height) + varint(width) + bytes([channels])
              + varint(rank) + bytes([step_index]) + bytes(np.concatenate(scales).astype(np.uint8)))
    string = header + varint(len(strings[0])) + strings[0] + strings[1]
    return SvdEncoded(string, _reconstruct(q_left, q_right, step))


def decode(string: bytes) -> np.ndarray:
    """SVD-codec string → uint8 `[H, W, C]`; `DecodeError` on any malformed input."""
    reader = ByteReader(bytes(string), DecodeError, "SVD string")
    if reader.byte("magic") != MAGIC or reader.byte("version") != VERSION:
        raise DecodeError("not an rdpipe SVD-codec string (bad magic or version)")
    height, width = reader.varint("height", 65535), reader.varint("width", 65535)
    channels = reader.byte("channels")
    rank = reader.varint("rank", 65535)
    if min(height, width, channels, rank) < 1 or rank > min(height, width):
        raise DecodeError(f"SVD string header is inconsistent: {height}×{width}×{channels}, "
                          f"rank {rank}")
    if (height * width * channels > MAX_PIXELS
            or (height + width) * channels * rank > MAX_FACTOR_ENTRIES):
        raise DecodeError(f"SVD string declares a {height}×{width}×{channels} image at rank "
                          f"{rank}: beyond the decoder's limits")
    step = step_from_index(reader.byte("step"))
    scales = np.frombuffer(reader.take(2 * channels * rank, "scales"), np.uint8)
    left_length = reader.varint("factor length", len(reader.data))
    strings = [reader.take(left_length, "left factors"), reader.rest]
    factors = []
    for rows, indices, coded in zip((height, width), np.split(scales, 2), strings):
        cdf, halves = _tables(indices)
        coder = get_coder(_coder_name(coded))
        symbols, ok = coder.decode(tf.constant([coded]), rows, channels * rank, tf.constant(cdf))
        if not bool(ok.numpy()[0]):
            raise DecodeError("SVD string failed the entropy decoder's end-of-stream check")
        columns = symbols.numpy()[0].astype(np.float64) - halves[None, :]
        factors.append(np.transpose(columns.reshape(rows, channels, rank), (1, 0, 2)))
    return _reconstruct(factors[0], factors[1], step)


def _coder_name(coded: bytes) -> str:
    from codec.entropy.coders import coder_of_string  # pylint: disable=import-outside-toplevel
    name = coder_of_string(coded)
    if name not in ("portable", "tfc"):
        raise DecodeError(f"SVD string holds an unknown coder payload ({name})")
    return name
