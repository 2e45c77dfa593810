"""Fuzzing the image decoder with short strings: crashes, hangs, time per call, memory.

Cases (all ≤ `--max-bytes`, default 200): real strings of Kodak crops coded by a zoo model,
truncated, bit-flipped, re-headed to claim other image sizes (up to 65535×256 and 4096×4096),
and random bytes behind the portable coder's format byte. Each goes through
`SavedCodec.decompress_with_status` (what the CLI and the library call), one string per call.
Issue 20's target: no exception, no call over 0.5 s, memory bounded.

Writes benchmarks/results/decode_fuzz.json (+ .md): calls, exceptions, the slowest calls with
their claimed sizes, the distribution of seconds per call, peak RSS. Run: `make bench-decode-fuzz
BENCH_ARGS="--cases 20000"` (≈ 0.05–3 s per case on 2 cores: see the JSON for this machine).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

KODAK = ROOT.parent / "shared" / "data" / "kodak"


def real_strings(codec, max_bytes: int) -> list[bytes]:
    """Strings of Kodak crops small enough to stay under `max_bytes`."""
    strings = []
    for name in ("kodim01.png", "kodim07.png", "kodim23.png"):
        image = np.asarray(Image.open(KODAK / name).convert("RGB"))
        for height, width in ((16, 16), (32, 48), (64, 96), (48, 160)):
            string = codec.compress(image[None, 100:100 + height, 200:200 + width])[0][0]
            if len(string) <= max_bytes:
                strings.append(string)
    return strings


def make_case(rng: np.random.Generator, goods: list[bytes], max_bytes: int) -> bytes:
    from codec.entropy import framing  # pylint: disable=import-outside-toplevel
    from codec.entropy.byte_reader import varint  # pylint: disable=import-outside-toplevel
    good = goods[int(rng.integers(len(goods)))]
    kind = int(rng.integers(4))
    if kind == 0:
        return good[:int(rng.integers(len(good) + 1))]
    if kind == 1:
        flipped = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            flipped[int(rng.integers(len(flipped)))] ^= 1 << int(rng.integers(8))
        return bytes(flipped)
    if kind == 2:
        payload = framing.split_image_shape(tf.constant([good]))[0].numpy()[0]
        height, width = (int(2 ** rng.uniform(0, 16)) for _ in range(2))
        return (payload[:1] + varint(max(height, 1)) + varint(max(width, 1))
                + payload[1:])[:max_bytes]
    # Random bytes behind a portable format byte: v1 (id 1) or v2 (id 3).
    first = int(rng.choice([0x20, 0x60])) | int(rng.integers(32))
    return bytes([first]) + rng.bytes(int(rng.integers(0, max_bytes)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bls2017-q1")
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--max-bytes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reexport", action="store_true",
                        help="fuzz the model re-exported with today's code (rANS v2 strings) "
                             "instead of the zoo's own export")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "decode_fuzz.json"))
    args = parser.parse_args(argv)
    from codec import zoo  # pylint: disable=import-outside-toplevel
    from codec.entropy import framing  # pylint: disable=import-outside-toplevel
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel
    scratch = tempfile.TemporaryDirectory()
    path = Path(zoo.resolve_model(args.model))
    if args.reexport:
        from codec.models.bls2017_train import reexport_saved_image_codec  # pylint: disable=import-outside-toplevel
        reexport_saved_image_codec(path / "saved_model", Path(scratch.name) / "model")
        path = Path(scratch.name) / "model"
    codec = SavedCodec(path)
    goods = real_strings(codec, args.max_bytes)
    rng = np.random.default_rng(args.seed)
    seconds, exceptions, slowest = [], [], []
    for _ in tqdm(range(args.cases), desc="fuzz", mininterval=5):
        case = make_case(rng, goods, args.max_bytes)
        start = time.perf_counter()
        try:
            images, _ = codec.decompress_with_status([case])
        except Exception as error:  # pylint: disable=broad-except  (what the fuzzer looks for)
            exceptions.append(f"{type(error).__name__}: {str(error)[:200]}")
            continue
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        _, height, width, ok = framing.split_image_shape(tf.constant([case]))
        slowest.append((elapsed, len(case), int(height[0]), int(width[0]), bool(ok[0]),
                        list(images.shape[1:3])))
        slowest = sorted(slowest, reverse=True)[:10]
    seconds = np.array(seconds)
    result = {
        "model": args.model + (" (re-exported with today's code)" if args.reexport else ""),
        "cases": args.cases, "max_bytes": args.max_bytes,
        "exceptions": len(exceptions), "exception_examples": exceptions[:5],
        "seconds_per_call": {"median": float(np.median(seconds)),
                             "p99": float(np.percentile(seconds, 99)),
                             "max": float(seconds.max())},
        "calls_over_0.5_s": int((seconds > .5).sum()),
        "slowest": [{"seconds": s, "bytes": n, "claimed_height": h, "claimed_width": w,
                     "header_ok": ok, "decoded_shape": shape}
                    for s, n, h, w, ok, shape in slowest],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{os.cpu_count()} CPUs",
        "command": f"make bench-decode-fuzz BENCH_ARGS=\"--cases {args.cases}"
                   + (" --reexport" if args.reexport else "") + "\"",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Decoder fuzz: {args.cases:,} strings ≤ {args.max_bytes} bytes to {result['model']}",
             "", f"- exceptions: {len(exceptions)}",
             f"- seconds per call: median {result['seconds_per_call']['median']:.3f}, p99 "
             f"{result['seconds_per_call']['p99']:.3f}, max {result['seconds_per_call']['max']:.3f}",
             f"- calls over 0.5 s: {result['calls_over_0.5_s']}",
             f"- peak RSS: {result['peak_rss_mb']:.0f} MB", "",
             "| s | bytes | claimed H×W | header ok | decoded |", "|---|---|---|---|---|"]
    lines += [f"| {r['seconds']:.3f} | {r['bytes']} | {r['claimed_height']}×"
              f"{r['claimed_width']} | {r['header_ok']} | {r['decoded_shape']} |"
              for r in result["slowest"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
