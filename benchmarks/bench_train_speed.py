"""Where a Ballé 2017 train step spends its time on this CPU, and which settings are fastest.

1. GDN forward + backward at 8 × 32² × 128: the old broadcast `matvec` form against the 1×1
   convolution now in codec/layers/gdn.py (same tensors, gradients compared).
2. A whole train step (forward, backward, Adam) for the old recipe (Keras convs + matvec GDN)
   and the new one (RDFT SignalConv2D + conv GDN), with and without `jit_compile`, for 128²
   and 256² crops, and under TF's default vs explicit thread settings: steps/s and pixels/s.
3. Per-layer profile of the default step: each layer's forward + backward timed on its real
   input shape, the entropy model (prior) likewise — the share of the step each one takes.

Writes benchmarks/results/train_speed.json (+ .md and .png). Run: `make bench-train-speed`
(~10 min on 2 cores). Every variant is timed in this one process, on this machine.
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


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--filters", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--intra-threads", type=int, default=0,
                        help="TF intra-op threads (0 = TF default); set before TF starts")
    parser.add_argument("--inter-threads", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=None,
                        help="subset of variant names to time (default: all)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                                "train_speed.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _median_seconds(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def gdn_comparison(args) -> dict:
    """Old (`tf.linalg.matvec`) vs new (1×1 conv) GDN: seconds for forward + backward."""
    import numpy as np
    import tensorflow as tf
    from codec.layers.gdn import GDN

    x = tf.constant(np.random.default_rng(0).normal(
        size=(args.batch_size, 32, 32, args.filters)).astype(np.float32))
    layer = GDN()
    layer.build(x.shape)

    def old_form(x):
        return x * tf.math.rsqrt(layer.beta + tf.linalg.matvec(layer.gamma, tf.square(x)))

    results, grads = {}, {}
    for name, fn in (("matvec (old)", old_form), ("conv 1x1 (new)", layer)):
        @tf.function
        def step(fn=fn):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(fn(x)))
            return tape.gradient(loss, layer.trainable_variables)
        grads[name] = [g.numpy() for g in step()]
        results[name] = _median_seconds(step, args.steps, args.warmup)
    diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30))
               for a, b in zip(*grads.values()))
    return {"shape": list(x.shape), "seconds_forward_backward": results,
            "speedup": results["matvec (old)"] / results["conv 1x1 (new)"],
            "max_relative_gradient_difference": diff}


VARIANTS = {
    # name: (legacy transforms + matvec GDN, patch, jit)
    "old recipe 128²": ("old", 128, False),
    "new 128²": ("new", 128, False),
    "new 128² jit": ("new", 128, True),
    "new 256²": ("new", 256, False),
    "new 256² jit": ("new", 256, True),
    "new plain-kernel 128²": ("plain", 128, False),
}


def step_speed(args) -> dict:
    """Steps/s and pixels/s of a full train step per variant."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from codec.layers import gdn as gdn_module
    from codec.models.bls2017 import TransformOptions
    from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer

    rows = {}
    names = args.variants or list(VARIANTS)
    for name in names:
        kind, patch, jit = VARIANTS[name]
        options = TransformOptions.legacy() if kind == "old" else (
            TransformOptions(parameterization="plain") if kind == "plain" else TransformOptions())
        config = ImageTrainConfig(filters=args.filters, batch_size=args.batch_size,
                                  patch_size=patch, jit_compile=jit,
                                  parameterization=options.parameterization,
                                  kernel_init=options.kernel_init,
                                  last_analysis_bias=options.last_analysis_bias,
                                  prior_lr_multiplier=1. if kind == "old" else 10.)
        original_mix = gdn_module.channel_mix
        if kind == "old":   # the broadcast batched matvec GDN of rdpipe ≤ 0.x
            gdn_module.channel_mix = lambda x, m: tf.linalg.matvec(m, x)
        try:
            keras.backend.clear_session()
            trainer = build_image_trainer(config)
            batch = tf.constant(np.random.default_rng(0).integers(
                0, 256, (args.batch_size, patch, patch, 3)).astype(np.uint8))
            step = trainer.make_train_function()
            data = iter(tf.data.Dataset.from_tensors(batch).repeat())
            seconds = _median_seconds(lambda: step(data), args.steps, args.warmup)
        finally:
            gdn_module.channel_mix = original_mix
        pixels = args.batch_size * patch * patch
        rows[name] = {"seconds_per_step": seconds, "steps_per_second": 1 / seconds,
                      "pixels_per_second": pixels / seconds, "patch_size": patch,
                      "jit_compile": jit, "recipe": kind}
        print(f"{name:24s} {seconds * 1e3:8.1f} ms/step  {pixels / seconds / 1e3:8.1f} kpx/s",
              flush=True)
    return rows


def layer_profile(args) -> dict:
    """Forward + backward seconds of each layer of the default model at 8 × 128²."""
    import numpy as np
    import tensorflow as tf
    from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer

    trainer = build_image_trainer(ImageTrainConfig(filters=args.filters,
                                                   batch_size=args.batch_size))
    x = tf.constant(np.random.default_rng(0).uniform(
        size=(args.batch_size, 128, 128, 3)).astype(np.float32))
    rows = {}

    def time_layer(label, fn, inputs, variables):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                out = fn(inputs)
                loss = tf.reduce_sum(out if not isinstance(out, tuple) else out[1])
            return tape.gradient(loss, [inputs] + list(variables))
        rows[label] = _median_seconds(step, args.steps, args.warmup)

    h = x
    for layer in trainer.analysis_transform.layers:
        time_layer(f"analysis/{layer.name}", layer, h, layer.trainable_variables)
        h = layer(h)
    time_layer("entropy model (prior)", lambda y: trainer.entropy_model(y, training=True), h,
               trainer.prior_parameters.trainable_variables)
    for layer in trainer.synthesis_transform.layers:
        time_layer(f"synthesis/{layer.name}", layer, h, layer.trainable_variables)
        h = layer(h)
    total = sum(rows.values())
    return {name: {"seconds": s, "share": s / total} for name, s in rows.items()}


def child(args) -> None:
    import tensorflow as tf
    if args.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    print(json.dumps({"gdn": gdn_comparison(args), "steps": step_speed(args),
                      "profile": layer_profile(args)}))


def main(argv=None) -> int:
    args = _parse(argv)
    if args.child:
        child(args)
        return 0
    import subprocess
    runs = {}
    # Thread settings must be set before TF initializes: one subprocess per setting.
    for label, threads in (("tf default", (0, 0)), ("intra 2 / inter 1", (2, 1)),
                           ("intra 1 / inter 1", (1, 1))):
        command = [sys.executable, __file__, "--child", "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--filters", str(args.filters),
                   "--batch-size", str(args.batch_size),
                   "--intra-threads", str(threads[0]), "--inter-threads", str(threads[1])]
        if label != "tf default":   # only the default step variant under other thread settings
            command += ["--variants", "new 128²"]
        elif args.variants:
            command += ["--variants", *args.variants]
        print(f"== threads: {label}", flush=True)
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
        for name, row in runs[label]["steps"].items():
            print(f"  {name:24s} {row['seconds_per_step'] * 1e3:8.1f} ms/step "
                  f"{row['pixels_per_second'] / 1e3:8.1f} kpx/s", flush=True)
    write_report(args, runs)
    return 0


def write_report(args, runs: dict) -> None:
    base = runs["tf default"]
    steps = base["steps"]
    old = steps.get("old recipe 128²")
    new = steps.get("new 128²")
    best_name = max(steps, key=lambda n: steps[n]["pixels_per_second"])
    result = {
        "machine": f"{os.cpu_count()} CPU cores",
        "gdn": base["gdn"],
        "train_step": steps,
        "threads": {label: run["steps"]["new 128²"] for label, run in runs.items()
                    if "new 128²" in run["steps"]},
        "speedup_new_vs_old_step": old["seconds_per_step"] / new["seconds_per_step"]
        if old and new else None,
        "fastest_pixels_per_second": best_name,
        "profile_default_step_128": base["profile"],
        "units": {"seconds": "median wall seconds", "pixels_per_second": "training pixels "
                  "(batch × patch²) per second"},
        "command": "make bench-train-speed",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| variant | ms/step | steps/s | kpixels/s |", "|---|---|---|---|"]
    for name, row in steps.items():
        lines.append(f"| {name} | {row['seconds_per_step'] * 1e3:.1f} | "
                     f"{row['steps_per_second']:.2f} | {row['pixels_per_second'] / 1e3:.1f} |")
    lines += ["", "| threads (new 128²) | ms/step |", "|---|---|"]
    for label, row in result["threads"].items():
        lines.append(f"| {label} | {row['seconds_per_step'] * 1e3:.1f} |")
    lines += ["", "| layer (fwd+bwd, 8×128²) | ms | share |", "|---|---|---|"]
    for name, row in base["profile"].items():
        lines.append(f"| {name} | {row['seconds'] * 1e3:.1f} | {row['share'] * 100:.0f} % |")
    gdn = base["gdn"]
    lines += ["", f"GDN fwd+bwd at {gdn['shape']}: "
              + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in gdn["seconds_forward_backward"].items())
              + f" ({gdn['speedup']:.0f}×; gradients differ by ≤ "
              f"{gdn['max_relative_gradient_difference']:.1e} relative)"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
