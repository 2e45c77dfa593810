"""Reading any photo into the uint8 array a model codes, and writing decoded images.

Conversion rules (README "Compress your own photos"; tests/test_photo_cli.py):

- EXIF orientation is applied (the pixels are turned as a viewer shows them).
- Animated images (GIF, APNG, WebP): the first frame, with a warning.
- 16-bit images (I;16 greyscale, 48-bit RGB PNG/TIFF): reduced to 8 bits (v·255/65535,
  rounded), with a warning; 32-bit integer or float images likewise, clipped to their range.
- Palette (P/PA), bilevel (1), CMYK, YCbCr, LAB, HSV: converted to RGB (or L) by Pillow.
- Transparency (RGBA, LA, PA, palette with a transparent colour): composited on white, as a
  viewer shows it on a white page; a warning only when some pixel is not fully opaque.
- Channels: greyscale → RGB (replicated) for RGB models; RGB → greyscale (ITU-R 601 luma) for
  greyscale models, with a warning (colour is lost).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "load_photo", "save_image", "PREVIEW_FORMATS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm",
                  ".pgm")
PREVIEW_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
PREVIEW_QUALITY = 95       # --format jpg|webp: previews, near-transparent on top of the codec
_HIGH_DEPTH_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def load_photo(path: str | Path, channels: int) -> tuple[np.ndarray, list[str]]:
    """`path` → (uint8 `[H, W, channels]` array in [0, 255], warnings for the user).

    channels: 3 (RGB models) or 1 (greyscale models). Raises `ImageReadError` for files Pillow
    cannot read (not an image, truncated)."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    warnings: list[str] = []
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                warnings.append(f"animated image ({image.n_frames} frames): coding the first")
                image.seek(0)
            if _is_16_bit_colour(image):       # before load(), which drops the tile list
                warnings.append("16 bits per channel: reduced to 8 bits")
            image.load()
            oriented = ImageOps.exif_transpose(image)
            array = _to_channels(_flatten_alpha(_to_8_bit(oriented, warnings), warnings),
                                 channels, warnings)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from None
    return array, warnings


def _is_16_bit_colour(image) -> bool:
    """48/64-bit PNG and TIFF colour: Pillow hands them over as 8-bit RGB(A) (its decoder keeps
    the high bytes); the raw mode of the file's tiles tells."""
    return image.mode in ("RGB", "RGBA") and any(
        ";16" in str(tile[3]) for tile in getattr(image, "tile", None) or [] if len(tile) > 3)


def _to_8_bit(image, warnings: list[str]):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    if image.mode in _HIGH_DEPTH_MODES or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
            warnings.append(f"floating-point image: [0, {top:g}] mapped to 8 bits")
        else:
            top = 65535.0 if values.max(initial=0) > 255 or image.mode != "I" else 255.0
            if top > 255:
                warnings.append("16 bits per channel: reduced to 8 bits")
        return Image.fromarray(np.clip(np.round(values * 255.0 / top), 0, 255).astype(np.uint8))
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        transparent = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return image.convert("RGB")
    if image.mode in ("La", "RGBa"):   # premultiplied alpha
        return image.convert("LA" if image.mode == "La" else "RGBA")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        return image.convert("RGB")
    return image


def _flatten_alpha(image, warnings: list[str]):
    """RGBA / LA → RGB / L composited on white."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    if image.mode not in ("RGBA", "LA"):
        return image
    alpha = np.asarray(image.getchannel("A"))
    if alpha.min() < 255:
        warnings.append(f"transparency: composited on white ({(alpha < 255).mean():.0%} of "
                        "pixels not opaque)")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA")).convert(image.mode[:-1])


def _to_channels(image, channels: int, warnings: list[str]) -> np.ndarray:
    if channels == 3:
        return np.asarray(image.convert("RGB"))
    if channels == 1:
        if image.mode != "L":
            warnings.append("colour image converted to greyscale for this greyscale model")
        return np.asarray(image.convert("L"))[..., None]
    raise ValueError(f"models code 1 or 3 channels, not {channels}")


def save_image(image: np.ndarray, path: str | Path, image_format: str = "png") -> Path:
    """uint8 `[H, W, C]` → `path` with the format's suffix (png lossless; jpg/webp previews at
    quality 95). Returns the path written."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    if image_format not in PREVIEW_FORMATS:
        raise ValueError(f"--format must be one of {sorted(PREVIEW_FORMATS)}")
    path = Path(path).with_suffix("." + image_format)
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    options = {} if image_format == "png" else {"quality": PREVIEW_QUALITY}
    picture.save(path, PREVIEW_FORMATS[image_format], **options)
    return path
