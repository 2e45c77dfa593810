"""A model behind a TF Serving API as a `codec.photo_codec.CodecBackend`: the glue that lets
`rdpipe client compress|decompress` write and read the same `.bin` files as the local commands.
It lives in the CLI layer, the one layer that may import both `serving` and `codec`."""
from __future__ import annotations

import math

import numpy as np

from codec.saved_codec import lambda_of_serving_name
from codec.zoo import cards
from serving.client import CodecClient


class ServedCodec:
    """A served codec model as a `codec.photo_codec.CodecBackend`: `rdpipe client compress`
    writes the same `.bin` files as `rdpipe compress`, tiles included, following the model's
    signature (channels, fixed or any size) read from `GetModelMetadata`.

    The file names the model `<served name>` (or `<name>/<version>` when pinned); its table
    fingerprint comes from the `model_fingerprint` output of `compress` (exports before it
    existed leave it unknown, and their files are not checked against the decoding model)."""

    def __init__(self, client: CodecClient):
        self.client = client
        shape = client.signature_input_shape()
        if len(shape) != 4 or shape[-1] not in (1, 3):
            raise ValueError(f"model {client.model}: compress takes images of shape {shape}, "
                             "not [batch, height, width, 1 or 3]")
        self.channels = int(shape[-1])
        self.fixed_size = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
        self.name = client.model + (f"/{client.version}" if client.version is not None else "")
        self.lmbda = _served_lambda(client.model)
        self._fingerprint: bytes | None = None
        self._asked = False                # whether a compress call has reported it

    @property
    def fingerprint(self) -> bytes | None:
        """Read once from a compress call on a small probe image (cached)."""
        if not self._asked:   # None after asking: an export without model_fingerprint
            probe = np.zeros((1,) + (self.fixed_size or (16, 16)) + (self.channels,), np.uint8)
            self.compress(probe)
        return self._fingerprint

    def compress(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        strings, bits = self.client.compress(images)
        self._fingerprint, self._asked = self.client.last_fingerprint, True
        return strings, bits

    def decompress(self, strings: list[bytes]) -> np.ndarray:
        return self.client.decompress(strings)


def _served_lambda(name: str) -> float:
    """λ from the Pusher's `<name>_l<λ>` serving names, or from the zoo card of a zoo model
    served under its own name (`rdpipe serve --zoo`); NaN if neither."""
    lmbda = lambda_of_serving_name(name)
    if math.isnan(lmbda):
        lmbda = next((card["lambda"] for card in cards() if card["name"] == name), lmbda)
    return lmbda
