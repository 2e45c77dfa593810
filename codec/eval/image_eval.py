"""Rate–distortion evaluation of image codecs on uint8 RGB images (e.g. Kodak).

Codecs: `svd` (codec/linalg/svd_codec.py, a real byte string), and the classical references through
Pillow: `jpeg` (libjpeg, 4:2:0, by quality), `jpeg2000` (OpenJPEG, by compression ratio),
`webp` (libwebp, by quality) and `avif` (libavif, by quality).
Rate is bits per pixel of the actual bytes (`8 · len / (H · W)`); distortion is PSNR in dB on
the 0–255 scale (RGB mean squared error) and MS-SSIM (`tf.image.ssim_multiscale`, max_val 255).
Each operating point is averaged over the images; `pareto_front` keeps the points no other point
beats in both rate and quality.
"""
from __future__ import annotations

import io
import math
from typing import Callable, Iterable, NamedTuple

import numpy as np
import tensorflow as tf
from PIL import Image

from codec.linalg import svd_codec

# Operating points per codec: a curve from each codec's lowest useful quality (≈ 24–26 dB on
# Kodak, so that low-rate learned models overlap it for BD-rate) to ~2 bpp.
DEFAULT_POINTS = {
    "jpeg": [5, 10, 20, 30, 50, 70, 85, 95],                          # Pillow quality
    "jpeg2000": [400, 300, 200, 100, 50, 30, 20, 12, 8],              # compression ratio
    "webp": [0, 2, 5, 15, 30, 50, 70, 85, 95],                        # Pillow quality
    "avif": [0, 10, 25, 40, 55, 70, 85],                              # Pillow quality
    "svd": [(r, s) for r in (4, 8, 16, 32, 64) for s in (.5, 1.)],   # (rank, step Δ)
}


class Point(NamedTuple):
    codec: str
    parameter: object
    bpp: float
    psnr: float
    ms_ssim: float


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of uint8 images (peak 255); ∞ for identical images."""
    mse = float(np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def ms_ssim(original: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM of uint8 `[H, W, C]` images (5 scales; needs H, W ≥ 161)."""
    return float(tf.image.ssim_multiscale(tf.constant(original, tf.float32),
                                          tf.constant(decoded, tf.float32), max_val=255.))


def _pillow_round_trip(image: np.ndarray, **save_args) -> tuple[int, np.ndarray]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **save_args)
    data = buffer.getvalue()
    return len(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def jpeg(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of baseline JPEG at Pillow `quality` (4:2:0, optimized Huffman)."""
    return _pillow_round_trip(image, format="JPEG", quality=int(quality), subsampling=2,
                              optimize=True)


def jpeg2000(image: np.ndarray, ratio: float) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of JPEG 2000 (OpenJPEG via Pillow) at compression ratio `ratio`, 9/7
    wavelet with the colour transform (Pillow's default `mct=0` codes R, G, B separately)."""
    return _pillow_round_trip(image, format="JPEG2000", quality_mode="rates",
                              quality_layers=[float(ratio)], irreversible=True, mct=1)


def webp(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of lossy WebP at Pillow `quality` (method 6: best compression)."""
    return _pillow_round_trip(image, format="WEBP", quality=int(quality), method=6)


def avif(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of AVIF at Pillow `quality` (4:2:0, speed 6)."""
    return _pillow_round_trip(image, format="AVIF", quality=int(quality), speed=6)


def svd(image: np.ndarray, parameter: tuple[int, float]) -> tuple[int, np.ndarray]:
    """(bytes, decoded) of the SVD codec at (rank, step); decoded from the string itself."""
    rank, step = parameter
    rank = min(int(rank), min(image.shape[:2]))
    encoded = svd_codec.encode(image, rank, float(step))
    return len(encoded.string), svd_codec.decode(encoded.string)


CODECS: dict[str, Callable[[np.ndarray, object], tuple[int, np.ndarray]]] = {
    "jpeg": jpeg, "jpeg2000": jpeg2000, "webp": webp, "avif": avif, "svd": svd}


def evaluate(codec: str, images: list[np.ndarray], points: Iterable | None = None,
             progress: Callable[[str], None] | None = None) -> list[Point]:
    """Mean bpp / PSNR / MS-SSIM over `images` for each operating point of `codec`."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    run = CODECS[codec]
    out = []
    for parameter in (DEFAULT_POINTS[codec] if points is None else points):
        rates, psnrs, ssims = [], [], []
        for image in images:
            size, decoded = run(image, parameter)
            rates.append(8 * size / (image.shape[0] * image.shape[1]))
            psnrs.append(psnr(image, decoded))
            ssims.append(ms_ssim(image, decoded))
        point = Point(codec, parameter, float(np.mean(rates)), float(np.mean(psnrs)),
                      float(np.mean(ssims)))
        if progress:
            progress(f"{codec} {parameter}: {point.bpp:.3f} bpp, {point.psnr:.2f} dB, "
                     f"MS-SSIM {point.ms_ssim:.4f}")
        out.append(point)
    return out


class LearnedPoint(NamedTuple):
    codec: str
    parameter: object            # the SavedModel directory
    bpp: float
    psnr: float
    ms_ssim: float
    encode_seconds: float        # mean per image, compress signature (after a warm-up call)
    decode_seconds: float        # mean per image, decompress signature


def evaluate_model(model_dir: str, images: list[np.ndarray],
                   progress: Callable[[str], None] | None = None) -> LearnedPoint:
    """An exported image codec (compress / decompress signatures, e.g. codec/models/bls2017.py) on
    `images`, one image per call: actual bytes, PSNR, MS-SSIM and timings."""
    import time  # pylint: disable=import-outside-toplevel
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    path = Path(model_dir)
    path = path / "saved_model" if (path / "saved_model").is_dir() else path
    module = tf.saved_model.load(str(path))
    compress, decompress = module.signatures["compress"], module.signatures["decompress"]
    decompress(strings=compress(images=tf.constant(images[0][None]))["strings"])   # warm up
    rates, psnrs, ssims, encode_s, decode_s = [], [], [], [], []
    for image in images:
        start = time.perf_counter()
        strings = compress(images=tf.constant(image[None]))["strings"]
        middle = time.perf_counter()
        decoded = decompress(strings=strings)["images"].numpy()[0]
        end = time.perf_counter()
        encode_s.append(middle - start)
        decode_s.append(end - middle)
        rates.append(8 * len(strings.numpy()[0]) / (image.shape[0] * image.shape[1]))
        psnrs.append(psnr(image, decoded))
        ssims.append(ms_ssim(image, decoded))
    point = LearnedPoint("learned", str(model_dir), float(np.mean(rates)), float(np.mean(psnrs)),
                         float(np.mean(ssims)), float(np.mean(encode_s)), float(np.mean(decode_s)))
    if progress:
        progress(f"{model_dir}: {point.bpp:.3f} bpp, {point.psnr:.2f} dB, MS-SSIM "
                 f"{point.ms_ssim:.4f}, encode {point.encode_seconds:.2f} s, decode "
                 f"{point.decode_seconds:.2f} s")
    return point


def pareto_front(points: list, rate: Callable = lambda p: p.bpp,
                 quality: Callable = lambda p: p.psnr) -> list:
    """Points not dominated in (lower rate, higher quality), sorted by rate. Defaults read
    `Point`/`LearnedPoint` (bpp, PSNR); pass accessors for other shapes, e.g. (bpp, q) tuples."""
    ordered = sorted(points, key=lambda p: (rate(p), -quality(p)))
    front, best = [], -math.inf
    for point in ordered:
        if quality(point) > best:
            front.append(point)
            best = quality(point)
    return front


def load_images(folder, limit: int | None = None) -> list[np.ndarray]:
    """uint8 RGB arrays of the PNG/JPEG files in `folder` (sorted by name)."""
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    paths = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise FileNotFoundError(f"no PNG/JPEG images in {folder}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths[:limit]]


def bd_rate(reference: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Bjøntegaard delta rate (percent) of `test` against `reference`, each a list of
    (bpp, quality) points (quality: PSNR dB, or MS-SSIM in dB): the mean difference of
    log(rate) as a function of quality over the overlapping quality interval (VCEG-M33);
    negative means `test` needs fewer bits for the same quality. Needs ≥ 4 points per curve,
    each rising in both rate and quality (take a Pareto front first).

    Computed by the `bjontegaard` package with PCHIP interpolation of log(rate) (as the
    video-coding community's tools do, rather than VCEG-M33's single cubic, which overshoots
    on unevenly spaced points); this wrapper adds the checks with rdpipe's error messages."""
    import bjontegaard  # pylint: disable=import-outside-toplevel
    if len(reference) < 4 or len(test) < 4:
        raise ValueError("BD-rate needs at least 4 rate–quality points per curve")
    curves = []
    for points in (reference, test):
        points = sorted(points, key=lambda p: p[1])
        rate = np.array([p[0] for p in points], np.float64)
        quality = np.array([p[1] for p in points], np.float64)
        if np.any(np.diff(quality) <= 0) or np.any(np.diff(rate) <= 0):
            raise ValueError("BD-rate needs curves rising in both rate and quality "
                             "(take the Pareto front)")
        curves.append((rate, quality))
    low, high = quality_overlap(reference, test)
    if not low < high:
        raise ValueError("the two curves do not overlap in quality")
    (rate_ref, quality_ref), (rate_test, quality_test) = curves
    return float(bjontegaard.bd_rate(rate_ref, quality_ref, rate_test, quality_test,
                                     method="pchip", require_matching_points=False,
                                     min_overlap=0))


def quality_overlap(reference: list[tuple[float, float]],
                    test: list[tuple[float, float]]) -> tuple[float, float]:
    """(low, high) quality interval both curves cover; low ≥ high when they do not overlap."""
    return (max(min(p[1] for p in reference), min(p[1] for p in test)),
            min(max(p[1] for p in reference), max(p[1] for p in test)))
