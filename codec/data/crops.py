"""Training crops from folders of images — numpy and Pillow only (no TensorFlow), so the TFC
peer of `make bench-race` (another virtualenv, TF 2.14) draws exactly rdpipe's crop stream."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CROP_SAMPLINGS = ("area", "per_file")


def load_image_folder(folder: str | Path, channels: int = 3) -> list[np.ndarray]:
    """uint8 `[H, W, channels]` arrays of every readable image in `folder` (sorted by name).
    Unreadable files are skipped with a warning; an empty result is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {folder}")
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
        except OSError:
            skipped.append(path.name)
            continue
        images.append(array if channels == 3 else array[..., None])
    if skipped:
        print(f"warning: skipped unreadable images: {', '.join(skipped)}")
    if not images:
        raise FileNotFoundError(f"no readable images in {folder}")
    return images


def load_image_folders(folders: list[str | Path], channels: int = 3) -> list[np.ndarray]:
    """`load_image_folder` over several folders, concatenated in the order given."""
    if not folders:
        raise FileNotFoundError("no training image folder given")
    return [image for folder in folders for image in load_image_folder(folder, channels)]


def crop_stream(images: list[np.ndarray], patch_size: int, seed: int | None, *,
                sampling: str = "area", flips: bool = True):
    """Endless uint8 patches `[patch, patch, C]` (a Python generator, numpy only).

    sampling="area": an image with probability ∝ its (padded) pixel count, so every pixel is
    equally likely to be seen — per-file sampling over-weights small images (eight 256² scans,
    2 % of the pixels of photos-train, gave 30 % of its crops). Images smaller than the patch
    are edge-padded. flips: each crop is mirrored horizontally and/or vertically with
    probability ½ each. The same (images, seed, options) give the same stream in any process,
    which is how the TFC race feeds both trainers identical crops.
    """
    if sampling not in CROP_SAMPLINGS:
        raise ValueError(f"sampling must be one of {CROP_SAMPLINGS}, got {sampling!r}")
    rng = np.random.default_rng(seed)
    padded = []
    for image in images:
        pad = [(0, max(0, patch_size - image.shape[0])), (0, max(0, patch_size - image.shape[1])),
               (0, 0)]
        padded.append(np.pad(image, pad, mode="edge") if any(p[1] for p in pad[:2]) else image)
    area = np.array([float(i.shape[0]) * i.shape[1] for i in padded])
    weights = area / area.sum() if sampling == "area" else None
    while True:
        image = padded[int(rng.choice(len(padded), p=weights))]
        top = int(rng.integers(image.shape[0] - patch_size + 1))
        left = int(rng.integers(image.shape[1] - patch_size + 1))
        crop = image[top:top + patch_size, left:left + patch_size]
        if flips:
            if rng.random() < .5:
                crop = crop[:, ::-1]
            if rng.random() < .5:
                crop = crop[::-1]
        yield np.ascontiguousarray(crop)
