"""Pipeline configurations: Python dataclasses, one named config per pipeline.

Chosen over YAML so that configs are type-checked, documented in code and importable by tests;
`rdpipe pipeline run --config NAME` picks one from `CONFIGS`, and `--set key=value` overrides
scalar fields (e.g. `--set epochs=3`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from codec.families import FAMILIES, GateSpec

MNIST_FAMILY, BLS2017_FAMILY = FAMILIES["mnist"], FAMILIES["bls2017"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One pipeline: a codec family (codec.families), its operating points (GateSpec: λ and
    gate thresholds in the family's units) and run settings. Fields that the family's training
    config also has (epochs, batch_size, learning_rate, coder, filters, …) go to its Trainer."""
    name: str
    lambdas: tuple                          # GateSpec per λ
    family: str = "mnist"                   # codec family: mnist or bls2017
    data_root: str = str(SHARED_DATA)       # ExampleGen input_base
    mnist_folder: str = "mnist"             # IDX folder under data_root; may hold {SPAN}
    max_examples_per_split: int = 0         # 0 = all
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    coder: str = ""                         # entropy coder of the exports ("": the family's own:
                                            # portable-range for MNIST, portable for images; or tfc)
    tolerance: float = 0.05                 # allowed relative regression vs blessed baseline
    gate_examples: int = 10_000             # eval digits the gate codes
    # image-folder source and image families only: ingestion pattern, model/training size.
    image_pattern: str = "photos-train/*.png"
    filters: int = 128
    patch_size: int = 128
    steps_per_epoch: int = 200
    schema_file: str = ""                   # TFMD schema of the examples ("": the family's)
    workspace: str = str(PROJECT_ROOT / "workspace" / "pipelines")
    serving_dir: str = str(PROJECT_ROOT / "workspace" / "serving")

    def with_overrides(self, **overrides) -> "PipelineConfig":
        fields = {f.name: f for f in dataclasses.fields(self)}
        typed = {}
        for key, value in overrides.items():
            if key not in fields or key == "lambdas":
                raise ValueError(f"unknown or non-scalar config field {key!r}; scalar fields: "
                                 f"{sorted(k for k in fields if k != 'lambdas')}")
            kind = type(getattr(self, key))
            typed[key] = kind(value) if not isinstance(value, kind) else value
        return dataclasses.replace(self, **typed)


# The tutorial's λ values and gates (codec/families/mnist.py).
MNIST = PipelineConfig(name="mnist", family="mnist", lambdas=MNIST_FAMILY.default_gates)

# Small subset, one epoch: for tests and the README demo (minutes on 2 cores). The gate's MAE
# bound, 0.13, sits between what these models reach on 1,000 gate digits (λ 2000 / 500 / 300:
# MAE 0.069 / 0.087 / 0.104, `make run`) and what a decoder that ignores its input scores (the
# mean digit: 0.154, tests/quality_floors.py), so a broken model is refused.
MNIST_QUICK = dataclasses.replace(
    MNIST, name="mnist-quick", max_examples_per_split=10_000, epochs=1, gate_examples=1000,
    lambdas=tuple(GateSpec(spec.lmbda, max_rate=200., distortion_bound=0.13)
                  for spec in MNIST.lambdas),
)

# Ballé 2017 on ../shared/data/photos-train (never evaluated on): 4 λ, 10,000 steps each
# (~14 min per λ on 2 cores at ≈ 82 ms/step, benchmarks/results/train_speed.json).
# Gates (codec/families/bls2017.py): what the old-recipe bench-kodak models reached on
# photos-train images after ~1 h of CPU training, with ~1.5× rate and ~2 dB of margin — they
# catch a broken or diverged run, not paper quality.
IMAGES = PipelineConfig(
    name="images", family="bls2017", epochs=50, batch_size=8, learning_rate=2e-4,
    gate_examples=8, lambdas=BLS2017_FAMILY.default_gates)

# A tiny model trained for 300 steps (about a minute): for tests and demos. Its gate, PSNR
# ≥ 16.5 dB, sits between what it reaches on textured 96×80 crops of photos-train (17.1–22.5 dB
# per crop, tests/test_image_pipeline.py) and what one flat colour per crop scores on them
# (10.9–16.1 dB), so a model that ignores its input is refused.
IMAGES_QUICK = dataclasses.replace(
    IMAGES, name="images-quick", epochs=1, steps_per_epoch=300, batch_size=2, filters=8,
    patch_size=64, gate_examples=2, learning_rate=1e-3,
    lambdas=(GateSpec(.01, max_rate=24., distortion_bound=16.5),),
)

# The scale hyperprior (codec/families/bmshj2018.py) on the same data, λ grid and gates.
HYPERPRIOR = dataclasses.replace(IMAGES, name="hyperprior", family="bmshj2018-hyperprior")
HYPERPRIOR_QUICK = dataclasses.replace(IMAGES_QUICK, name="hyperprior-quick",
                                       family="bmshj2018-hyperprior")
# The mean-scale hyperprior (codec/families/mbt2018.py), likewise.
MEAN_SCALE = dataclasses.replace(IMAGES, name="mean-scale", family="mbt2018-mean")
MEAN_SCALE_QUICK = dataclasses.replace(IMAGES_QUICK, name="mean-scale-quick",
                                       family="mbt2018-mean")

CONFIGS = {c.name: c for c in (MNIST, MNIST_QUICK, IMAGES, IMAGES_QUICK, HYPERPRIOR,
                               HYPERPRIOR_QUICK, MEAN_SCALE, MEAN_SCALE_QUICK)}


def get_config(name: str) -> PipelineConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown pipeline config {name!r}; available: {sorted(CONFIGS)}") \
            from None
