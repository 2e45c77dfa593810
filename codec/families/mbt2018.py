"""Minnen et al. 2018's mean-scale hyperprior without context (`mbt2018-mean`,
codec/models/mbt2018.py) as a codec family: everything as for `bmshj2018-hyperprior` but the
architecture."""
from __future__ import annotations

import dataclasses

from codec.families import bmshj2018
from codec.models.bls2017_train import ImageTrainConfig


@dataclasses.dataclass
class MeanScaleTrainConfig(ImageTrainConfig):
    """`ImageTrainConfig` with the mean-scale hyperprior (crops: multiples of 64 pixels)."""

    architecture: str = "mean-scale"


FAMILY = dataclasses.replace(
    bmshj2018.FAMILY, name="mbt2018-mean",
    description="Minnen et al. 2018: mean-scale hyperprior (no context) on the Ballé 2017 "
                "transforms, any size",
    config_class=MeanScaleTrainConfig, serving_prefix="mbt2018")
