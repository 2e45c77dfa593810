"""The mean-scale hyperprior of Minnen, Ballé & Toderici, "Joint autoregressive and hierarchical
priors for learned image compression" (NeurIPS 2018), without the autoregressive context — the
model CompressAI ships as `mbt2018-mean` and TFC's `tfci.py` as `mbt2018-mean-*`.

The same parts as the scale hyperprior (codec/models/bmshj2018.py, Ballé 2017 transforms), with
two changes that the papers make:

- h_a sees y itself, not |y| (a mean needs the sign);
- h_s gives two numbers per element of y: the scale index and the mean μ. Symbols are
  `round(y − μ)`, coded under the Gaussian scale tables; the decoder adds μ back.

Coding takes indexes *and* means from the integer h_s (`IntegerConvStack`): means land on the
2⁻⁸ fixed-point grid, identical on every machine, so the decoder reconstructs exactly the
encoder's ŷ = round(y − μ) + μ. Training uses the float h_s. Strings have the hyperprior's layout
(schemas/bitstream.md, "hyperprior").
"""
from __future__ import annotations

from codec.models.bmshj2018 import HyperpriorCodec, HyperpriorTrainer


class MeanScaleTrainer(HyperpriorTrainer):
    """Trains g_a, g_s, h_a, h_s (scale index and mean per element) and the z prior."""

    MEANS = True


class MeanScaleCodec(HyperpriorCodec):
    """The exported mean-scale codec: the signatures of `codec.models.bls2017.ImageCodec`."""

    MEANS = True
    MODULE_NAME = "mbt2018_codec"
