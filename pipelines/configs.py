"""Pipeline configurations: Python dataclasses, one named config per pipeline.

Chosen over YAML so that configs are type-checked, documented in code and importable by tests;
`rdpipe pipeline run --config NAME` picks one from `CONFIGS`, and `--set key=value` overrides
scalar fields (e.g. `--set epochs=3`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class LambdaSpec:
    """One codec to train, and the gate it must pass to be pushed."""

    lmbda: float
    max_rate: float          # mean actual coded bits per digit on the eval split
    max_distortion: float    # mean absolute error, pixels in [0, 1]

    @property
    def tag(self) -> str:
        """Stable id fragment: `Trainer.lmbda_2000`, serving model `mnist_l2000`."""
        return f"{self.lmbda:g}".replace(".", "p")


@dataclasses.dataclass(frozen=True)
class ImageLambdaSpec:
    """One image codec to train and its gate (actual bpp and RGB PSNR on the eval split)."""

    lmbda: float
    max_bpp: float
    min_psnr: float

    @property
    def tag(self) -> str:
        """`Trainer.lmbda_0p01`, serving model `bls2017_l0p01`."""
        return f"{self.lmbda:g}".replace(".", "p")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    name: str
    lambdas: tuple  # LambdaSpec (kind "mnist") or ImageLambdaSpec (kind "images")
    kind: str = "mnist"                     # "mnist" or "images" (Ballé 2017 on an image folder)
    data_root: str = str(SHARED_DATA)       # ExampleGen input_base
    mnist_folder: str = "mnist"             # IDX folder under data_root; may hold {SPAN}
    max_examples_per_split: int = 0         # 0 = all
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    coder: str = "portable"                 # entropy coder of the exports: portable or tfc
    tolerance: float = 0.05                 # allowed relative regression vs blessed baseline
    gate_examples: int = 10_000             # eval digits the gate codes
    # kind "images" only: ingestion pattern under data_root and model/training size.
    image_pattern: str = "photos-train/*.png"
    filters: int = 128
    patch_size: int = 128
    steps_per_epoch: int = 200
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


# The tutorial's λ values; thresholds sit above what 15 epochs reach (benchmarks/results).
MNIST = PipelineConfig(
    name="mnist",
    lambdas=(LambdaSpec(2000, max_rate=50., max_distortion=0.040),
             LambdaSpec(500, max_rate=22., max_distortion=0.068),
             LambdaSpec(300, max_rate=15., max_distortion=0.085)),
)

# Small subset, one epoch: for tests and the README demo (minutes on 2 cores).
MNIST_QUICK = dataclasses.replace(
    MNIST, name="mnist-quick", max_examples_per_split=10_000, epochs=1, gate_examples=1000,
    lambdas=(LambdaSpec(2000, max_rate=200., max_distortion=0.2),
             LambdaSpec(500, max_rate=200., max_distortion=0.2),
             LambdaSpec(300, max_rate=200., max_distortion=0.2)),
)

# Ballé 2017 on ../shared/data/photos-train (never evaluated on): 4 λ, 10,000 steps each
# (~14 min per λ on 2 cores at ≈ 82 ms/step, benchmarks/results/train_speed.json).
# Gate thresholds: what the old-recipe bench-kodak models reached on photos-train images after
# ~1 h of CPU training (0.15 bpp / 26.3 dB at λ = .0016 … 0.60 bpp / 29.3 dB at λ = .03, actual
# bytes), with ~1.5× rate and ~2 dB of margin — they catch a broken or diverged run, not paper
# quality; the current recipe clears them with more room.
IMAGES = PipelineConfig(
    name="images", kind="images", epochs=50, batch_size=8, learning_rate=2e-4, gate_examples=8,
    lambdas=(ImageLambdaSpec(.0016, max_bpp=.3, min_psnr=24.),
             ImageLambdaSpec(.004, max_bpp=.45, min_psnr=25.5),
             ImageLambdaSpec(.01, max_bpp=.75, min_psnr=26.),
             ImageLambdaSpec(.03, max_bpp=1.1, min_psnr=27.)),
)

# A tiny model for a few steps: for tests (the mechanics, not the quality).
IMAGES_QUICK = dataclasses.replace(
    IMAGES, name="images-quick", epochs=1, steps_per_epoch=3, batch_size=2, filters=8,
    patch_size=64, gate_examples=2, learning_rate=1e-3,
    lambdas=(ImageLambdaSpec(.01, max_bpp=24., min_psnr=0.),),
)

CONFIGS = {c.name: c for c in (MNIST, MNIST_QUICK, IMAGES, IMAGES_QUICK)}


def get_config(name: str) -> PipelineConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown pipeline config {name!r}; available: {sorted(CONFIGS)}") \
            from None
