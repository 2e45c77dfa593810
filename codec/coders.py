"""Entropy coders behind one small interface.

An entropy model turns latents into integer *symbols* and owns the integer CDF tables; a coder
only turns `symbols[B, M, C]` into one byte string per batch element and back, with symbol
`[b, m, c]` coded under table `c` (one table per channel). Coders are looked up by name so the
bitstream can record which coder wrote it (see `schemas/bitstream.md`).

Table layout (shared by every coder): one flat int32 vector, the concatenation over channels of
`[-precision, cdf_0=0, cdf_1, ..., cdf_L=2**precision]` where `cdf` has `L = pmf_length + 1`
steps: `pmf_length` regular symbols plus one escape symbol. The negative precision enables the
escape ("overflow") mechanism: symbols outside `[0, pmf_length)` are sent as the escape symbol
followed by an Elias-gamma code, so every int32 value round-trips.
"""
from __future__ import annotations

import abc
from typing import NamedTuple

import tensorflow as tf


class CdfTables(NamedTuple):
    """Integer coding tables for `C` channels (all tensors int32).

    cdf: flat table, layout described in the module docstring.
    cdf_offset: `[C]`, the integer value coded as symbol 0 in each channel.
    cdf_length: `[C]`, number of CDF entries of each channel (pmf_length + 2).
    """

    cdf: tf.Tensor
    cdf_offset: tf.Tensor
    cdf_length: tf.Tensor


class EntropyCoder(abc.ABC):
    """Turns `int32 symbols[B, M, C]` into `string[B]` and back, given `CdfTables.cdf`."""

    name: str = ""

    @abc.abstractmethod
    def encode(self, symbols: tf.Tensor, cdf: tf.Tensor) -> tf.Tensor:
        """Codes each `symbols[b]` (shape `[M, C]`, channel `c` under table `c`) to one string."""

    @abc.abstractmethod
    def decode(self, strings: tf.Tensor, num_positions, num_channels: int,
               cdf: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Decodes `strings[B]` to `(symbols[B, M, C], ok[B])`.

        `ok[b]` is the coder's end-of-stream sanity check for string `b`. Decoding never fails on
        arbitrary bytes; callers decide whether a failed check is an error.
        """


class TfcRangeCoder(EntropyCoder):
    """TensorFlow Compression's C++ range coder (`tensorflow-compression-ops`).

    Strings carry no framing: the TFC encoder emits the shortest byte string that identifies the
    final interval and the decoder reads missing trailing bytes as zeros. Hence its sanity check
    is weak (TFC's own words): random bytes fail it about 3 times in 4, but a string truncated at
    a byte boundary, or an empty one, may decode to valid-looking symbols.
    """

    name = "tfc"

    def __init__(self):
        # Imported lazily: loading the op library registers custom ops that a SavedModel then
        # needs at load time. Only models that use this coder pay for it.
        import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel
        self._ops = tco

    def encode(self, symbols, cdf):
        symbols = tf.convert_to_tensor(symbols, tf.int32)
        handle = self._ops.create_range_encoder(tf.shape(symbols)[:1], cdf)
        handle = self._ops.entropy_encode_channel(handle, symbols)
        return self._ops.entropy_encode_finalize(handle)

    def decode(self, strings, num_positions, num_channels, cdf):
        strings = tf.convert_to_tensor(strings, tf.string)
        handle = self._ops.create_range_decoder(strings, cdf)
        handle, symbols = self._ops.entropy_decode_channel(
            handle, tf.stack([num_positions, num_channels]), tf.int32)
        ok = self._ops.entropy_decode_finalize(handle)
        return symbols, ok


_CODERS: dict[str, type[EntropyCoder]] = {TfcRangeCoder.name: TfcRangeCoder}


def available_coders() -> list[str]:
    return sorted(_CODERS)


def get_coder(name: str) -> EntropyCoder:
    """Returns a coder instance by name (`tfc`; the portable coder is added by its own issue)."""
    try:
        return _CODERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown entropy coder {name!r}; available: {', '.join(available_coders())}"
        ) from None
