"""Quality floors of the tests' tiny models, set near what the models reach, so that a broken
decoder fails them — and the check that it does (`test_floors_reject_a_constant_decoder`).

Measured on the conftest `tiny_model` (MNIST, λ = 500, 2 epochs on 8,000 digits) over the
first 300 test digits: MAE 0.0716 ([0, 1] pixels), PSNR 14.74 dB; on the first 5 alone MAE
0.084; the same digits decoded as their mean image (a decoder that ignores its input): MAE
0.154, PSNR ≈ 11.6 dB. The floors allow 20 % more error (and 2 dB less PSNR) than measured,
for training noise across machines and small batches.
"""
from __future__ import annotations

import numpy as np

TINY_MNIST_MAE = 0.0716          # measured, [0, 1] pixels
TINY_MNIST_PSNR_DB = 14.74       # measured
TINY_MNIST_MAE_FIRST5 = 0.084   # measured on test[:5]
MNIST_MAE_FLOOR = 1.2 * TINY_MNIST_MAE
MNIST_PSNR_FLOOR_DB = TINY_MNIST_PSNR_DB - 2.


def mae(original: np.ndarray, decoded: np.ndarray) -> float:
    """Mean absolute error in [0, 1] pixels of uint8 images."""
    return float(np.abs(original.astype(np.float64) - decoded.astype(np.float64)).mean() / 255.)


def psnr_db(original: np.ndarray, decoded: np.ndarray) -> float:
    mse = float(((original.astype(np.float64) - decoded.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255. ** 2 / mse)


def constant_decoder(digits: np.ndarray) -> np.ndarray:
    """What a decoder that ignores its input does at best: every output is the mean digit."""
    mean = np.round(digits.astype(np.float64).mean(axis=0, keepdims=True))
    return np.broadcast_to(mean, digits.shape).astype(np.uint8)


def flat_colour(image: np.ndarray) -> np.ndarray:
    """What an image decoder that ignores its input does at best: the image's mean colour."""
    mean = np.round(image.reshape(-1, image.shape[-1]).astype(np.float64).mean(axis=0))
    return np.broadcast_to(mean, image.shape).astype(np.uint8)


def blurred(digits: np.ndarray, sigma: float = 2.) -> np.ndarray:
    """Each digit blurred with a Gaussian of `sigma` px: a decoder that lost the detail."""
    from scipy.ndimage import gaussian_filter  # pylint: disable=import-outside-toplevel
    axes = (sigma, sigma) + (0,) * (digits.ndim - 3)
    return np.stack([np.round(gaussian_filter(d.astype(np.float64), axes)).astype(np.uint8)
                     for d in digits])


def assert_mnist_quality(original: np.ndarray, decoded: np.ndarray,
                         mae_floor: float = MNIST_MAE_FLOOR) -> None:
    """The floors of the tiny MNIST model on test digits (`mae_floor`: another batch's)."""
    error, quality = mae(original, decoded), psnr_db(original, decoded)
    assert error <= mae_floor, f"MAE {error:.4f} above the floor {mae_floor:.4f}"
    assert quality >= MNIST_PSNR_FLOOR_DB, \
        f"PSNR {quality:.2f} dB below the floor {MNIST_PSNR_FLOOR_DB:.2f} dB"
