"""Serving benchmark: gRPC overhead at batch 1 and dynamic-batching throughput.

1. Latency (p50/p99, ms) of one compress + decompress round trip of a single digit:
   in-process (the same SavedModel signatures called directly, numpy in/out) vs over gRPC
   (`rdpipe serve` in its own process, `CodecClient` from this one).
2. Throughput (round trips/s) with `--clients` (32) concurrent clients, each looping on single-
   digit compress + decompress for `--seconds`, against a server with batching off and on.

Writes benchmarks/results/serving.json (top-level `grpc_overhead_ratio` = gRPC p50 / in-process
p50, `batching_speedup` = throughput on / off) and serving.png.
Targets (issue 4): grpc_overhead_ratio ≤ 1.3, batching_speedup ≥ 3.
Run: `make bench-serving` (≈2 min; trains a 1-epoch model unless `--model-dir` is given — the
architecture, not the training, sets the speed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from codec.data.datasets import mnist_arrays  # noqa: E402
from serving.client import CodecClient  # noqa: E402

MODEL = "mnist_l500"


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "n": len(values)}


def in_process_latency(model_dir: Path, digits: np.ndarray, iterations: int) -> list[float]:
    import tensorflow_compression_ops  # noqa: F401  (the tfc coder's ops)
    module = tf.saved_model.load(str(model_dir))
    compress, decompress = module.signatures["compress"], module.signatures["decompress"]
    times = []
    for i in range(iterations + 20):
        image = digits[i % len(digits)][None]
        start = time.perf_counter()
        strings = compress(images=tf.constant(image))["strings"].numpy()
        decompress(strings=tf.constant(strings))["images"].numpy()
        if i >= 20:  # warm-up excluded
            times.append(time.perf_counter() - start)
    return times


def grpc_latency(target: str, digits: np.ndarray, iterations: int) -> list[float]:
    client = CodecClient(target, model=MODEL)
    times = []
    for i in range(iterations + 20):
        image = digits[i % len(digits)][None]
        start = time.perf_counter()
        client.decompress(client.compress(image)[0])
        if i >= 20:
            times.append(time.perf_counter() - start)
    client.close()
    return times


def throughput(target: str, digits: np.ndarray, clients: int, seconds: float) -> dict:
    """Round trips/s over `clients` threads, each with its own channel."""
    stop, counts, latencies = threading.Event(), [0] * clients, [[] for _ in range(clients)]

    def loop(k: int) -> None:
        client = CodecClient(target, model=MODEL)
        client.decompress(client.compress(digits[:1])[0])  # connect + warm up
        barrier.wait()
        i = k
        while not stop.is_set():
            start = time.perf_counter()
            client.decompress(client.compress(digits[i % len(digits)][None])[0])
            latencies[k].append(time.perf_counter() - start)
            counts[k] += 1
            i += clients
        client.close()

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    return {"round_trips_per_s": sum(counts) / elapsed, "clients": clients,
            "seconds": elapsed, **percentiles_ms(sum(latencies, []))}


class ServerProcess:
    """`rdpipe serve` in a subprocess on free ports."""

    def __init__(self, base: Path, batching: bool, max_batch_size: int, timeout_micros: int):
        args = [sys.executable, "-m", "cli.main", "serve", "--model-base-path", str(base),
                "--port", "0", "--rest-port", "0", "--log-format", "text"]
        if batching:
            args += ["--enable-batching", "--max-batch-size", str(max_batch_size),
                     "--batch-timeout-micros", str(timeout_micros)]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("serving"):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.target = "127.0.0.1:" + line.split("gRPC 127.0.0.1:")[1].split(",")[0]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def train_quick_model(out: Path) -> Path:
    from codec.models.mnist_train import MnistTrainConfig, train_mnist
    config = MnistTrainConfig(lmbda=500., epochs=1, train_split="train[:10000]",
                              validation_split="test[:500]", verbose=0)
    train_mnist(config, out)
    return out / "saved_model"


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["in-process", "gRPC"]
    lat = [result["latency"]["in_process"], result["latency"]["grpc"]]
    x = np.arange(2)
    left.bar(x - .2, [v["p50_ms"] for v in lat], .4, label="p50")
    left.bar(x + .2, [v["p99_ms"] for v in lat], .4, label="p99")
    left.set_xticks(x, names)
    left.set_ylabel("ms per compress + decompress (1 digit)")
    left.set_title(f"gRPC overhead ×{result['grpc_overhead_ratio']:.2f} (p50)")
    left.legend()
    tput = [result["throughput"]["batching_off"], result["throughput"]["batching_on"]]
    right.bar(["batching off", "batching on"], [v["round_trips_per_s"] for v in tput],
              color=["tab:gray", "tab:green"])
    right.set_ylabel(f"round trips / s ({tput[0]['clients']} clients)")
    right.set_title(f"batching speedup ×{result['batching_speedup']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="SavedModel to serve (default: train a quick one)")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rdpipe-bench-serving-"))
    model_dir = Path(args.model_dir) if args.model_dir else train_quick_model(work / "train")
    base = work / "models"
    shutil.copytree(model_dir, base / MODEL / "1")
    digits = mnist_arrays("test[:1000]")[0]

    print(f"in-process latency ({args.iterations} round trips)…", flush=True)
    local = percentiles_ms(in_process_latency(base / MODEL / "1", digits, args.iterations))
    result = {"latency": {"in_process": local}, "throughput": {}}
    for batching in (False, True):
        server = ServerProcess(base, batching, args.max_batch_size, args.batch_timeout_micros)
        try:
            if not batching:
                print("gRPC latency…", flush=True)
                result["latency"]["grpc"] = percentiles_ms(
                    grpc_latency(server.target, digits, args.iterations))
            label = "batching_on" if batching else "batching_off"
            print(f"throughput, {args.clients} clients, {label}…", flush=True)
            result["throughput"][label] = throughput(server.target, digits, args.clients,
                                                     args.seconds)
        finally:
            server.close()
    result = {
        "grpc_overhead_ratio": result["latency"]["grpc"]["p50_ms"] / local["p50_ms"],
        "batching_speedup": (result["throughput"]["batching_on"]["round_trips_per_s"]
                             / result["throughput"]["batching_off"]["round_trips_per_s"]),
        "targets": {"grpc_overhead_ratio_max": 1.3, "batching_speedup_min": 3.0},
        **result,
        "batching": {"max_batch_size": args.max_batch_size,
                     "batch_timeout_micros": args.batch_timeout_micros},
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__, "machine": platform.machine()},
        "command": "make bench-serving",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "serving.png")
    print(json.dumps({k: result[k] for k in ("grpc_overhead_ratio", "batching_speedup")}))
    print(f"in-process p50 {local['p50_ms']:.2f} ms, gRPC p50 "
          f"{result['latency']['grpc']['p50_ms']:.2f} ms; throughput off "
          f"{result['throughput']['batching_off']['round_trips_per_s']:.0f}/s, on "
          f"{result['throughput']['batching_on']['round_trips_per_s']:.0f}/s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
