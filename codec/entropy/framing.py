"""Byte framing shared by the coders and codecs, in core TF ops (see schemas/bitstream.md).

- `bytes_to_strings`: byte values + keep mask → one string per row (the coders' output step).
- Image shape side information for variable-size models: `add_image_shape` inserts
  `varint(height) varint(width)` (unsigned LEB128) after a string's format byte and
  `split_image_shape` takes it out again, validating it without ever failing on content.
Written with TF ops (not Python) so that it lives inside exported signatures.
"""
from __future__ import annotations

import tensorflow as tf

MAX_DIMENSION = 65535           # image height/width limit: ≤ 3 varint bytes each
# height·width limit: bounds what a string can make a decoder allocate (a 4096×4096 image peaks
# near 5 GB in the N = 128 Ballé model; 4000×3000 measured 2.8 GB), so that a corrupt or hostile
# header gets ok=False instead of an out-of-memory kill.
MAX_PIXELS = 4096 * 4096
_VARINT_BYTES = 3
_BYTE_STRINGS = [bytes([i]) for i in range(256)]


def bytes_to_strings(values: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """Byte values `[B, N]` (ints in [0, 255]) and a keep mask → `string[B]` of the kept bytes."""
    kept = tf.boolean_mask(values, keep)
    ragged = tf.RaggedTensor.from_row_lengths(
        tf.gather(tf.constant(_BYTE_STRINGS), tf.cast(kept, tf.int32)),
        tf.reduce_sum(tf.cast(keep, tf.int64), axis=1))
    return tf.strings.reduce_join(ragged, axis=1)


def _varint(value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 `[B]` in [0, 2^21) → (`[B, 3]` LEB128 byte values, `[B, 3]` keep mask)."""
    groups = tf.bitwise.bitwise_and(
        tf.bitwise.right_shift(value[:, None], tf.constant([0, 7, 14], tf.int64)), 127)
    used = tf.concat([tf.ones_like(value[:, None], tf.bool),
                      value[:, None] >= tf.constant([1 << 7, 1 << 14], tf.int64)], 1)
    more = tf.concat([used[:, 1:], tf.zeros_like(used[:, :1])], 1)
    return groups + tf.where(more, tf.constant(128, tf.int64), 0), used


def add_image_shape(strings: tf.Tensor, height, width) -> tf.Tensor:
    """`string[B]` (format byte + payload) → format byte + varint(height) + varint(width) +
    payload. `height`/`width`: int scalars or `[B]`, each in [1, 65535], and height·width ≤
    MAX_PIXELS (checked)."""
    strings = tf.convert_to_tensor(strings, tf.string)
    batch = tf.shape(strings)[:1]
    dims = [tf.broadcast_to(tf.cast(d, tf.int64), batch) for d in (height, width)]
    with tf.control_dependencies([tf.debugging.Assert(
            tf.reduce_all([(d >= 1) & (d <= MAX_DIMENSION) for d in dims]
                          + [dims[0] * dims[1] <= MAX_PIXELS]),
            # ASCII only: TF prints assert messages as escaped bytes.
            [f"rdpipe: image height and width must be in [1, {MAX_DIMENSION}] and "
             f"height*width <= {MAX_PIXELS} pixels"])]):
        encoded = [_varint(d) for d in dims]
    shape_bytes = bytes_to_strings(tf.concat([e[0] for e in encoded], 1),
                                   tf.concat([e[1] for e in encoded], 1))
    return tf.strings.join([tf.strings.substr(strings, 0, 1), shape_bytes,
                            _tail(strings, tf.ones_like(tf.strings.length(strings)))])


def _tail(strings: tf.Tensor, start: tf.Tensor) -> tf.Tensor:
    """`strings[b][start[b]:]`, empty where start is past the end (substr would raise)."""
    lengths = tf.strings.length(strings)
    start = tf.minimum(start, lengths)
    return tf.strings.substr(strings, start, lengths - start)


def _read_varint(raw: tf.Tensor, at: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Reads one varint of ≤ 3 bytes at `at[B]` from `raw[B, W]` (int64 bytes, zero-padded).
    Returns (value, length in bytes, ok): ok needs a terminating byte within 3 bytes and a
    minimal encoding (a multi-byte varint never ends in a zero byte)."""
    width = tf.shape(raw)[1]
    index = tf.minimum(at[:, None] + tf.range(_VARINT_BYTES)[None, :], width - 1)
    window = tf.gather(raw, index, batch_dims=1)                       # [B, 3]
    continues = window >= 128
    # Length = 1 + number of leading continuation bytes.
    leading = tf.math.cumprod(tf.cast(continues, tf.int32), axis=1)
    length = 1 + tf.reduce_sum(leading, axis=1)
    terminated = length <= _VARINT_BYTES
    length = tf.minimum(length, _VARINT_BYTES)
    in_varint = tf.range(_VARINT_BYTES)[None, :] < length[:, None]
    groups = tf.where(in_varint, tf.bitwise.bitwise_and(window, 127), 0)
    value = tf.reduce_sum(tf.bitwise.left_shift(groups, tf.constant([0, 7, 14], tf.int64)), 1)
    last = tf.gather(window, length[:, None] - 1, batch_dims=1)[:, 0]
    minimal = (length == 1) | (last != 0)
    return value, length, terminated & minimal


def split_image_shape(strings: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Inverse of `add_image_shape`: `string[B]` → (format byte + payload, height int32[B],
    width int32[B], ok bool[B]). Never fails on content: malformed strings give ok=False,
    height = width = 1 (so that downstream shapes stay valid) and an empty payload."""
    strings = tf.convert_to_tensor(strings, tf.string)
    lengths = tf.strings.length(strings)
    width = 1 + 2 * _VARINT_BYTES + 1
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(strings, 0, width), tf.uint8,
                                   fixed_length=width), tf.int64)
    raw = tf.reshape(raw, [-1, width])
    one = tf.ones_like(lengths)
    height, height_length, height_ok = _read_varint(raw, one)
    width_value, width_length, width_ok = _read_varint(raw, one + height_length)
    header = 1 + height_length + width_length
    ok = (height_ok & width_ok & (lengths >= header)
          & (height >= 1) & (height <= MAX_DIMENSION)
          & (width_value >= 1) & (width_value <= MAX_DIMENSION)
          & (height * width_value <= MAX_PIXELS))
    rest = tf.strings.join([tf.strings.substr(strings, tf.zeros_like(lengths), tf.minimum(lengths, 1)),
                            _tail(strings, header)])
    rest = tf.where(ok, rest, tf.zeros_like(rest))
    height = tf.where(ok, tf.cast(height, tf.int32), 1)
    width_value = tf.where(ok, tf.cast(width_value, tf.int32), 1)
    return rest, height, width_value, ok
