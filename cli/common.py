"""Helpers shared by the `rdpipe` command modules."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def read_npy_images(path: Path) -> np.ndarray:
    """A `.npy` array of uint8 images (`[H, W]`, `[N, H, W]`, `[N, H, W, C]`) → `[N, H, W, C]`."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CliError(f"{path}: not a readable .npy array ({error})") from None
    if array.dtype != np.uint8:
        raise CliError(f"{path}: digits must be uint8 in [0, 255], got {array.dtype}")
    if array.ndim == 2:                                # one digit
        array = array[None]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise CliError(f"{path}: expected [N, H, W] uint8 images, got {array.shape}")
    return array


def read_images(paths: list[Path]) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 `[H, W, C]` image) pairs from image files (colour kept as RGB, greyscale
    as one channel) and `.npy` image arrays (`rdpipe client svd`)."""
    from PIL import Image, UnidentifiedImageError

    items = []
    for path in paths:
        if not path.is_file():
            raise CliError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            items += [(f"{path.stem}_{i:05d}", a)
                      for i, a in enumerate(read_npy_images(path))]
        else:
            try:
                with Image.open(path) as image:
                    grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                    array = np.asarray(image.convert("L" if grey else "RGB"))
                items.append((path.stem, array[..., None] if grey else array))
            except (UnidentifiedImageError, OSError) as error:
                raise CliError(f"{path}: not a readable image ({error})") from None
    return items
