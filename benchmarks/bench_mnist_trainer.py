"""Why the MNIST Trainer ran at ~170 ms/step inside the pipeline and ~24 ms/step outside it.

Measures, for the tutorial's model at batch 128 on real digits (../shared/data/mnist): the first
train step (trace + compile) and the steady-state ms/step, with tf_keras 2.16's default
`jit_compile` ("auto": XLA) and with it off (rdpipe's default since issue 14), plus what a
1-epoch Trainer of `mnist-quick` (79 steps) costs per step either way. Input reading (GZIP
TFRecords + PNG decode) is timed too, as the first suspect.

Writes benchmarks/results/mnist_trainer_speed.json. Run: `make bench-mnist-trainer` (~2 min).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(jit_compile, digits, steps: int) -> dict:
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    from codec.models.mnist import MNISTCompressionTrainer  # pylint: disable=import-outside-toplevel
    trainer = MNISTCompressionTrainer(lmbda=2000.)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    batches = [digits[i:i + 128] for i in range(0, len(digits) - 127, 128)]
    start = time.perf_counter()
    trainer.train_on_batch(batches[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_on_batch(batches[i % len(batches)])
    steady = (time.perf_counter() - start) / steps
    return {"jit_compile": str(jit_compile), "first_step_seconds": first,
            "steady_ms_per_step": 1000 * steady,
            "one_epoch_of_79_steps_ms_per_step": 1000 * (first + 78 * steady) / 79}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "mnist_trainer_speed.json"))
    args = parser.parse_args(argv)
    from codec.data.datasets import mnist_arrays  # pylint: disable=import-outside-toplevel
    start = time.perf_counter()
    digits, _ = mnist_arrays("train[:10000]")
    read_seconds = time.perf_counter() - start
    results = [measure(jit, digits, args.steps) for jit in (None, False)]
    for r in results:
        print(f"jit_compile={r['jit_compile']:<5}: first step {r['first_step_seconds']:.1f} s, "
              f"then {r['steady_ms_per_step']:.1f} ms/step; a 79-step epoch "
              f"{r['one_epoch_of_79_steps_ms_per_step']:.0f} ms/step")
    Path(args.output).write_text(json.dumps({
        "command": "make bench-mnist-trainer", "batch_size": 128, "steps": args.steps,
        "read_10000_digits_seconds": read_seconds,
        "units": {"first_step_seconds": "trace + compile + one step",
                  "steady_ms_per_step": "mean over --steps steps after the first"},
        "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
