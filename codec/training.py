"""Resumable Keras training shared by the codec trainers (MNIST, Ballé 2017)."""
from __future__ import annotations

import functools
import time
from pathlib import Path

import tensorflow as tf
import tf_keras as keras


PRECISION_POLICIES = ("", "float32", "mixed_bfloat16", "auto")


@functools.lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """Whether this CPU (Linux /proc/cpuinfo) has AMX bfloat16 tiles (`amx_bf16`)."""
    try:
        return " amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def resolve_precision_policy(policy: str) -> str:
    """"auto" → "mixed_bfloat16" where it pays, else "float32"; other policies unchanged.

    Measured (benchmarks/results/train_speed.json, one Ballé 2017 train step, 8 × 128²): on a
    Xeon with AMX, bfloat16 steps are 1.6–2.1× faster than float32; on a Xeon with AVX512-BF16
    but no AMX (oneDNN then emulates bf16 convolutions), 1.3× *slower* (279 vs 213 ms). GPUs
    are not measured here, so "auto" keeps float32 on them."""
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if cpu_has_amx() and not tf.config.list_physical_devices("GPU") \
        else "float32"


def fit_resumable(trainer: keras.Model, train: tf.data.Dataset, output_dir: Path, *,
                  epochs: int, verbose: int, extra_callbacks: tuple = (),
                  **fit_kwargs) -> tuple[keras.callbacks.History, float, int]:
    """`trainer.fit` with a checkpoint (trainer + optimizer) after every epoch under
    `output_dir/checkpoints` and TensorBoard logs under `output_dir/logs`; resumes from the
    newest checkpoint; `extra_callbacks` run after the checkpoint. Returns (history, seconds
    spent in fit, epoch it started from)."""
    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, output_dir / "checkpoints", max_to_keep=2)
    initial_epoch = 0
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        initial_epoch = int(manager.latest_checkpoint.rsplit("-", 1)[-1])
        print(f"resuming from {manager.latest_checkpoint} (epoch {initial_epoch})")

    class _Checkpointer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            manager.save(checkpoint_number=epoch + 1)

    start = time.perf_counter()
    history = trainer.fit(train, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose,
                          callbacks=[keras.callbacks.TensorBoard(str(output_dir / "logs")),
                                     _Checkpointer(), *extra_callbacks], **fit_kwargs)
    return history, time.perf_counter() - start, initial_epoch


def export_codec_module(module_class: type, trainer, path, config):
    """Builds a codec's export module from its trainer (`module_class(trainer, tail_mass,
    precision, coder)`: the coding tables come from the trained prior) and writes the
    SavedModel with the module's signatures. Returns the in-process module."""
    codec = module_class(trainer, tail_mass=config.tail_mass, precision=config.precision,
                         coder=config.coder)
    tf.saved_model.save(codec, str(path), signatures=codec.signatures())
    return codec
