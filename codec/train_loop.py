"""A step-based training loop that can stop at any moment and resume exactly.

Used by the image codecs (`codec/models/bls2017_train.py`) for runs of 10⁵ steps and more, which
take longer than one sitting at the machine:

- **Exact resume.** The state of a run is the trainer's variables, both optimizers (Adam's
  moments and its step counter `iterations`, which drives the learning-rate schedule) and the
  step number. The batch of step `s` is a function of (images, seed, s)
  (`CropSampler.batch`) and so is its uniform noise (stateless, seeded by (seed, s)), so a run
  killed and resumed from its newest checkpoint computes what an uninterrupted run computes.
- **Checkpoints** every `checkpoint_seconds` (default 10 min) and at the end, on a deadline,
  on SIGTERM / SIGINT: `tf.train.CheckpointManager`, whose index file is replaced atomically
  after the data files are written, so a kill during a save leaves the previous checkpoint in
  force. `kill -9` loses at most the steps since the last checkpoint.
- **Progress**: a line every `log_seconds` (step, steps/s, ETA, learning rate, running mean of
  loss / bpp / PSNR) on stdout, the same values appended to `train_log.jsonl`.
- **Probes**: every `probe_every` steps `probe(trainer)` (e.g. actual strings on a few Kodak
  images) is appended to `learning_curve.json`.
- **Scale-out**: the loop runs under the current `tf.distribute` strategy; every replica takes
  its rows of the same global batch, so N workers compute what one process with the same global
  batch computes. Only the chief writes checkpoints and logs into `output_dir`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

METRICS = ("loss", "bpp", "mse", "psnr")


@dataclass
class LoopResult:
    """What `train_steps` did. `finished`: the run reached `total_steps` (else it stopped at a
    deadline or on a signal and can be resumed)."""

    start_step: int
    step: int
    total_steps: int
    seconds: float
    finished: bool
    stop_reason: str = ""
    log: list[dict] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float | None:
        done = self.step - self.start_step
        return done / self.seconds if done and self.seconds > 0 else None


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename (readers never see a
    partial file; a kill mid-write leaves the old content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker of a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def _worker_id() -> int:
    return int(json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0))


class _StopFlag:
    """Set by SIGTERM / SIGINT while the loop runs (the previous handlers come back after)."""

    def __init__(self):
        self.reason = ""
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        self.reason = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def _learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    if callable(rate) and not isinstance(rate, tf.Variable):
        rate = rate(optimizer.iterations)
    return float(tf.convert_to_tensor(rate))


def build_optimizers(trainer) -> None:
    """Creates every optimizer slot now (Adam's moments), so a checkpoint restores them at once
    instead of on first use (what makes a resumed step identical to an uninterrupted one)."""
    prior_optimizer = getattr(trainer, "prior_optimizer", None)
    if prior_optimizer is None:
        trainer.optimizer.build(trainer.trainable_variables)
        return
    prior = {id(v) for v in trainer.prior_parameters.trainable_variables}
    trainer.optimizer.build([v for v in trainer.trainable_variables if id(v) not in prior])
    prior_optimizer.build([v for v in trainer.trainable_variables if id(v) in prior])


def train_steps(trainer, batch_of_step: Callable[[int, int], np.ndarray], output_dir: Path, *,
                total_steps: int, global_batch: int, seed: int,
                checkpoint_seconds: float = 600., log_seconds: float = 30.,
                deadline: float | None = None, probe: Callable | None = None,
                probe_every: int = 0, label: str = "", max_to_keep: int = 2,
                verbose: bool = True) -> LoopResult:
    """Trains `trainer` (built and compiled under the current strategy's scope) until
    `total_steps`, resuming from `output_dir/checkpoints`.

    batch_of_step(step, size) → uint8 `[size, …]`: the global batch of a step (deterministic);
    deadline: `time.time()` at which to checkpoint and stop (None: none);
    probe(trainer) → dict of numbers, every `probe_every` steps (0: never).
    """
    output_dir = Path(output_dir)
    chief = is_chief()
    if chief:
        output_dir.mkdir(parents=True, exist_ok=True)
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"global batch {global_batch} is not divisible by {replicas} replicas")
    with strategy.scope():
        build_optimizers(trainer)
    state = {"trainer": trainer, "optimizer": trainer.optimizer}
    if getattr(trainer, "prior_optimizer", None) is not None:
        state["prior_optimizer"] = trainer.prior_optimizer
    checkpoint = tf.train.Checkpoint(**state)
    directory = output_dir / "checkpoints" if chief else \
        Path(tempfile.mkdtemp(prefix=f"rdpipe-worker{_worker_id()}-"))
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)
    if chief and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    elif not chief and tf.train.latest_checkpoint(str(output_dir / "checkpoints")):
        checkpoint.restore(tf.train.latest_checkpoint(str(output_dir / "checkpoints")))
    start_step = int(trainer.optimizer.iterations.numpy())
    if start_step and verbose and chief:
        print(f"{label}resuming at step {start_step:,} of {total_steps:,}", flush=True)
    log_file, curve_file = output_dir / "train_log.jsonl", output_dir / "learning_curve.json"
    if chief:
        _truncate_logs(log_file, curve_file, start_step)

    @tf.function(autograph=False)
    def distributed_step(images, noise_seed):
        out = strategy.run(trainer.optimize, args=(images, noise_seed))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, out[k], axis=None)
                for k in METRICS}

    rows = global_batch // replicas

    def replica_batches(step: int):
        batch = batch_of_step(step, global_batch)
        return strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(batch[context.replica_id_in_sync_group * rows:
                                              (context.replica_id_in_sync_group + 1) * rows]))

    step, started = start_step, time.perf_counter()
    last_checkpoint = last_log = started
    window = {k: [] for k in METRICS}
    window_start, window_steps = started, 0
    reason, log = "", []
    with _StopFlag() as stop:
        while step < total_steps:
            out = distributed_step(replica_batches(step),
                                   tf.constant([seed, step], tf.int64))
            if not math.isfinite(float(out["loss"])):
                # Nothing of this step is saved: the newest checkpoint is still a good state.
                raise FloatingPointError(
                    f"{label}loss is {float(out['loss'])} at step {step + 1}: training "
                    "diverged (lower the learning rate, then run again to resume from the "
                    f"checkpoint at step {_latest_step(manager)})")
            step += 1
            window_steps += 1
            for k in METRICS:
                window[k].append(float(out[k]))
            now = time.perf_counter()
            if probe is not None and probe_every and step % probe_every == 0 and chief:
                point = {"step": step, **probe(trainer)}
                _append_curve(curve_file, point)
                if verbose:
                    print(f"{label}probe at step {step:,}: " + ", ".join(
                        f"{k} {v:.4g}" for k, v in point.items() if k != "step"), flush=True)
                now = time.perf_counter()
            if now - last_log >= log_seconds or step == total_steps:
                rate = window_steps / max(now - window_start, 1e-9)
                entry = {"step": step, "time": time.time(), "steps_per_second": rate,
                         "learning_rate": _learning_rate(trainer.optimizer),
                         **{k: float(np.mean(v)) for k, v in window.items()}}
                log.append(entry)
                if chief:
                    with open(log_file, "a") as f:
                        f.write(json.dumps(entry) + "\n")
                if verbose and chief:
                    print(f"{label}step {step:,}/{total_steps:,} ({100 * step / total_steps:.1f} %)"
                          f" {rate:.2f} steps/s ETA {_format_seconds((total_steps - step) / rate)}"
                          f" lr {entry['learning_rate']:.2e} loss {entry['loss']:.4f} "
                          f"bpp {entry['bpp']:.4f} PSNR {entry['psnr']:.2f} dB", flush=True)
                window = {k: [] for k in METRICS}
                window_start, window_steps, last_log = now, 0, now
            if deadline is not None and time.time() >= deadline:
                reason = "deadline"
            reason = reason or stop.reason
            if reason or now - last_checkpoint >= checkpoint_seconds:
                manager.save(checkpoint_number=step)
                last_checkpoint = time.perf_counter()
            if reason:
                break
    if step == total_steps and manager.latest_checkpoint != str(directory / f"ckpt-{step}"):
        manager.save(checkpoint_number=step)
    seconds = time.perf_counter() - started
    if not chief:      # another worker's scratch checkpoints: only the chief's are kept
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
    if reason and verbose and chief:
        print(f"{label}stopped ({reason}) at step {step:,}; checkpoint written, run again to "
              "resume", flush=True)
    return LoopResult(start_step, step, total_steps, seconds, step >= total_steps, reason, log)


def _latest_step(manager: tf.train.CheckpointManager) -> int:
    latest = manager.latest_checkpoint
    return int(latest.rsplit("-", 1)[-1]) if latest else 0


def _truncate_logs(log_file: Path, curve_file: Path, step: int) -> None:
    """Drops log lines and probes after `step`: a resumed run repeats those steps exactly."""
    if log_file.exists():
        lines = [line for line in log_file.read_text().splitlines()
                 if line.strip() and json.loads(line)["step"] <= step]
        atomic_write_text(log_file, "".join(line + "\n" for line in lines))
    if curve_file.exists():
        curve = [p for p in json.loads(curve_file.read_text()) if p["step"] <= step]
        atomic_write_text(curve_file, json.dumps(curve, indent=1) + "\n")


def _append_curve(curve_file: Path, point: dict) -> None:
    curve = json.loads(curve_file.read_text()) if curve_file.exists() else []
    curve = [p for p in curve if p["step"] < point["step"]] + [point]
    atomic_write_text(curve_file, json.dumps(curve, indent=1) + "\n")


def read_log(output_dir: Path) -> list[dict]:
    """The entries of `output_dir/train_log.jsonl` (empty if none)."""
    path = Path(output_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
