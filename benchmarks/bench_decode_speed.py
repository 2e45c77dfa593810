"""Encode and decode time of the Ballé 2017 codec on Kodak and on photos of 1.5 and 4.7 MP:
the zoo's exports (portable rANS v1 strings) against the same weights re-exported with today's
code (v2 strings for ≥ 16,384 symbols: codec/entropy/rans_lanes.py), and the parts of a decode.

For each zoo model, the weights are re-exported from its own SavedModel
(`reexport_saved_image_codec`): same tables, same symbols, so the decoded pixels must be equal
and the string sizes within a few bytes; both exports are timed in this one process, one image
per call, on all 24 Kodak images (one warm-up call per model first). The parts: the entropy
decode alone (the re-exported model's `entropy_model.decompress`) and the synthesis transform
alone (its `synthesis_transform` on the decoded latents) — the synthesis is the floor for this
design. Bigger photos: mosaics of Kodak images (2×2 and 4×3: 1536×1024 and 3072×1536 pixels) in
one call each. CompressAI's published CPU decode times for its factorized model, 0.83–1.59 s per
Kodak image (issue 20), are quoted for scale, not re-measured.

Writes benchmarks/results/decode_speed.json and .md. Run: `make bench-decode-speed` (≈ 5 min on
2 cores; nothing else should run meanwhile).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"
COMPRESSAI_FACTORIZED_DECODE_S = (0.83, 1.59)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def kodak_images() -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(KODAK.glob("kodim*.png"))]


def mosaic(images: list[np.ndarray], rows: int, cols: int) -> np.ndarray:
    """Kodak images (landscape ones, 512×768) tiled `rows × cols`."""
    wide = [i for i in images if i.shape[:2] == (512, 768)]
    grid = [np.concatenate(wide[r * cols:(r + 1) * cols], axis=1) for r in range(rows)]
    return np.concatenate(grid, axis=0)


def time_model(old, new, parts, images) -> dict:
    """Per image: seconds to encode and decode with each export, bytes, equality."""
    rows = []
    old.compress(tf.constant(images[0][None]))                  # warm-up (tracing, allocs)
    for version in (old, new):
        version.decompress(version.compress(tf.constant(images[0][None]))["strings"])
    for image in images:
        batch = tf.constant(image[None])
        row = {"pixels": int(image.shape[0] * image.shape[1])}
        decoded = {}
        for label, model in (("v1", old), ("v2", new)):
            strings = model.compress(batch)["strings"]
            row[f"{label}_encode_s"] = _seconds(lambda m=model: m.compress(batch))
            row[f"{label}_decode_s"] = _seconds(lambda m=model, s=strings: m.decompress(s))
            row[f"{label}_bytes"] = len(strings.numpy()[0])
            decoded[label] = model.decompress(strings)["images"].numpy()
        row["same_pixels"] = bool(np.array_equal(decoded["v1"], decoded["v2"]))
        if parts is not None:
            row.update(parts(batch))
        rows.append(row)
    return rows


def decode_parts(codec):
    """Seconds of the entropy decode and of the synthesis transform alone, for one image."""
    from codec.entropy.framing import split_image_shape  # pylint: disable=import-outside-toplevel
    entropy = tf.function(lambda payload, grid: codec.entropy_model.decompress(payload, grid))
    synthesis = tf.function(lambda y: codec.synthesis_transform(y))

    def measure(batch):
        strings = codec.compress(batch)["strings"]
        payload = split_image_shape(strings)[0]
        grid = tf.constant([(batch.shape[1] + 15) // 16, (batch.shape[2] + 15) // 16])
        y_hat, _ = entropy(payload, grid)
        synthesis(y_hat)
        return {"v2_entropy_decode_s": _seconds(lambda: entropy(payload, grid)),
                "synthesis_s": _seconds(lambda: synthesis(y_hat))}
    return measure


def summarize(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        if key.endswith("_s") or key.endswith("_bytes"):
            out[f"median_{key}"] = statistics.median(r[key] for r in rows)
    out["same_pixels"] = all(r["same_pixels"] for r in rows)
    out["v2_bytes_over_v1"] = sum(r["v2_bytes"] for r in rows) / sum(r["v1_bytes"] for r in rows)
    out["decode_speedup"] = out["median_v1_decode_s"] / out["median_v2_decode_s"]
    return out


def main(argv=None) -> int:
    from codec import zoo  # pylint: disable=import-outside-toplevel
    from codec.models.bls2017_train import reexport_saved_image_codec  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["bls2017-q1", "bls2017-q2",
                                                         "bls2017-q3", "bls2017-q4"])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "decode_speed.json"))
    args = parser.parse_args(argv)
    images = kodak_images()
    big = {"1536x1024": mosaic(images, 2, 2), "3072x1536": mosaic(images, 2, 4)}
    report = {"command": "make bench-decode-speed", "cpus": os.cpu_count(), "models": {},
              "compressai_factorized_decode_s_published": COMPRESSAI_FACTORIZED_DECODE_S}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            saved = Path(zoo.resolve_model(name)) / "saved_model"
            codec = reexport_saved_image_codec(saved, Path(tmp) / name)
            old, new = tf.saved_model.load(str(saved)), tf.saved_model.load(str(Path(tmp) / name))
            print(f"{name}: Kodak …", flush=True)
            rows = time_model(old, new, decode_parts(codec), images)
            entry = {"kodak": summarize(rows), "kodak_images": rows}
            for label, photo in big.items():
                photo_rows = time_model(old, new, None, [photo])
                entry[label] = photo_rows[0]
                entry[label]["v2_decoded_mpx_per_s"] = photo.size / 3 / 1e6 / \
                    photo_rows[0]["v2_decode_s"]
            report["models"][name] = entry
            k = entry["kodak"]
            print(f"  decode v1 {k['median_v1_decode_s']:.3f} s → v2 "
                  f"{k['median_v2_decode_s']:.3f} s (entropy {k['median_v2_entropy_decode_s']:.3f}"
                  f", synthesis {k['median_synthesis_s']:.3f}); encode v1 "
                  f"{k['median_v1_encode_s']:.3f} → v2 {k['median_v2_encode_s']:.3f}; bytes "
                  f"×{k['v2_bytes_over_v1']:.4f}; same pixels {k['same_pixels']}", flush=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, Path(args.output).with_suffix(".md"))
    print(f"wrote {args.output}")
    return 0


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# Decode and encode speed (`make bench-decode-speed`)", "",
             f"{report['cpus']} CPU cores, one image per call, medians over the 24 Kodak images. "
             "v1: the zoo's export (portable rANS v1 strings); v2: the same weights re-exported "
             "with today's code (rANS v2 strings). Same symbols, same pixels.", "",
             "| model | decode v1 s | decode v2 s | × | entropy decode v2 s | synthesis s | "
             "encode v1 s | encode v2 s | bytes v2/v1 | same pixels |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        k = entry["kodak"]
        lines.append(f"| {name} | {k['median_v1_decode_s']:.3f} | {k['median_v2_decode_s']:.3f} | "
                     f"{k['decode_speedup']:.2f} | {k['median_v2_entropy_decode_s']:.3f} | "
                     f"{k['median_synthesis_s']:.3f} | {k['median_v1_encode_s']:.3f} | "
                     f"{k['median_v2_encode_s']:.3f} | {k['v2_bytes_over_v1']:.4f} | "
                     f"{k['same_pixels']} |")
    lines += ["", "| model | photo | decode v1 s | decode v2 s | v2 Mpx/s | encode v2 s |",
              "|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        for label in ("1536x1024", "3072x1536"):
            r = entry[label]
            lines.append(f"| {name} | {label} | {r['v1_decode_s']:.2f} | {r['v2_decode_s']:.2f} | "
                         f"{r['v2_decoded_mpx_per_s']:.2f} | {r['v2_encode_s']:.2f} |")
    low, high = report["compressai_factorized_decode_s_published"]
    lines += ["", f"CompressAI's published CPU decode time for its factorized model: {low}–{high} s "
              "per Kodak image (quoted, not measured here)."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
