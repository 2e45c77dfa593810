"""Entropy coders behind one small interface.

An entropy model turns latents into integer *symbols* and owns the integer CDF tables; a coder
only turns `symbols[B, M, C]` into one byte string per batch element and back, with symbol
`[b, m, c]` coded under table `c` (one table per channel). Coders are looked up by name.

Strings start with a format byte whose top 3 bits name the coder that wrote it
(`FORMAT_IDS`; `schemas/bitstream.md`), so a string is never decoded by the wrong coder —
except `portable-range` (id 4, `headerless`), whose strings are pure payload and whose id is
recorded once per model and in `.bin` headers instead:
- `portable` (ids 1 and 3, the default): rANS in core TF ops, loadable by any TensorFlow
  runtime: one-lane v1 strings (`codec.entropy.portable_coder`) and many-lane v2 strings
  (`codec.entropy.rans_lanes`);
- `portable-range` (id 4): a range coder in core TF ops for short strings (MNIST), no framing;
- `tfc` (id 2): TensorFlow Compression's range coder ops (`tensorflow-compression-ops`), for
  rdpipe's own server or a TF Serving built with those ops.

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
    format_id: int = 0  # top 3 bits of every string's first byte
    # True: strings carry no format byte (nor anything but payload); the coder is recorded
    # once per model instead (the SavedModel's `string_format`, the `.bin` header).
    headerless: bool = False

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

    def min_string_bytes(self, cdf: tf.Tensor, num_positions, num_channels) -> tf.Tensor:
        """A lower bound (int64, shape of `num_positions`) on the length of any string this coder
        writes for that many positions: a shorter string claiming them is corrupt or hostile,
        and is refused before any decoding work. 0 where the coder gives no bound."""
        del cdf, num_channels
        return tf.zeros_like(tf.cast(num_positions, tf.int64))

    def too_short(self, strings: tf.Tensor, cdf: tf.Tensor, num_positions,
                  num_channels) -> tf.Tensor:
        """bool `[B]`: strings shorter than any string this coder writes for `num_positions[B]`
        positions (under the layout each string's format byte names)."""
        return (tf.cast(tf.strings.length(strings), tf.int64)
                < self.min_string_bytes(cdf, num_positions, num_channels))


class TfcRangeCoder(EntropyCoder):
    """TensorFlow Compression's C++ range coder (`tensorflow-compression-ops`).

    Strings are one format byte (`0x40`) + TFC's payload: the TFC encoder emits the shortest byte
    string that identifies the final interval and the decoder reads missing trailing bytes as
    zeros. Hence its sanity check is weak (TFC's own words): random payloads fail it about 3
    times in 4, and a payload truncated at a byte boundary may decode to valid-looking symbols.
    """

    name = "tfc"
    format_id = 2

    def __init__(self):
        # Imported lazily: loading the op library registers custom ops that a SavedModel then
        # needs at load time. Only models that use this coder pay for it.
        import tensorflow_compression_ops as tco  # pylint: disable=import-outside-toplevel
        self._ops = tco

    # TFC's overflow (escape) coding hangs, crashes or silently decodes wrong values for symbols
    # beyond about ±2^30 (measured on tensorflow-compression-ops 2.16.0); refuse them instead.
    # Latents of a trained codec on uint8 images are many orders of magnitude smaller.
    max_abs_symbol = 2 ** 30

    def encode(self, symbols, cdf):
        symbols = tf.convert_to_tensor(symbols, tf.int32)
        in_range = tf.reduce_all((symbols > -self.max_abs_symbol) & (symbols < self.max_abs_symbol))
        with tf.control_dependencies([tf.debugging.Assert(in_range, [
                f"rdpipe: the 'tfc' coder only encodes symbols in (-2^30, 2^30); use the "
                f"'portable' coder for larger values. Largest |symbol|:",
                tf.reduce_max(tf.abs(tf.cast(symbols, tf.int64)))])]):
            symbols = tf.identity(symbols)
        handle = self._ops.create_range_encoder(tf.shape(symbols)[:1], cdf)
        handle = self._ops.entropy_encode_channel(handle, symbols)
        payload = self._ops.entropy_encode_finalize(handle)
        return tf.strings.join([tf.fill(tf.shape(payload), _format_byte(self.format_id)),
                                payload])

    def decode(self, strings, num_positions, num_channels, cdf):
        strings = tf.convert_to_tensor(strings, tf.string)
        length = tf.strings.length(strings)
        payload = tf.strings.substr(strings, tf.minimum(length, 1), tf.maximum(length - 1, 0))
        handle = self._ops.create_range_decoder(payload, cdf)
        handle, symbols = self._ops.entropy_decode_channel(
            handle, tf.stack([num_positions, num_channels]), tf.int32)
        ok = self._ops.entropy_decode_finalize(handle)
        return symbols, ok & (string_format_ids(strings) == self.format_id)


class PortableRansCoder(EntropyCoder):
    """rANS from core TF ops only: the default. Strings of fewer than 2,048 symbols (MNIST,
    small crops) are one-lane v1 strings (`codec.entropy.portable_coder`, format id 1), where
    starting from state 1 keeps them tiny; longer ones are v2 strings (`codec.entropy.rans_lanes`,
    format id 3; a lane per 768 symbols up to 64, up to 256 above), whose decode loop is ≈ 5×
    faster and whose length is bounded below. The decoder reads either, by the format id of
    the batch's first string."""

    name = "portable"
    format_id = 1
    format_ids = (1, 3)

    def encode(self, symbols, cdf):
        from codec.entropy import portable_coder, rans_lanes  # pylint: disable=import-outside-toplevel
        symbols = tf.convert_to_tensor(symbols, tf.int32)
        batch, positions, channels = tf.unstack(tf.shape(symbols))
        n = positions * channels
        return tf.cond(
            n < rans_lanes.V2_MIN_SYMBOLS,
            lambda: portable_coder.encode(symbols, cdf),
            lambda: rans_lanes.encode(tf.reshape(symbols, tf.stack([batch, n])),
                                      channel_tables(batch, positions, channels), cdf))

    def decode(self, strings, num_positions, num_channels, cdf):
        from codec.entropy import portable_coder, rans_lanes  # pylint: disable=import-outside-toplevel
        strings = tf.convert_to_tensor(strings, tf.string)
        batch = tf.shape(strings)[0]
        positions = tf.cast(num_positions, tf.int32)
        channels = tf.cast(num_channels, tf.int32)
        first = tf.concat([string_format_ids(strings[:1]), [-1]], 0)[0]

        def lanes_v2():
            symbols, ok = rans_lanes.decode(strings, channel_tables(batch, positions, channels),
                                            cdf)
            return tf.reshape(symbols, tf.stack([batch, positions, channels])), ok

        return tf.cond(first == rans_lanes.FORMAT_LANES, lanes_v2,
                       lambda: portable_coder.decode(strings, positions, channels, cdf))

    def min_string_bytes(self, cdf, num_positions, num_channels):
        from codec.entropy import rans_lanes  # pylint: disable=import-outside-toplevel
        return rans_lanes.min_string_bytes(cdf, num_positions, num_channels)

    def too_short(self, strings, cdf, num_positions, num_channels):
        # By each string's layout. v1 strings: under v1's bound when they have lanes
        # (≥ 16,384 symbols); below 2,048 symbols v1 is what this coder writes (no bound, and
        # at most 2,048 loop steps); in between only exports made before wrote v1 one-lane
        # strings, whose decode work nothing bounds (≈ 1.5 s of the v1 loop for a few bytes):
        # refused here — the export that wrote them still decodes them.
        from codec.entropy import portable_coder, rans_lanes  # pylint: disable=import-outside-toplevel
        length = tf.cast(tf.strings.length(strings), tf.int64)
        positions = tf.cast(num_positions, tf.int64)
        n = positions * tf.cast(num_channels, tf.int64)
        v1 = string_format_ids(strings) == portable_coder.FORMAT_PORTABLE
        unbounded_v1 = (n >= rans_lanes.V2_MIN_SYMBOLS) & (n < portable_coder.SINGLE_LANE_MAX)
        v1_need = tf.where(unbounded_v1, tf.constant(2 ** 62, tf.int64),
                           portable_coder.min_string_bytes(cdf, positions, num_channels))
        need = tf.where(v1, v1_need, rans_lanes.min_string_bytes(cdf, positions, num_channels))
        return length < need


class PortableRangeCoder(EntropyCoder):
    """A range coder from core TF ops for strings of fewer than 2,048 symbols (MNIST digits,
    tiny crops): headerless strings, within a few bits of their information
    (`codec.entropy.range_coder`). Format id 4 names it in model metadata and `.bin` headers
    only — its strings are pure payload, so its sanity check is weak by design (most random
    short strings are some input's canonical code) and the model/container must say which
    coder wrote them."""

    name = "portable-range"
    format_id = 4
    headerless = True

    def encode(self, symbols, cdf):
        from codec.entropy import range_coder  # pylint: disable=import-outside-toplevel
        return range_coder.encode(symbols, cdf)

    def decode(self, strings, num_positions, num_channels, cdf):
        from codec.entropy import range_coder  # pylint: disable=import-outside-toplevel
        return range_coder.decode(strings, num_positions, num_channels, cdf)


def channel_tables(batch, positions, channels) -> tf.Tensor:
    """`int32 [B, positions · channels]`: the table of each symbol under a factorized prior,
    its channel (row-major `[positions, channels]`)."""
    index = tf.tile(tf.range(channels), tf.reshape(positions, [1]))
    return tf.broadcast_to(index[None, :], tf.stack([batch, positions * channels]))


def _format_byte(format_id: int) -> bytes:
    return bytes([format_id << 5])


def string_format_ids(strings: tf.Tensor) -> tf.Tensor:
    """int32 `[B]`: the coder format id of each string (top 3 bits of byte 0; -1 if empty)."""
    strings = tf.convert_to_tensor(strings, tf.string)
    first = tf.io.decode_raw(tf.strings.substr(strings, 0, 1), tf.uint8, fixed_length=1)
    ids = tf.bitwise.right_shift(tf.cast(tf.reshape(first, [-1]), tf.int32), 5)
    return tf.where(tf.strings.length(strings) > 0, ids, -1)


_CODERS: dict[str, type[EntropyCoder]] = {TfcRangeCoder.name: TfcRangeCoder,
                                          PortableRansCoder.name: PortableRansCoder,
                                          PortableRangeCoder.name: PortableRangeCoder}
# Format id → coder name (a coder may write several layouts: `format_ids`), for the coders
# whose strings carry it in their first byte.
FORMAT_IDS = {i: name for name, cls in _CODERS.items() if not cls.headerless
              for i in getattr(cls, "format_ids", (cls.format_id,))}
# Every format id a model or `.bin` header may record → coder name.
MODEL_FORMAT_IDS = {**FORMAT_IDS, **{cls.format_id: name for name, cls in _CODERS.items()
                                     if cls.headerless}}


def is_headerless(coder: str | None) -> bool:
    """Whether `coder`'s strings carry no format byte (False for unknown names)."""
    return coder in _CODERS and _CODERS[coder].headerless
DEFAULT_CODER = PortableRansCoder.name


def coder_of_string(string: bytes) -> str:
    """Name of the coder that wrote `string` (from its format byte), or a description."""
    if not string:
        return "empty string"
    return FORMAT_IDS.get(string[0] >> 5, f"unknown format byte 0x{string[0]:02x}")


def available_coders() -> list[str]:
    return sorted(_CODERS)


def get_coder(name: str) -> EntropyCoder:
    """Returns a coder instance by name (`portable` or `tfc`)."""
    try:
        return _CODERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown entropy coder {name!r}; available: {', '.join(available_coders())}"
        ) from None
