"""Learning-rate schedules of the codec trainers (Keras `LearningRateSchedule`s).

A schedule is a function of the optimizer's own step counter (`optimizer.iterations`), which is
part of every checkpoint: a resumed run continues the schedule exactly where it stopped, and a
fine-tune (a fresh optimizer) starts its own schedule from step 0.

- "constant": the peak rate throughout (rdpipe's recipe before 10⁵-step runs).
- "cosine": linear warm-up from 0 over `warmup_steps`, then a half cosine from the peak down to
  `final_fraction` × peak at `total_steps` (held there after it). The warm-up is what lets the
  peak be higher than a constant rate can be (Adam's first steps have no variance estimate);
  the decay is where short runs gain most (the last steps average out the gradient noise).
"""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

SCHEDULES = ("constant", "cosine")


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """peak × min(1, (step+1)/warmup) × (f + (1−f)·½(1 + cos(π·progress))), where progress goes
    from 0 at the end of the warm-up to 1 at `total_steps` (f = `final_fraction`)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 final_fraction: float = .01):
        if peak <= 0 or total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError("need peak > 0, total_steps ≥ 1 and 0 ≤ warmup_steps < total_steps")
        if not 0 <= final_fraction <= 1:
            raise ValueError("final_fraction must be in [0, 1]")
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_steps, self.final_fraction = int(warmup_steps), float(final_fraction)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.minimum(1., (step + 1.) / max(self.warmup_steps, 1)) \
            if self.warmup_steps else tf.constant(1.)
        progress = tf.clip_by_value((step - self.warmup_steps) /
                                    float(self.total_steps - self.warmup_steps), 0., 1.)
        decay = self.final_fraction + (1. - self.final_fraction) * .5 * (
            1. + tf.cos(math.pi * progress))
        return self.peak * warmup * decay

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "final_fraction": self.final_fraction}


def learning_rate(kind: str, peak: float, total_steps: int, *, warmup_steps: int = 0,
                  final_fraction: float = .01):
    """The schedule (or constant float) of `kind` in `SCHEDULES`."""
    if kind == "constant":
        return float(peak)
    if kind == "cosine":
        return WarmupCosine(peak, total_steps, min(warmup_steps, total_steps - 1),
                            final_fraction)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
