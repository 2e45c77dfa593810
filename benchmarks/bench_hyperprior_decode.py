"""Where a hyperprior codec's decode time goes, and what the rANS v2 lane count of 2026-12-02
changed: the mean-scale codec (`mbt2018-mean`, N = 128, the zoo's size) on Kodak, with the lane
counts encoders wrote before (`rans_lanes.lanes_log2`: z, 12,288 symbols on a Kodak image, in
one lane) against today's (`encoder_lanes_log2`: 16 lanes), each in its own process (the lane
rule is traced into the codec's functions once per process).

The weights are a fixed random initialisation (seed 0), not a trained model: the decode *work*
(loop steps, transforms) is the trained model's, the string sizes are not — they are reported
only to show the cost of the extra lanes' state bytes, which depends on the lane count alone.
Per image: `compress` and `decompress` seconds, and the parts of a decode — the z entropy
decode, the integer h_s (float64), the y entropy decode, the synthesis g_s.

Writes benchmarks/results/hyperprior_decode.json and .md. Run: `make bench-hyperprior-decode`
(≈ 3 min on 2 cores with the default 6 images; `--images 24` for all; nothing else should run).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KODAK = ROOT.parent / "shared" / "data" / "kodak"
RULES = ("before-2026-12-02", "today")


def _seconds(fn, repeats: int = 2) -> float:
    """Best of `repeats` wall-clock seconds of `fn()` (after one warm call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def child(rule: str, num_images: int) -> dict:
    """Times one lane rule in this process; returns medians over the images."""
    from codec.entropy import rans_lanes  # pylint: disable=import-outside-toplevel
    if rule == RULES[0]:
        # The encoders' lane count before 2026-12-02 (decoders accept both).
        rans_lanes.encoder_lanes_log2 = rans_lanes.lanes_log2
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    from codec.models.mbt2018 import MeanScaleCodec, MeanScaleTrainer  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(0)
    trainer = MeanScaleTrainer(lmbda=.01)
    trainer(np.zeros((1, 64, 64, 3), np.uint8))
    codec = MeanScaleCodec(trainer)
    side = tf.function(lambda strings: codec._side(strings))          # pylint: disable=protected-access
    hyper = tf.function(lambda z_hat: codec.integer_hyper_synthesis(z_hat))
    y_decode = tf.function(lambda s, i, m: codec.conditional.decompress(s, i, m))
    synthesis = tf.function(lambda y: codec.synthesis_transform(y))
    rows = []
    for path in sorted(KODAK.glob("kodim*.png"))[:num_images]:
        image = tf.constant(np.asarray(Image.open(path).convert("RGB"))[None])
        strings = codec.compress(image)["strings"]
        (indexes, means), y_strings, _, _, _, _ = side(strings)
        y_hat, _ = y_decode(y_strings, indexes, means)
        z_grid = [(image.shape[1] + 63) // 64, (image.shape[2] + 63) // 64]
        z_hat = tf.zeros([1, *z_grid, trainer.hyper_filters])
        side_s, hyper_s = _seconds(lambda: side(strings)), _seconds(lambda: hyper(z_hat))
        rows.append({
            "image": path.name, "bytes": len(strings.numpy()[0]),
            "z_lanes": 1 << int(rans_lanes.encoder_lanes_log2(z_grid[0] * z_grid[1] * 128)),
            "compress_s": _seconds(lambda: codec.compress(image)),
            "decompress_s": _seconds(lambda: codec.decompress(strings)),
            "z_decode_s": max(side_s - hyper_s, 0.), "integer_h_s_s": hyper_s,
            "y_decode_s": _seconds(lambda: y_decode(y_strings, indexes, means)),
            "synthesis_s": _seconds(lambda: synthesis(y_hat))})
        print(f"  {rule}: {path.name} decompress {rows[-1]['decompress_s']:.3f} s",
              file=sys.stderr, flush=True)
    summary = {f"median_{k}": statistics.median(r[k] for r in rows)
               for k in rows[0] if k.endswith("_s")}
    summary["total_bytes"] = sum(r["bytes"] for r in rows)
    summary["z_lanes"] = rows[0]["z_lanes"]
    return {"rule": rule, "summary": summary, "images": rows}


def write_markdown(report: dict, path: Path) -> None:
    before, today = (report["rules"][r]["summary"] for r in RULES)
    parts = ("compress_s", "decompress_s", "z_decode_s", "integer_h_s_s", "y_decode_s",
             "synthesis_s")
    lines = ["# Mean-scale decode: where the time goes (`make bench-hyperprior-decode`)", "",
             f"{report['cpus']} CPU cores, one Kodak image per call, medians over "
             f"{report['images']} images; untrained weights (seed 0): the work is a trained "
             "model's, the sizes are not. Each lane rule in its own process.", "",
             "| lane rule | z lanes | " + " | ".join(p[:-2] + " s" for p in parts) +
             " | bytes (all images) |", "|---" * (len(parts) + 3) + "|"]
    for rule, s in ((RULES[0], before), (RULES[1], today)):
        lines.append(f"| {rule} | {s['z_lanes']} | " + " | ".join(
            f"{s['median_' + p]:.3f}" for p in parts) + f" | {s['total_bytes']} |")
    lines += ["", f"decompress ×{before['median_decompress_s'] / today['median_decompress_s']:.2f}"
              f", compress ×{before['median_compress_s'] / today['median_compress_s']:.2f}; "
              f"bytes +{today['total_bytes'] - before['total_bytes']} over "
              f"{report['images']} images (the extra lanes' states)."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="first N Kodak images (1–24)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "hyperprior_decode.json"))
    parser.add_argument("--child", choices=RULES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.images <= 24:
        parser.error("--images must be 1–24")
    if args.child:
        print(json.dumps(child(args.child, args.images)))
        return 0
    report = {"command": f"make bench-hyperprior-decode BENCH_ARGS='--images {args.images}'",
              "cpus": os.cpu_count(), "images": args.images, "rules": {}}
    for rule in RULES:
        print(f"{rule} …", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", rule, "--images",
                              str(args.images)], check=True, stdout=subprocess.PIPE, text=True)
        report["rules"][rule] = json.loads(out.stdout.strip().splitlines()[-1])
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, Path(args.output).with_suffix(".md"))
    print(Path(args.output).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
