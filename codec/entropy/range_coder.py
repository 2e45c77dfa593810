"""`portable-range`: a range coder for short strings, in core TF ops, with no framing at all.

Why: a one-lane rANS string (`codec.entropy.portable_coder`, v1) of an MNIST digit carries
its information plus ≈ 14 bits: 3 bits of coder id, the final state in 5/13/21 bits, and
rANS's start-up from a small state. This coder spends only what arithmetic coding must: the
interval's width rounded to whole bytes. Its strings are the payload and nothing else; which
coder wrote them is recorded once per model (`EntropyCoder.headerless`; the SavedModel's
`string_format` function, the `.bin` container header), never in the string. Written by hand
because no maintained TF-ops range coder exists (TFC's is a custom-op library).

Coder (schemas/bitstream.md, "portable-range"): a 32-bit range coder with carry (Subbotin's
low/range layout). State `low` ∈ [0, 2^32), `range` ∈ [2^24, 2^32], start `low = 0`,
`range = 2^32`. An item (start c, frequency f, of 2^P) sets `r = range >> P`,
`low += r·c`, `range = r·f`; a carry out of `low` adds 1 to the bytes already written; while
`range < 2^24` the top byte of `low` is written and both shift left by 8 (at most twice per item
for P ≤ 16). Items are the v1 coder's: one per symbol in the frequency-sorted slot layout, an
escaped symbol followed by its overflow in uniform 5-bit chunks (`portable_coder.lane_items`).

Termination: the decoder reads bytes past the end of the string as zeros, so the encoder writes
the fewest bytes `k ∈ 0…4` after its window that make `bytes · 2^-8k` (then zeros) fall inside
the final interval, and drops trailing zero bytes. A string is therefore the shortest one that
identifies its symbols; an all-most-probable input can be the empty string.

End-of-stream check (`ok`): the string must be *canonical* — decoding it and encoding the
symbols again gives the same bytes. That rejects every string this encoder cannot have written
(truncations and bit flips almost always), which a minimal-length code cannot do by
redundancy. Work is bounded: at most `MAX_SYMBOLS` symbols and 9 items per symbol; arbitrary
bytes never crash or hang the decoder.
"""
from __future__ import annotations

import tensorflow as tf

from codec.entropy.framing import bytes_to_strings
from codec.entropy.portable_coder import (CHUNK_ITEM_BITS, MAX_CHUNKS, TableInfo, _loose_shapes,
                                          _stack, decode_item, lane_items, traced)

MAX_SYMBOLS = 2048          # longer strings: `portable` (rANS lanes, length-bounded decoding)
TOP = 1 << 24               # renormalize while range < 2^24
WINDOW_BITS = 32
_MASK32 = (1 << WINDOW_BITS) - 1


def _symbol_count_ok(symbols: tf.Tensor) -> tf.Operation:
    n = tf.shape(symbols)[1] * tf.shape(symbols)[2]
    return tf.debugging.Assert(n < MAX_SYMBOLS, [
        f"rdpipe: the 'portable-range' coder codes strings of fewer than {MAX_SYMBOLS} symbols "
        "(its decode work must stay bounded without a length bound); got", n,
        "— use the 'portable' coder"])


def encode(symbols: tf.Tensor, cdf: tf.Tensor) -> tf.Tensor:
    """`int32 symbols[B, M, C]` (channel c under table c; M·C < `MAX_SYMBOLS`) → `string[B]`."""
    symbols = tf.convert_to_tensor(symbols, tf.int32)
    with tf.control_dependencies([_symbol_count_ok(symbols)]):
        symbols = tf.identity(symbols)
    info = TableInfo(cdf)
    item_start, item_freq = lane_items(symbols, info, 1)
    return _encode_items(item_start[:, :, 0], item_freq[:, :, 0],
                         tf.cast(info.precision, tf.int64))


def _encode_items(item_start: tf.Tensor, item_freq: tf.Tensor, precision) -> tf.Tensor:
    """Items `[T, B]` (frequency 0: none) → strings `[B]`."""
    steps, batch = tf.unstack(tf.shape(item_freq))

    def shift_out(low, rng, active):
        need = active & (rng < TOP)
        digit = tf.bitwise.right_shift(low, 24)
        low = tf.where(need, tf.bitwise.bitwise_and(tf.bitwise.left_shift(low, 8), _MASK32), low)
        return low, tf.where(need, tf.bitwise.left_shift(rng, 8), rng), digit, need

    def body(t, low, rng, emitted, digits, keeps, carries, carry_at):
        f, c = item_freq[t], item_start[t]
        active = f > 0
        r = tf.bitwise.right_shift(rng, precision)
        new_low = low + r * c
        carry = active & (new_low > _MASK32)
        low = tf.where(active, tf.bitwise.bitwise_and(new_low, _MASK32), low)
        rng = tf.where(active, r * f, rng)
        carries = carries.write(t, carry[:, None])
        carry_at = carry_at.write(t, emitted[:, None] - 1)    # the carry lands on the last byte so far
        low, rng, d1, n1 = shift_out(low, rng, active)
        low, rng, d2, n2 = shift_out(low, rng, active)
        digits = digits.write(t, tf.stack([d1, d2], 1))
        keeps = keeps.write(t, tf.stack([n1, n2], 1))
        emitted += tf.cast(n1, tf.int32) + tf.cast(n2, tf.int32)
        return t + 1, low, rng, emitted, digits, keeps, carries, carry_at

    ta = lambda dtype: tf.TensorArray(dtype, size=steps,  # noqa: E731
                                      element_shape=tf.TensorShape(None))
    loop_vars = (tf.constant(0), tf.zeros([batch], tf.int64),
                 tf.fill([batch], tf.constant(1 << WINDOW_BITS, tf.int64)),
                 tf.zeros([batch], tf.int32), ta(tf.int64), ta(tf.bool), ta(tf.bool),
                 ta(tf.int32))
    _, low, rng, emitted, digits, keeps, carries, carry_at = tf.while_loop(
        lambda t, *_: t < steps, body, loop_vars, shape_invariants=_loose_shapes(loop_vars))

    # Lay the written bytes out densely: [B, width], byte j of string b at [b, j].
    width = 2 * steps + 5
    digits = tf.reshape(tf.transpose(_stack(digits, batch, 2, tf.int64), [1, 0, 2]), [batch, -1])
    keeps = tf.reshape(tf.transpose(_stack(keeps, batch, 2, tf.bool), [1, 0, 2]), [batch, -1])
    position = tf.cumsum(tf.cast(keeps, tf.int32), axis=1, exclusive=True)
    kept = tf.where(keeps)
    dense = tf.scatter_nd(
        tf.stack([tf.cast(kept[:, 0], tf.int32), tf.gather_nd(position, kept)], 1),
        tf.gather_nd(digits, kept), tf.stack([batch, width]))
    carry = tf.transpose(_stack(carries, batch, 1, tf.bool)[:, :, 0])        # [B, T]
    at = tf.transpose(_stack(carry_at, batch, 1, tf.int32)[:, :, 0])
    hit = tf.where(carry)
    dense = tf.tensor_scatter_nd_add(
        dense, tf.stack([tf.cast(hit[:, 0], tf.int32), tf.maximum(tf.gather_nd(at, hit), 0)], 1),
        tf.ones(tf.shape(hit)[:1], tf.int64))

    # Termination: the fewest window bytes k whose value (then zeros) lies in [low, low+range).
    tails, valid = [], []
    for k in range(5):
        unit = tf.constant(1 << (WINDOW_BITS - 8 * k), tf.int64)
        x = (low + unit - 1) // unit * unit
        tails.append(x)
        valid.append(x < low + rng)
    valid = tf.stack(valid, 1)
    k = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)   # first valid
    x = tf.gather(tf.stack(tails, 1), k, batch_dims=1)
    rows = tf.range(batch)
    final_carry = tf.bitwise.right_shift(x, WINDOW_BITS)
    has_bytes = emitted > 0      # no carry without bytes: the interval stays inside [0, 1)
    dense = tf.tensor_scatter_nd_add(
        dense, tf.stack([rows, tf.maximum(emitted - 1, 0)], 1),
        tf.where(has_bytes, final_carry, 0))
    for j in range(4):
        byte = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x, 24 - 8 * j), 255)
        dense = tf.tensor_scatter_nd_add(dense, tf.stack([rows, emitted + j], 1),
                                         tf.where(j < k, byte, 0))
    dense = _propagate_carries(dense)
    nonzero = dense > 0
    index = tf.range(width)[None, :]
    length = tf.reduce_max(tf.where(nonzero, index + 1, 0), axis=1)     # trailing zeros dropped
    return bytes_to_strings(dense, index < length[:, None])


def _propagate_carries(dense: tf.Tensor) -> tf.Tensor:
    """Byte values that may exceed 255 by carries → bytes, carrying towards the front."""
    def body(d):
        carry = tf.bitwise.right_shift(d, 8)
        return tf.bitwise.bitwise_and(d, 255) + tf.pad(carry[:, 1:], [[0, 0], [0, 1]])
    return tf.while_loop(lambda d: tf.reduce_any(d > 255), body, [dense],
                         maximum_iterations=tf.shape(dense)[1])[0]


def decode(strings: tf.Tensor, num_positions, num_channels,
           cdf: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`string[B]` → `(int32 symbols[B, M, C], ok[B])`; never fails on content."""
    strings = tf.convert_to_tensor(strings, tf.string)
    info = TableInfo(cdf)
    positions = tf.cast(num_positions, tf.int32)
    channels = tf.cast(num_channels, tf.int32)
    batch = tf.shape(strings)[0]
    n = positions * channels
    counted = n < MAX_SYMBOLS
    n_run = tf.where(counted, n, 0)
    precision = tf.cast(info.precision, tf.int64)
    slots = info.slot_table()
    slots_per_channel = tf.bitwise.left_shift(1, tf.cast(precision, tf.int32))
    chunk_shift = precision - CHUNK_ITEM_BITS

    lengths = tf.strings.length(strings)
    max_steps = (MAX_CHUNKS + 1) * n_run + 1
    width = tf.minimum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 2 * max_steps + 8) + 4
    raw = tf.reshape(tf.cast(tf.io.decode_raw(strings, tf.uint8, fixed_length=width), tf.int64),
                     [batch, width])
    code = tf.reduce_sum(tf.bitwise.left_shift(raw[:, :4], tf.constant([24, 16, 8, 0],
                                                                       tf.int64)), axis=1)
    zeros = tf.zeros([batch], tf.int32)

    def next_byte(read):
        return tf.where(read < lengths, tf.gather(raw, tf.minimum(read, width - 1),
                                                  batch_dims=1), 0)

    def body(t, code, rng, read, pos, mode, z, chunk, err, values, done_out):
        active = ~err & ((pos < n_run) | (mode == 1))
        r = tf.bitwise.right_shift(rng, precision)
        slot = code // tf.maximum(r, 1)
        beyond = slot >= tf.bitwise.left_shift(tf.constant(1, tf.int64), precision)
        slot = tf.minimum(slot, tf.bitwise.left_shift(tf.constant(1, tf.int64), precision) - 1)
        channel = tf.minimum(pos, tf.maximum(n_run - 1, 0)) % channels
        table_symbol = tf.gather(slots, channel * slots_per_channel + tf.cast(slot, tf.int32))
        pmf_len = tf.gather(info.pmf_length, channel)
        where = info.flat(channel, table_symbol)
        lo = tf.cast(tf.gather(info.start, where), tf.int64)
        freq_symbol = tf.cast(tf.gather(info.freq, where), tf.int64)
        step = decode_item(slot, mode, z, chunk, table_symbol, pmf_len, lo, freq_symbol,
                           chunk_shift)
        emit = active & step.done
        values = values.write(t, step.value[:, None])
        done_out = done_out.write(t, emit[:, None])
        err = err | (active & (step.corrupt | beyond))
        pos = pos + tf.cast(emit, tf.int32)
        mode, z, chunk = step.next_state(active, mode, z, chunk)
        start, freq = step.start, step.freq
        code = tf.where(active, code - r * start, code)
        rng = tf.where(active, r * freq, rng)
        for _ in range(2):          # renormalize: as the encoder, by the range alone
            need = active & (rng < TOP)
            code = tf.where(need, tf.bitwise.left_shift(code, 8) + next_byte(read), code)
            rng = tf.where(need, tf.bitwise.left_shift(rng, 8), rng)
            read += tf.cast(need, tf.int32)
        return t + 1, code, rng, read, pos, mode, z, chunk, err, values, done_out

    def cond(t, code, rng, read, pos, mode, z, chunk, err, *_):
        return (t < max_steps) & tf.reduce_any(~err & ((pos < n_run) | (mode == 1)))

    ta = lambda dtype: tf.TensorArray(dtype, size=0, dynamic_size=True,  # noqa: E731
                                      element_shape=tf.TensorShape(None))
    loop_vars = (tf.constant(0), code, tf.fill([batch], tf.constant(1 << WINDOW_BITS, tf.int64)),
                 tf.fill([batch], 4), zeros, zeros, tf.zeros([batch], tf.int64), zeros,
                 tf.zeros([batch], tf.bool), ta(tf.int32), ta(tf.bool))
    _, _, _, _, pos, mode, _, _, err, values, done_out = tf.while_loop(
        cond, body, loop_vars, shape_invariants=_loose_shapes(loop_vars))

    done = _stack(done_out, batch, 1, tf.bool)[:, :, 0]                 # [T, B]
    found = tf.where(done)
    out_value = tf.gather_nd(_stack(values, batch, 1, tf.int32)[:, :, 0], found)
    rank = tf.cumsum(tf.cast(done, tf.int32), axis=0, exclusive=True)   # symbol index
    scatter_index = tf.stack([tf.cast(found[:, 1], tf.int32), tf.gather_nd(rank, found)], 1)
    symbols = tf.scatter_nd(scatter_index, out_value, tf.stack([batch, n_run]))
    symbols = tf.reshape(tf.pad(symbols, [[0, 0], [0, n - n_run]]),
                         tf.stack([batch, positions, channels]))
    ok = counted & ~err & (pos >= n_run) & (mode == 0)
    # Canonical: the encoder, given the decoded symbols, writes exactly these bytes.
    again = tf.cond(counted, lambda: encode(symbols, cdf), lambda: tf.fill([batch], ""))
    return symbols, ok & tf.equal(again, strings)


# The traced forms, as in `portable_coder`.
encode = traced(encode, tf.int32, tf.int32)  # noqa: F811
decode = traced(decode, tf.string, tf.int32, tf.int32, tf.int32)  # noqa: F811
