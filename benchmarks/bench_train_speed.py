"""Where a Ballé 2017 train step spends its time on this CPU, and which settings are fastest:
float32 vs mixed_bfloat16 per layer and per step (128² and 256², batch 8 and 16), FLOPs per
step and the fraction of this CPU's peak (`flops_per_step`, `cpu_peak_flops` say how).

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
    # name: (legacy transforms + matvec GDN, patch, jit, precision policy, batch size)
    "old recipe 128²": ("old", 128, False, "", 8),
    "new 128²": ("new", 128, False, "", 8),
    "new 128² jit": ("new", 128, True, "", 8),
    "new 256²": ("new", 256, False, "", 8),
    "new 256² jit": ("new", 256, True, "", 8),
    "new plain-kernel 128²": ("plain", 128, False, "", 8),
    "new 128² bf16": ("new", 128, False, "mixed_bfloat16", 8),
    "new 256² bf16": ("new", 256, False, "mixed_bfloat16", 8),
    "new 128² batch 16": ("new", 128, False, "", 16),
    "new 128² batch 16 bf16": ("new", 128, False, "mixed_bfloat16", 16),
    "new 256² batch 16": ("new", 256, False, "", 16),
    "new 256² batch 16 bf16": ("new", 256, False, "mixed_bfloat16", 16),
}
# Variants timed under every thread setting (the rest only under TF's default threads).
THREAD_VARIANTS = ("new 128²", "new 128² bf16")


def conv_macs(filters: int, channels: int = 3) -> dict:
    """Multiply-accumulates per input pixel of each layer of the Ballé 2017 transforms (the
    analysis at 1/16, 1/64, 1/256 of the input resolution after its three strides; the
    synthesis mirrored; GDN/IGDN: one C×C channel mix per pixel of their resolution)."""
    n = filters
    return {
        "analysis/conv_0": 81 * channels * n / 16, "analysis/gdn_0": n * n / 16,
        "analysis/conv_1": 25 * n * n / 64, "analysis/gdn_1": n * n / 64,
        "analysis/conv_2": 25 * n * n / 256,
        # A transposed conv costs input pixels × k² × Cin × Cout, like the conv it mirrors.
        "synthesis/conv_0": 25 * n * n / 256, "synthesis/igdn_0": n * n / 64,
        "synthesis/conv_1": 25 * n * n / 64, "synthesis/igdn_1": n * n / 16,
        "synthesis/conv_2": 81 * n * channels / 16,
    }


def flops_per_step(filters: int, batch: int, patch: int) -> float:
    """FLOPs of one train step: 2 FLOPs per MAC, forward + backward ≈ 3 × forward (the
    backward pass computes the gradient of the input and of the weights, each one forward's
    worth of MACs; the first layer needs no input gradient). Elementwise work (GDN's sqrt,
    the prior, Adam) is a few % and not counted."""
    macs = conv_macs(filters)
    forward = sum(macs.values())
    backward = 2 * forward - macs["analysis/conv_0"]
    return 2. * (forward + backward) * batch * patch * patch


def cpu_peak_flops() -> dict:
    """This CPU's peak, from what it is: cores × clock × FLOPs per cycle per core.

    AMD family 26 (Zen 5) executes AVX-512 on two 512-bit FMA pipes: 2 × 16 fp32 FMAs = 64
    fp32 FLOPs per cycle; VDPBF16PS does 32 bf16 products summed into 16 fp32 lanes per
    512-bit instruction, two per cycle: 128 FLOPs per cycle. Intel cores with AMX
    (amx_bf16) reach 1024 bf16 FLOPs per cycle on the tile unit instead. The clock is the
    nominal (TSC) one from /proc/cpuinfo; boost clocks, where the hypervisor allows them,
    make the true peak higher and the fractions below upper bounds."""
    flags, family, mhz = set(), None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = set(value.split())
            elif key == "cpu family" and family is None:
                family = int(value)
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
    except OSError:
        pass
    cores = os.cpu_count() or 1
    ghz = (mhz or 0.) / 1e3
    fp32_per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 16
    if "amx_bf16" in flags:
        bf16_per_cycle = 1024
    elif "avx512_bf16" in flags:
        bf16_per_cycle = 2 * fp32_per_cycle
    else:
        bf16_per_cycle = fp32_per_cycle   # bf16 emulated in fp32 units
    return {"cores": cores, "ghz": ghz, "cpu_family": family,
            "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "fp32_flops_per_cycle_per_core": fp32_per_cycle,
            "bf16_flops_per_cycle_per_core": bf16_per_cycle,
            "fp32_peak_flops": cores * ghz * 1e9 * fp32_per_cycle,
            "bf16_peak_flops": cores * ghz * 1e9 * bf16_per_cycle}


def step_speed(args) -> dict:
    """Steps/s, pixels/s, FLOP/s and the fraction of this CPU's peak of a full train step per
    variant."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from codec.layers import gdn as gdn_module
    from codec.models.bls2017 import TransformOptions
    from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer

    peak = cpu_peak_flops()
    rows = {}
    names = args.variants or list(VARIANTS)
    for name in names:
        kind, patch, jit, policy, batch_size = VARIANTS[name]
        options = TransformOptions.legacy() if kind == "old" else (
            TransformOptions(parameterization="plain") if kind == "plain" else TransformOptions())
        config = ImageTrainConfig(filters=args.filters, batch_size=batch_size,
                                  patch_size=patch, jit_compile=jit,
                                  parameterization=options.parameterization,
                                  kernel_init=options.kernel_init,
                                  last_analysis_bias=options.last_analysis_bias,
                                  prior_lr_multiplier=1. if kind == "old" else 10.,
                                  precision_policy=policy)
        original_mix = gdn_module.channel_mix
        if kind == "old":   # the broadcast batched matvec GDN of rdpipe ≤ 0.x
            gdn_module.channel_mix = lambda x, m: tf.linalg.matvec(m, x)
        try:
            keras.backend.clear_session()
            trainer = build_image_trainer(config)
            batch = tf.constant(np.random.default_rng(0).integers(
                0, 256, (batch_size, patch, patch, 3)).astype(np.uint8))
            step = trainer.make_train_function()
            data = iter(tf.data.Dataset.from_tensors(batch).repeat())
            seconds = _median_seconds(lambda: step(data), args.steps, args.warmup)
        finally:
            gdn_module.channel_mix = original_mix
        pixels = batch_size * patch * patch
        flops = flops_per_step(args.filters, batch_size, patch)
        peak_flops = peak["bf16_peak_flops" if policy else "fp32_peak_flops"]
        rows[name] = {"seconds_per_step": seconds, "steps_per_second": 1 / seconds,
                      "pixels_per_second": pixels / seconds, "patch_size": patch,
                      "batch_size": batch_size, "precision": policy or "float32",
                      "jit_compile": jit, "recipe": kind, "flops_per_step": flops,
                      "flops_per_second": flops / seconds,
                      "fraction_of_peak": flops / seconds / peak_flops if peak_flops else None}
        print(f"{name:24s} {seconds * 1e3:8.1f} ms/step  {pixels / seconds / 1e3:8.1f} kpx/s "
              f"{flops / seconds / 1e9:6.0f} GFLOP/s", flush=True)
    return rows


def layer_profile(args, policy: str = "") -> dict:
    """Forward + backward seconds of each layer of the default model at 8 × 128² (under the
    precision `policy`: the layers compute in bfloat16 under "mixed_bfloat16")."""
    import numpy as np
    import tensorflow as tf
    from codec.models.bls2017_train import ImageTrainConfig, build_image_trainer

    trainer = build_image_trainer(ImageTrainConfig(filters=args.filters,
                                                   batch_size=args.batch_size,
                                                   precision_policy=policy))
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
    macs = conv_macs(args.filters)
    pixels = args.batch_size * 128 * 128
    return {name: {"seconds": s, "share": s / total,
                   **({"gflops_per_second": 6 * macs[name] * pixels / s / 1e9}
                      if name in macs else {})} for name, s in rows.items()}


def child(args) -> None:
    import tensorflow as tf
    if args.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    full = not args.variants or len(args.variants) > len(THREAD_VARIANTS)
    print(json.dumps({"gdn": gdn_comparison(args), "steps": step_speed(args),
                      "profile": layer_profile(args) if full else None,
                      "profile_bf16": layer_profile(args, "mixed_bfloat16") if full else None}))


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
        if label != "tf default":   # only the default step variants under other threads
            command += ["--variants", *THREAD_VARIANTS]
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
    old, new = steps.get("old recipe 128²"), steps.get("new 128²")
    best_name = max(steps, key=lambda n: steps[n]["pixels_per_second"])
    bf16_speedups = {name: steps[name.replace(" bf16", "")]["seconds_per_step"] /
                     row["seconds_per_step"] for name, row in steps.items()
                     if row["precision"] != "float32" and name.replace(" bf16", "") in steps}
    result = {
        "machine": f"{os.cpu_count()} CPU cores",
        "peak": cpu_peak_flops(),
        "gdn": base["gdn"],
        "train_step": steps,
        "bf16_speedup_vs_fp32": bf16_speedups,
        "threads": {label: {name: run["steps"][name] for name in THREAD_VARIANTS
                            if name in run["steps"]} for label, run in runs.items()},
        "speedup_new_vs_old_step": old["seconds_per_step"] / new["seconds_per_step"]
        if old and new else None,
        "fastest_pixels_per_second": best_name,
        "profile_default_step_128": base["profile"],
        "profile_bf16_step_128": base["profile_bf16"],
        "units": {"seconds": "median wall seconds", "pixels_per_second": "training pixels "
                  "(batch × patch²) per second", "flops_per_step": "2 × MACs of the convs "
                  "and GDN channel mixes, forward + backward (bench_train_speed."
                  "flops_per_step)", "fraction_of_peak": "FLOP/s over the peak of the "
                  "precision the convs run in (cpu_peak_flops)"},
        "command": "make bench-train-speed",
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    peak = result["peak"]
    lines = [f"Peak ({peak['cores']} cores × {peak['ghz']:.2f} GHz): fp32 "
             f"{peak['fp32_peak_flops'] / 1e9:.0f} GFLOP/s "
             f"({peak['fp32_flops_per_cycle_per_core']} FLOP/cycle/core), bf16 "
             f"{peak['bf16_peak_flops'] / 1e9:.0f} GFLOP/s "
             f"({peak['bf16_flops_per_cycle_per_core']}); AMX: {'yes' if peak['amx'] else 'no'}",
             "", "| variant | ms/step | steps/s | kpixels/s | GFLOP/step | GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|"]
    for name, row in steps.items():
        fraction = row.get("fraction_of_peak")
        lines.append(f"| {name} | {row['seconds_per_step'] * 1e3:.1f} | "
                     f"{row['steps_per_second']:.2f} | {row['pixels_per_second'] / 1e3:.1f} | "
                     f"{row['flops_per_step'] / 1e9:.1f} | {row['flops_per_second'] / 1e9:.0f} | "
                     f"{'' if fraction is None else f'{100 * fraction:.0f} %'} |")
    lines += ["", "| bf16 speed-up over fp32 | × |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in bf16_speedups.items()]
    lines += ["", "| threads | " + " | ".join(f"{n} ms/step" for n in THREAD_VARIANTS) + " |",
              "|---|" + "---|" * len(THREAD_VARIANTS)]
    for label, row in result["threads"].items():
        lines.append(f"| {label} | " + " | ".join(
            f"{row[n]['seconds_per_step'] * 1e3:.1f}" if n in row else "" for n in THREAD_VARIANTS)
            + " |")
    lines += ["", "| layer (fwd+bwd, 8×128²) | fp32 ms | bf16 ms | bf16 × | fp32 GFLOP/s | "
              "bf16 GFLOP/s |", "|---|---|---|---|---|---|"]
    for name, row in (base["profile"] or {}).items():   # None for a --variants subset
        bf16 = base["profile_bf16"][name]
        lines.append(f"| {name} | {row['seconds'] * 1e3:.1f} | {bf16['seconds'] * 1e3:.1f} | "
                     f"{row['seconds'] / bf16['seconds']:.2f} | "
                     f"{row.get('gflops_per_second', float('nan')):.0f} | "
                     f"{bf16.get('gflops_per_second', float('nan')):.0f} |")
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
