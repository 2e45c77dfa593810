"""Low-rank approximations of one image or matrix, chosen by rank, compression factor or energy
factor, with honest numbers and figures (`rdpipe svd`).

- Images (uint8, colour kept per channel, greyscale as one channel) go through the codec's own
  path, `codec.linalg.svd.approximate_*` (randomized truncated SVD, rounded to uint8): the PNG
  written is what a user of the `svd_approximate*` signatures gets.
- Matrices (`.npy`, 2-D, any float) use the exact SVD (`tf.linalg.svd`, float64).
- The JSON reports the error of what was written (`frobenius_error_squared_per_channel`,
  measured on the output) and, beside it, labelled, the optimum for that rank (Eckart–Young:
  the sum of the discarded σᵢ², exact SVD, before rounding).
- Error panels show |A − A_r| on a colour map scaled to its own range, with a colour bar:
  errors of a few grey levels would be invisible drawn on 0–255.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

MODES = {"rank": "rank", "compression": "cf", "energy": "ef"}


class Choice(NamedTuple):
    """How a rank is chosen: mode in MODES, value a rank (int) or a factor in (0, 1]."""
    mode: str
    value: float

    @property
    def label(self) -> str:
        """The choice in a file name: rank50, cf0.15, ef0.9."""
        value = int(self.value) if self.mode == "rank" else f"{self.value:g}"
        return f"{MODES[self.mode]}{value}"


def load_input(path: Path) -> tuple[np.ndarray, str]:
    """(array `[H, W, C]`, kind): kind "image" (uint8; greyscale images keep one channel, any
    colour mode becomes RGB) or "matrix" (a 2-D `.npy` of numbers, float64, C = 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: not a .npy array ({error})") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or 0 in array.shape:
            raise ValueError(f"{path}: a matrix must be a non-empty 2-D numeric array, got "
                             f"shape {array.shape} of {array.dtype}")
        return array.astype(np.float64)[..., None], "matrix"
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel
    try:
        with Image.open(path) as image:
            grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            array = np.asarray(image.convert("L" if grey else "RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None
    return (array[..., None] if grey else array), "image"


def spectrum(array: np.ndarray) -> np.ndarray:
    """All singular values per channel, `[C, min(H, W)]`, descending (exact SVD, float64)."""
    x = tf.transpose(tf.constant(array, tf.float64), [2, 0, 1])
    return tf.linalg.svd(x, compute_uv=False).numpy()


def rank_of(choice: Choice, singular_values: np.ndarray, height: int, width: int) -> int:
    """The rank a choice selects, by the codec's own rules (codec.linalg.svd)."""
    from codec.linalg import svd  # pylint: disable=import-outside-toplevel
    limit = min(height, width)
    if choice.mode == "rank":
        rank = int(choice.value)
        if not 1 <= rank <= limit:
            raise ValueError(f"--rank must be in [1, {limit}] for a {height}×{width} input, got "
                             f"{rank}")
        return rank
    if choice.mode == "compression":
        return int(svd.rank_from_compression_factor(choice.value, height, width))
    return int(svd.rank_from_energy_factor(singular_values[None].astype(np.float32),
                                           choice.value)[0])


def approximate(array: np.ndarray, kind: str, choice: Choice, rank: int) -> np.ndarray:
    """The approximation as written: uint8 through the codec's SVD path for images, the exact
    truncated SVD for matrices."""
    if kind == "image":
        from codec.linalg import svd  # pylint: disable=import-outside-toplevel
        images = tf.constant(array[None])
        if choice.mode == "rank":
            out = svd.approximate_rank(images, rank)
        elif choice.mode == "compression":
            out = svd.approximate_compression(images, choice.value)
        else:
            out = svd.approximate_energy(images, choice.value)
        return out.reconstruction.numpy()[0]
    s, u, v = tf.linalg.svd(tf.constant(array[..., 0]))
    return (u[:, :rank] * s[:rank] @ tf.transpose(v[:, :rank])).numpy()[..., None]


def measure(array: np.ndarray, approximation: np.ndarray, singular_values: np.ndarray,
            kind: str, choice: Choice, rank: int) -> dict:
    """Numbers of one approximation; errors in the input's units (grey levels for images)."""
    height, width, channels = array.shape
    difference = array.astype(np.float64) - approximation.astype(np.float64)
    error = (difference ** 2).sum(axis=(0, 1))
    energy = np.cumsum(singular_values, axis=1) / np.maximum(
        singular_values.sum(axis=1, keepdims=True), 1e-300)
    mse = float(np.mean(difference ** 2))
    peak = 255. if kind == "image" else float(np.abs(array).max() or 1.)
    return {
        "choice": choice.label, "mode": choice.mode, "value": choice.value, "rank": rank,
        "compression_factor": rank * (height + width + 1) / (height * width),
        "energy_factor": float(energy[:, rank - 1].mean()),
        "stored_numbers": channels * rank * (height + width + 1),
        "frobenius_error_squared_per_channel": error.tolist(),
        "optimal_frobenius_error_squared_per_channel_exact_svd": [
            float((singular_values[c, rank:] ** 2).sum()) for c in range(channels)],
        "relative_frobenius_error": float(np.sqrt(error.sum() / max(
            (array.astype(np.float64) ** 2).sum(), 1e-300))),
        "psnr_db": 10 * np.log10(peak ** 2 / mse) if mse else None,
        "psnr_peak": peak,
    }


def write_report(path: Path, choices: list[Choice], output_dir: Path) -> dict:
    """Approximations, figures and JSON for one input; returns the JSON's content."""
    array, kind = load_input(path)
    height, width, channels = array.shape
    singular_values = spectrum(array)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    rows, pictures = [], []
    for choice in choices:
        rank = rank_of(choice, singular_values, height, width)
        approximation = approximate(array, kind, choice, rank)
        target = output_dir / f"{stem}_{choice.label}"
        written = _write_output(target, approximation, kind)
        rows.append({**measure(array, approximation, singular_values, kind, choice, rank),
                     "output": str(written)})
        pictures.append((choice, rank, approximation))
    from codec.eval import figures  # pylint: disable=import-outside-toplevel
    spectrum_png = figures.svd_spectrum_figure(singular_values, height, width,
                                               output_dir / f"{stem}_spectrum.png")
    panels_png = figures.svd_approximation_panels(array, kind, pictures,
                                                  output_dir / f"{stem}_approximations.png")
    report = {"input": str(path), "kind": kind, "height": height, "width": width,
              "channels": channels, "singular_values": singular_values.tolist(),
              "approximations": rows, "figures": [str(spectrum_png), str(panels_png)],
              "units": {"frobenius_error_squared_per_channel": "Σ (A − written)² over the "
                        "pixels of each channel, in the input's units (grey levels for images) "
                        "— measured on what was written", "optimal_frobenius_error_squared_"
                        "per_channel_exact_svd": "Σ_{i>r} σᵢ² of the exact SVD: the least any "
                        "rank-r approximation can reach (Eckart–Young), before rounding"}}
    (output_dir / f"{stem}_svd.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _write_output(target: Path, approximation: np.ndarray, kind: str) -> Path:
    if kind == "matrix":
        path = target.with_name(target.name + ".npy")
        np.save(path, approximation[..., 0])
        return path
    from PIL import Image  # pylint: disable=import-outside-toplevel
    path = target.with_name(target.name + ".png")
    picture = approximation[..., 0] if approximation.shape[-1] == 1 else approximation
    Image.fromarray(picture).save(path)
    return path
