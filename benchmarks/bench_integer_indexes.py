"""What the hyperprior's integer table-index path costs, in rate and in time.

Trains a scale-hyperprior model (`bmshj2018-hyperprior`; default N = 64, 3,000 steps at λ 0.01
on the default photo folders — a small model, enough for the indexes to carry information),
then codes all 24 Kodak images twice with the same weights: table indexes from the integer
h_s (what exports use, codec/layers/integer_net.py) and from the float h_s rounded. ŷ =
round(y) does not depend on the indexes, so the distortion is identical and the cost is the
rate difference alone (bytes of the strings). Also: how many indexes differ, and the time of
each h_s on a Kodak-size ẑ.

Writes benchmarks/results/integer_indexes.json (+ .md). Run: `make bench-integer-indexes`
(≈ 10 min on 2 cores; `--steps`, `--filters` to change the model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.bench_decode_speed import kodak_images  # noqa: E402


def _seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    from codec.families import get_family  # pylint: disable=import-outside-toplevel
    from codec.models.bls2017_train import (build_image_trainer,  # pylint: disable=import-outside-toplevel
                                            train_image_codec)
    from codec.models.bmshj2018 import HyperpriorCodec, table_index  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--lmbda", type=float, default=.01)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "integer_indexes.json"))
    args = parser.parse_args(argv)
    family = get_family("bmshj2018-hyperprior")
    config = family.make_config({"filters": args.filters, "steps": args.steps,
                                 "lmbda": args.lmbda, "learning_rate": 5e-4,
                                 "schedule": "cosine", "warmup_steps": 200,
                                 "precision_policy": "mixed_bfloat16", "verbose": 1,
                                 "log_seconds": 60.})
    if not config.train_dir:
        from codec.data.datasets import DEFAULT_PHOTO_DIRS  # pylint: disable=import-outside-toplevel
        import dataclasses  # pylint: disable=import-outside-toplevel
        config = dataclasses.replace(config, train_dir=",".join(map(str, DEFAULT_PHOTO_DIRS)))
    with tempfile.TemporaryDirectory() as tmp:
        summary = train_image_codec(config, Path(tmp) / "run")
        trainer = build_image_trainer(dataclasses_replace_policy(config))
        tf.train.Checkpoint(trainer=trainer).restore(tf.train.latest_checkpoint(
            str(Path(tmp) / "run" / "checkpoints"))).expect_partial()
    integer = HyperpriorCodec(trainer)
    floating = HyperpriorCodec(trainer, integer_indexes=False)
    rows = []
    for image in kodak_images():
        batch = tf.constant(image[None])
        s_int = integer.compress(batch)["strings"]
        s_float = floating.compress(batch)["strings"]
        assert bool(integer.decompress_unchecked(s_int)["sanity_ok"].numpy()[0])
        idx_int = integer.decoder_indexes(s_int).numpy()
        idx_float = floating.decoder_indexes(s_float).numpy()
        rows.append({"pixels": image.shape[0] * image.shape[1],
                     "integer_bytes": len(s_int.numpy()[0]),
                     "float_bytes": len(s_float.numpy()[0]),
                     "indexes_differing": float((idx_int != idx_float).mean()),
                     "max_index_difference": int(np.abs(idx_int - idx_float).max())})
    z_hat = integer.entropy_model.quantize(integer.hyper_analysis(tf.abs(integer.analysis_transform(
        tf.cast(kodak_images()[0][None], tf.float32) / 255.))))
    int_fn = tf.function(lambda z: integer.integer_hyper_synthesis(z))
    float_fn = tf.function(lambda z: table_index(integer.hyper_synthesis(z)))
    total_int = sum(r["integer_bytes"] for r in rows)
    total_float = sum(r["float_bytes"] for r in rows)
    report = {"command": "make bench-integer-indexes", "cpus": os.cpu_count(),
              "model": {"filters": args.filters, "steps": summary["steps"], "lmbda": args.lmbda,
                        "final_train_bpp": summary["history"]["bpp"][-1],
                        "final_train_psnr": summary["history"]["psnr"][-1]},
              "kodak_bpp_integer": float(np.mean([8 * r["integer_bytes"] / r["pixels"]
                                                  for r in rows])),
              "kodak_bpp_float": float(np.mean([8 * r["float_bytes"] / r["pixels"]
                                                for r in rows])),
              "rate_increase_percent": 100. * (total_int / total_float - 1.),
              "indexes_differing_mean": float(np.mean([r["indexes_differing"] for r in rows])),
              "max_index_difference": max(r["max_index_difference"] for r in rows),
              "hyper_synthesis_seconds": {"integer": _seconds(lambda: int_fn(z_hat)),
                                          "float": _seconds(lambda: float_fn(z_hat))},
              "images": rows}
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    t = report["hyper_synthesis_seconds"]
    md = ["# Integer table indexes of the hyperprior (`make bench-integer-indexes`)", "",
          f"Model: N = {args.filters}, {summary['steps']} steps at λ {args.lmbda} (train "
          f"{report['model']['final_train_bpp']:.3f} bpp / {report['model']['final_train_psnr']:.2f}"
          " dB). Same weights, all 24 Kodak images; the distortion is identical (ŷ = round(y)).",
          "", "| indexes from | Kodak bpp | h_s time on a Kodak ẑ, s |", "|---|---|---|",
          f"| integer h_s (exports) | {report['kodak_bpp_integer']:.4f} | {t['integer']:.4f} |",
          f"| float h_s, rounded | {report['kodak_bpp_float']:.4f} | {t['float']:.4f} |", "",
          f"Rate increase of the integer path: {report['rate_increase_percent']:+.3f} % "
          f"(target ≤ 1 %); indexes that differ: {100 * report['indexes_differing_mean']:.2f} %,"
          f" never by more than {report['max_index_difference']}."]
    Path(args.output).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def dataclasses_replace_policy(config):
    """The float32 twin's config (inference is float32)."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    return dataclasses.replace(config, precision_policy="")


if __name__ == "__main__":
    sys.exit(main())
