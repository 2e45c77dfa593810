"""The codec-family interface: everything the pipeline, the gate, the CLI and serving need to
know about a codec, as values and functions (no subclass tree).

A family is declared once, in its module under `codec/families/` (`FAMILY = CodecFamily(...)`),
and registered by one line in `codec/families/__init__.py`. Nothing outside the family branches
on its name: the pipeline, the Trainer's run_fn, the gate and `rdpipe train` look it up.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@dataclasses.dataclass(frozen=True)
class GateSpec:
    """One operating point of a pipeline: the λ to train and the gate it must pass.

    max_rate: in the family's rate unit (MNIST: actual bits per digit; images: actual bpp);
    distortion_bound: on the family's gated distortion metric, in its direction (MNIST: MAE on
    [0, 1] must be ≤ it; images: RGB PSNR in dB must be ≥ it).
    """
    lmbda: float
    max_rate: float
    distortion_bound: float

    @property
    def tag(self) -> str:
        """Stable id fragment: `Trainer.lmbda_2000`, `Trainer.lmbda_0p01`."""
        return f"{self.lmbda:g}".replace(".", "p")


@dataclasses.dataclass(frozen=True)
class CodecFamily:
    """A trainable codec family (see module docstring).

    Attributes:
      name: registry key and `rdpipe train NAME` (e.g. "mnist", "bls2017").
      description: one line for listings.
      config_class: the dataclass of training options (Trainer custom_config keys).
      input_spec: the exported `compress` input without the batch axis: `(28, 28, 1)` (fixed
        size) or `(None, None, 3)` (any size).
      rate_key / rate_unit: the gated rate metric and its unit ("bits_per_digit",
        "bits/image"; "bpp", "bits/pixel") — actual bytes × 8, never the model's estimate.
      distortion_key / higher_is_better: the gated distortion metric and its direction;
        distortion_label / distortion_unit: how it is printed ("MAE", ""; "PSNR", "dB").
      objective: how the gate compares with a blessed baseline, e.g. "bits + λ·MAE".
      metric_keys: metrics stored as properties on the ModelBlessing.
      source: default data source of the pipeline ("mnist_idx" or "image_folder").
      schema: TFMD schema of that source's examples.
      serving_prefix: pushed models are served as `<prefix>_l<tag>`.
      train_from_examples: `(config, train_files, eval_files, output_dir, saved_model_dir) →
        in-process codec` — the pipeline's Trainer: reads its example files, trains one λ,
        exports the SavedModel.
      train_from_config: `(config, output_dir) → summary dict` — `rdpipe train`: the data the
        config names (TFDS MNIST, image folders), checkpoints, logs, `output_dir/saved_model`.
      eval_images: `(file_patterns, limit) → uint8 images` (an array for fixed-size families,
        a list otherwise) for the gate.
      measure: `(SavedCodec, images, lmbda) → metrics dict` with rate_key, distortion_key and
        "objective".
      golden: `(in-process codec, eval example files) → (images, strings, decoded)`, the
        round trip the ServingCheck replays against the export.
      default_gates: the λ grid and thresholds of the family's full pipeline config.
    """
    name: str
    description: str
    config_class: type
    input_spec: tuple
    rate_key: str
    rate_unit: str
    distortion_key: str
    higher_is_better: bool
    distortion_label: str
    distortion_unit: str
    objective: str
    metric_keys: tuple
    source: str
    schema: Path
    serving_prefix: str
    train_from_examples: Callable[..., Any]
    train_from_config: Callable[..., dict]
    eval_images: Callable[..., Any]
    measure: Callable[..., dict]
    golden: Callable[..., tuple]
    default_gates: tuple = ()

    def make_config(self, options: dict | None, **defaults):
        """`config_class` from Trainer custom_config / `--set` options; unknown keys are an
        error naming the known ones, not silently ignored."""
        options = {**defaults, **dict(options or {})}
        known = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown {self.name} training options {unknown}; known: "
                             f"{sorted(known)}")
        return self.config_class(**options)

    def format_metrics(self, metrics: dict) -> str:
        """"0.412 bpp, PSNR 28.19 dB" / "49.31 bits/digit, MAE 0.0412"."""
        nan = float("nan")
        unit = f" {self.distortion_unit}" if self.distortion_unit else ""
        return (f"{metrics.get(self.rate_key, nan):.3f} {self.rate_unit}, "
                f"{self.distortion_label} {metrics.get(self.distortion_key, nan):.4g}{unit}")

    def serving_name(self, spec: GateSpec) -> str:
        return f"{self.serving_prefix}_l{spec.tag}"

    def gate_decision(self, metrics: dict, spec: GateSpec, baseline: Optional[dict],
                      tolerance: float) -> tuple[bool, list[str]]:
        """(blessed, one line per check with the numbers). Pure: unit-testable."""
        rate, distortion = metrics[self.rate_key], metrics[self.distortion_key]
        bound = spec.distortion_bound
        sign = "≥" if self.higher_is_better else "≤"
        checks = [
            (rate <= spec.max_rate,
             f"rate {rate:.4g} {self.rate_unit} ≤ max_rate {spec.max_rate:g}"),
            (distortion >= bound if self.higher_is_better else distortion <= bound,
             f"distortion {self.distortion_label} {distortion:.4g} {sign} {bound:g}"),
        ]
        if "failed_sanity_check" in metrics:
            checks.append((metrics["failed_sanity_check"] == 0,
                           f"{metrics['failed_sanity_check']} strings fail the decoder's check "
                           "(must be 0)"))
        if baseline is not None:
            limit = baseline["objective"] * (1 + tolerance)
            checks.append((metrics["objective"] <= limit,
                           f"objective {self.objective} {metrics['objective']:.4g} ≤ blessed "
                           f"baseline {baseline['objective']:.4g} × (1 + {tolerance:g})"))
        lines = [("PASS " if ok else "FAIL ") + text for ok, text in checks]
        return all(ok for ok, _ in checks), lines

