"""Helpers shared by the `rdpipe` command modules."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def read_images(paths: list[Path]) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs from PNG/JPEG files and `.npy` arrays of uint8 digits."""
    from PIL import Image, UnidentifiedImageError

    items = []
    for path in paths:
        if not path.is_file():
            raise CliError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as error:
                raise CliError(f"{path}: not a readable .npy array ({error})") from None
            if array.dtype != np.uint8:
                raise CliError(f"{path}: digits must be uint8 in [0, 255], got {array.dtype}")
            if array.ndim == 2:                                # one digit
                array = array[None]
            if array.ndim == 4 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim != 3:
                raise CliError(f"{path}: expected [N, 28, 28] uint8 digits, got {array.shape}")
            items += [(f"{path.stem}_{i:05d}", a) for i, a in enumerate(array)]
        else:
            try:
                with Image.open(path) as image:
                    items.append((path.stem, np.asarray(image.convert("L"))))
            except (UnidentifiedImageError, OSError) as error:
                raise CliError(f"{path}: not a readable image ({error})") from None
    return items
