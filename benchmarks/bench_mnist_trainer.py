"""Why the MNIST Trainer ran at ~170 ms/step inside the pipeline and ~24 ms/step outside it.

A 1-epoch Trainer (`mnist-quick`: 79 steps of 128 digits) pays everything that happens before
the first step. Measured here, each variant in a fresh process (TensorFlow caches traced and
converted functions per process) on real digits (../shared/data/mnist), batch 128:
- `jit_compile="auto"` + autograph: tf_keras 2.16's defaults (rdpipe before issue 14);
- autograph only: `jit_compile=False`;
- rdpipe's default: `jit_compile=False` and train/test steps marked
  `tf.autograph.experimental.do_not_convert` (their control flow is plain Python), so autograph
  no longer converts the whole call tree of Keras layers, optimizer and prior.
Reading and decoding the examples (GZIP TFRecords, PNG) was the first suspect; it is timed too.

Writes benchmarks/results/mnist_trainer_speed.json. Run: `make bench-mnist-trainer` (~2 min).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VARIANTS = {"tf_keras defaults (jit auto, autograph)": ("auto", True),
            "jit off, autograph": ("off", True),
            "rdpipe default (jit off, no autograph)": ("off", False)}


def measure(jit: str, autograph: bool, steps: int) -> dict:
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    from codec.data.datasets import mnist_arrays  # pylint: disable=import-outside-toplevel
    from codec.models.mnist import MNISTCompressionTrainer  # pylint: disable=import-outside-toplevel

    class Converted(MNISTCompressionTrainer):   # the step as before: autograph converts it
        def train_step(self, data):
            return MNISTCompressionTrainer.train_step.__wrapped__(self, data)

    digits, _ = mnist_arrays("train[:10000]")
    trainer = (Converted if autograph else MNISTCompressionTrainer)(lmbda=2000.)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3),
                    jit_compile=None if jit == "auto" else False)
    batches = [digits[i:i + 128] for i in range(0, len(digits) - 127, 128)]
    start = time.perf_counter()
    trainer.train_on_batch(batches[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_on_batch(batches[i % len(batches)])
    steady = (time.perf_counter() - start) / steps
    return {"first_step_seconds": first, "steady_ms_per_step": 1000 * steady,
            "one_epoch_of_79_steps_ms_per_step": 1000 * (first + 78 * steady) / 79}


def read_examples_seconds() -> float | None:
    """Read + PNG-decode the mnist-quick train split written by `make run`, if present."""
    from codec.data.examples import example_dataset  # pylint: disable=import-outside-toplevel
    splits = sorted((ROOT / "workspace" / "pipelines" / "mnist-quick" / "MnistExampleGen" /
                     "examples").glob("*/Split-train"))
    if not splits:
        return None
    start = time.perf_counter()
    sum(1 for _ in example_dataset([str(splits[-1] / "*")], 1, (28, 28, 1)))
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "mnist_trainer_speed.json"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        jit, autograph = args.child
        print(json.dumps(measure(jit, autograph == "1", args.steps)))
        return 0
    results = {}
    for name, (jit, autograph) in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child",
                              jit, "1" if autograph else "0"], check=True, capture_output=True,
                             text=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:<40}: first step {r['first_step_seconds']:.1f} s, then "
              f"{r['steady_ms_per_step']:.1f} ms/step; a 79-step epoch "
              f"{r['one_epoch_of_79_steps_ms_per_step']:.0f} ms/step", flush=True)
    read = read_examples_seconds()
    if read is not None:
        print(f"reading + decoding the 10,000 mnist-quick train examples: {read:.1f} s")
    Path(args.output).write_text(json.dumps({
        "command": "make bench-mnist-trainer", "batch_size": 128, "steps": args.steps,
        "read_10000_examples_seconds": read,
        "units": {"first_step_seconds": "trace (+ autograph, + XLA) + one step, fresh process",
                  "steady_ms_per_step": "mean over --steps steps after the first"},
        "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
