"""Ballé et al. 2018 "Variational image compression with a scale hyperprior" as a codec family
(`bmshj2018-hyperprior`, codec/models/bmshj2018.py): rate, distortion, data, gate and golden
round trip as for `bls2017` (the same functions), a training config whose architecture is the
hyperprior."""
from __future__ import annotations

import dataclasses

from codec.families import bls2017
from codec.families.base import CodecFamily
from codec.models.bls2017_train import ImageTrainConfig


@dataclasses.dataclass
class HyperpriorTrainConfig(ImageTrainConfig):
    """`ImageTrainConfig` with the scale hyperprior (crops must be multiples of 64 pixels)."""

    architecture: str = "hyperprior"


FAMILY = dataclasses.replace(
    bls2017.FAMILY, name="bmshj2018-hyperprior",
    description="Ballé et al. 2018: scale hyperprior on the Ballé 2017 transforms, any size",
    config_class=HyperpriorTrainConfig, serving_prefix="bmshj2018")
