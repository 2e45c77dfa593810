"""Rate-distortion measurement of an exported codec on real coded strings."""
from __future__ import annotations

import time

import numpy as np

from codec.saved_codec import SavedCodec


def coded_bits(strings) -> np.ndarray:
    """Actual rate per string in bits (8 × string length in bytes)."""
    return np.array([8 * len(s) for s in strings], dtype=np.int64)


def mean_absolute_error(a: np.ndarray, b: np.ndarray) -> float:
    """MAE of two uint8 image batches, on the [0, 1] scale."""
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))) / 255.)


def evaluate_codec(codec: SavedCodec, images: np.ndarray, batch_size: int = 1000) -> dict:
    """Compresses and decompresses `images` (uint8) in batches; returns per-set means.

    Keys: bits_per_digit (actual, 8×bytes), information_bits (−log2 p under the continuous
    prior), mae ([0,1]), psnr (dB, on 0–255), compress_per_s / decompress_per_s (images/s,
    excluding a first warm-up batch), num_images, failed_sanity_check (strings the decoder's
    check rejects: a working codec has 0; the gate refuses any other count) and per-image
    `bits` / `information` arrays.
    """
    codec.decompress_with_status(codec.compress(images[:2])[0])  # warm-up: trace both
    strings, info, recon = [], [], []
    compress_s = decompress_s = 0.
    failed = 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        t0 = time.perf_counter()
        s, i = codec.compress(batch)
        t1 = time.perf_counter()
        decoded, ok = codec.decompress_with_status(s)
        recon.append(decoded)
        failed += int((~ok).sum())
        decompress_s += time.perf_counter() - t1
        compress_s += t1 - t0
        strings += s
        info.append(i)
    recon = np.concatenate(recon)
    info = np.concatenate(info)
    bits = coded_bits(strings)
    mse = np.mean((recon.astype(np.float64) - images.astype(np.float64)) ** 2)
    return {
        "num_images": int(len(images)),
        "failed_sanity_check": failed,
        "bits_per_digit": float(bits.mean()),
        "information_bits": float(info.mean()),
        "mae": mean_absolute_error(images, recon),
        "psnr": float(10 * np.log10(255. ** 2 / max(mse, 1e-12))),
        "compress_per_s": float(len(images) / compress_s),
        "decompress_per_s": float(len(images) / decompress_s),
        "bits": bits,
        "information": info,
    }
