"""The one table of codec families: the pipeline, the Trainer's run_fn, the gate and `rdpipe
train` look a family up by name (`get_family`) instead of branching on it.

Adding a family: one module under `codec/families/` declaring `FAMILY = CodecFamily(...)`
(see `base.py`; `mnist.py` is the shortest example) plus one line below."""
from __future__ import annotations

from codec.families import bls2017, bmshj2018, mbt2018, mnist
from codec.families.base import CodecFamily, GateSpec

FAMILIES: dict[str, CodecFamily] = {f.name: f for f in (mnist.FAMILY, bls2017.FAMILY,
                                                        bmshj2018.FAMILY, mbt2018.FAMILY)}


def get_family(name: str) -> CodecFamily:
    """The registered family `name`; a clear error listing the valid names otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown codec family {name!r}; registered: "
                         f"{', '.join(sorted(FAMILIES))}") from None


__all__ = ["FAMILIES", "get_family", "CodecFamily", "GateSpec"]
