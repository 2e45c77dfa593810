"""Big photos through the tiled path: peak memory, time, bpp, and PSNR at tile seams.

For each size (default 12 MP and 48 MP), a synthetic photo (a mosaic of Kodak images, each
upscaled 2.5× with Lanczos, so no tile boundary coincides with a mosaic edge) is compressed and
decompressed through `codec.photo_codec` — what `rdpipe compress` / `decompress` run — in a
fresh child process whose peak resident memory (`ru_maxrss`) is recorded: the bound holds if the
peak grows with the image buffers only (3 bytes per pixel for the photo, 3 for the decoded copy),
not with the transforms. Seams: PSNR over the pixels within 8 px of an interior tile boundary vs
all other pixels, with rdpipe's tile overlap (cross-faded bands) and, for comparison, without
(`--overlaps 32 0`).

Writes benchmarks/results/big_photo.json and .md. Run: `make bench-big-photo` (a few minutes
per size on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KODAK = ROOT.parent / "shared" / "data" / "kodak"
SEAM_BAND = 8   # pixels either side of an interior tile boundary


def synthetic_photo(height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: Kodak images upscaled 2.5× (1920×1280 each), tiled."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    names = sorted(KODAK.glob("*.png"))
    photo = np.empty((height, width, 3), np.uint8)
    index = 0
    for top in range(0, height, 1280):
        for left in range(0, width, 1920):
            with Image.open(names[index % len(names)]) as image:
                big = np.asarray(image.convert("RGB").resize((1920, 1280), Image.LANCZOS))
            index += 1
            block = photo[top:top + 1280, left:left + 1920]
            block[...] = big[:block.shape[0], :block.shape[1]]
    return photo


def seam_mask(height: int, width: int, tile: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for edge in range(tile, height, tile):
        mask[max(edge - SEAM_BAND, 0):edge + SEAM_BAND] = True
    for edge in range(tile, width, tile):
        mask[:, max(edge - SEAM_BAND, 0):edge + SEAM_BAND] = True
    return mask


def child(model: str, height: int, width: int, tile: int, overlap: int) -> dict:
    """One measurement (run in a fresh process: ru_maxrss is that process's peak)."""
    from codec import photo_codec  # pylint: disable=import-outside-toplevel
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    from codec.zoo import resolve_model  # pylint: disable=import-outside-toplevel
    codec = SavedCodec(resolve_model(model))
    photo = synthetic_photo(height, width)
    photo_codec.encode_image(codec, photo[:256, :256], tile, overlap)   # warm-up: trace once
    rss_before = _peak_mb()
    start = time.perf_counter()
    data, _ = photo_codec.encode_image(codec, photo, tile, overlap)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded, header = photo_codec.decode_file(codec, data)
    decode_seconds = time.perf_counter() - start
    # Unflattened views (no copies): the measurement must not move the peak it measures.
    mask = seam_mask(height, width, header.tile or max(height, width))
    errors = {"seam": [], "elsewhere": []}
    for rows in range(0, height, 512):
        block = (photo[rows:rows + 512].astype(np.float32) - decoded[rows:rows + 512]) ** 2
        band = mask[rows:rows + 512]
        errors["seam"].append(float(block[band].sum()))
        errors["elsewhere"].append(float(block[~band].sum()))
    samples = {"seam": 3 * mask.sum(), "elsewhere": 3 * (~mask).sum()}

    def psnr(*parts):
        mse = sum(sum(errors[p]) for p in parts) / max(sum(samples[p] for p in parts), 1)
        return 10 * np.log10(255 ** 2 / mse) if mse else None
    return {"model": model, "height": height, "width": width,
            "megapixels": height * width / 1e6, "tile": header.tile, "overlap": header.overlap,
            "tiles": len(header.segments), "bytes": len(data),
            "bpp": 8 * len(data) / (height * width),
            "psnr_db": psnr("seam", "elsewhere"), "seam_psnr_db": psnr("seam"),
            "elsewhere_psnr_db": psnr("elsewhere"),
            "seam_pixels_fraction": float(mask.mean()),
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "peak_rss_mb_after_model_load": rss_before, "peak_rss_mb": _peak_mb(),
            "image_buffers_mb": 2 * photo.nbytes / 2 ** 20}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Big photos: tiled coding (benchmarks/bench_big_photo.py)", "",
             f"Command: `{command}`. Model {results[0]['model']}; peak = peak resident memory "
             "of the process (model, TensorFlow, photo, decoded copy, one tile's transforms).",
             "", "| photo | tiles | overlap | bpp | PSNR dB | seam PSNR dB | elsewhere dB | "
             "encode s | decode s | peak RSS MB | photo + decoded MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        seam = "–" if r["seam_psnr_db"] is None else f"{r['seam_psnr_db']:.2f}"
        lines.append(
            f"| {r['width']}×{r['height']} ({r['megapixels']:.0f} MP) | {r['tiles']} × "
            f"{r['tile']}² | {r['overlap']} | {r['bpp']:.3f} | {r['psnr_db']:.2f} | {seam} | "
            f"{r['elsewhere_psnr_db']:.2f} | {r['encode_seconds']:.0f} | "
            f"{r['decode_seconds']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['image_buffers_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="bls2017-q3", help="zoo name, λ or model dir")
    parser.add_argument("--sizes", nargs="+", default=["3000x4000", "6000x8000"],
                        help="HEIGHTxWIDTH of each synthetic photo")
    parser.add_argument("--tile", type=int, default=None, help="default: rdpipe's default")
    parser.add_argument("--overlaps", type=int, nargs="+", default=[32, 0],
                        help="tile overlaps to measure (pixels; rdpipe writes 32)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "big_photo.json"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        model, height, width, tile, overlap = args.child
        print(json.dumps(child(model, int(height), int(width), int(tile), int(overlap))))
        return 0
    from codec.photo_codec import DEFAULT_TILE  # pylint: disable=import-outside-toplevel
    tile = args.tile or DEFAULT_TILE
    results = []
    for size, overlap in [(size, overlap) for size in args.sizes for overlap in args.overlaps]:
        height, width = map(int, size.lower().split("x"))
        print(f"{width}×{height} ({height * width / 1e6:.0f} MP), tiles of {tile}², overlap "
              f"{overlap} …", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", args.model, str(height),
                              str(width), str(tile), str(overlap)], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    command = "make bench-big-photo" + (f" BENCH_ARGS=\"{' '.join(argv or sys.argv[1:])}\""
                                        if (argv or sys.argv[1:]) else "")
    output = Path(args.output)
    output.write_text(json.dumps({"command": command, "units": {
        "peak_rss_mb": "MiB, peak resident set of the coding process",
        "bpp": "bits per pixel of the .bin file (container included)",
        "psnr_db": "RGB, peak 255", "seam": f"pixels within {SEAM_BAND} px of a tile boundary"},
        "results": results}, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(results, command))
    print(f"wrote {output}, {output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
