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


class CropSampler:
    """Random uint8 crops `[patch, patch, C]` of a list of images (numpy only).

    sampling="area": an image with probability ∝ its (padded) pixel count, so every pixel is
    equally likely to be seen, whatever the image sizes — per-file sampling over-weights small
    images (eight 256² scans, 2 % of the pixels of photos-train, gave 30 % of its crops; with
    all four default folders, the 450 ImageNet photos of ≈ 0.2 MP would get 72 % of the crops
    for 25 % of the pixels). Images smaller than the patch are edge-padded. flips: each crop is
    mirrored horizontally and/or vertically with probability ½ each.
    """

    def __init__(self, images: list[np.ndarray], patch_size: int, *, sampling: str = "area",
                 flips: bool = True):
        if sampling not in CROP_SAMPLINGS:
            raise ValueError(f"sampling must be one of {CROP_SAMPLINGS}, got {sampling!r}")
        if not images:
            raise ValueError("no training images")
        self.patch_size, self.flips = patch_size, flips
        self.images = [_pad_to(image, patch_size) for image in images]
        area = np.array([float(i.shape[0]) * i.shape[1] for i in self.images])
        self.weights = area / area.sum() if sampling == "area" else None

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """One crop drawn with `rng`."""
        patch = self.patch_size
        image = self.images[int(rng.choice(len(self.images), p=self.weights))]
        top = int(rng.integers(image.shape[0] - patch + 1))
        left = int(rng.integers(image.shape[1] - patch + 1))
        crop = image[top:top + patch, left:left + patch]
        if self.flips:
            if rng.random() < .5:
                crop = crop[:, ::-1]
            if rng.random() < .5:
                crop = crop[::-1]
        return np.ascontiguousarray(crop)

    def batch(self, seed: int, step: int, size: int) -> np.ndarray:
        """The batch `[size, patch, patch, C]` of training step `step`: a function of
        (images, seed, step) alone, so a resumed run draws exactly the batches an uninterrupted
        one would, and every worker of a multi-worker run can take its rows of the same global
        batch."""
        rng = np.random.default_rng([int(seed), int(step)])
        return np.stack([self.crop(rng) for _ in range(size)])

    def stream(self, seed: int | None):
        """Endless crops from one generator seeded by `seed` (a Python generator)."""
        rng = np.random.default_rng(seed)
        while True:
            yield self.crop(rng)


def _pad_to(image: np.ndarray, patch_size: int) -> np.ndarray:
    pad = [(0, max(0, patch_size - image.shape[0])), (0, max(0, patch_size - image.shape[1])),
           (0, 0)]
    return np.pad(image, pad, mode="edge") if any(p[1] for p in pad[:2]) else image


def crop_stream(images: list[np.ndarray], patch_size: int, seed: int | None, *,
                sampling: str = "area", flips: bool = True):
    """Endless uint8 patches `[patch, patch, C]` (`CropSampler.stream`). The same (images, seed,
    options) give the same stream in any process, which is how the TFC race feeds both
    trainers identical crops."""
    return CropSampler(images, patch_size, sampling=sampling, flips=flips).stream(seed)
