"""Portable rANS v2 (format id 3): the `portable` coder's many-lane strings, one table lookup
per symbol.

Why a second layout: v1 (`portable_coder`, format id 1) codes an escaped symbol's overflow inside the
rANS stream, as extra uniform items, so its decode loop carries a per-lane state machine
(≈ 60 TF ops per step) and runs up to 9 steps per symbol. On a Kodak image (196,608 symbols,
64 lanes) that loop was 80 % of `decompress`. Here the loop codes exactly one table symbol per
lane and step — escapes included, as the table's escape symbol — and the escaped values follow
the words as plain bytes, read after the loop with vectorized ops. A decode step is ≈ 15 ops:
one gather of a packed (frequency, slot − start, symbol) entry per lane, the rANS update, one
renormalization read. The loop count is fixed by the symbol count (⌈n / K⌉), whatever the bytes.

v2 layout (multi-lane strings only; one-lane strings stay v1; `schemas/bitstream.md`):

    byte 0     header: bits 7–5 format id 3; bits 4–1 log2(K); bit 0 zero
    states     K final lane states, 4 bytes big-endian each (lane order)
    words      16-bit big-endian renormalization words, in decoder read order
    escapes    for each escaped symbol, in symbol order, the zigzagged overflow z (below the
               table: z = −2s − 1; above it: z = 2(s − pmf_length)) in 4-bit chunks, least
               significant first, each a 5-bit item `chunk | more << 4` (as v1 codes them
               inside its stream); the items packed into bytes, least significant bit first,
               the last byte padded with zero bits

rANS as in v1: 32-bit state in [L, 2^32), L = 2^16, 16-bit words, the tables' slots laid
out by decreasing frequency (`portable_coder.TableInfo`), symbol i → lane i mod K. The lane
count comes from the symbol count: at least `lanes_log2` (as v1 up to 64 lanes, ≥ 2,048 symbols
per lane, then one lane per 4,096 symbols up to 256 — 4 state bytes per lane stay ≤ 0.6 % of a
0.3 bpp string while a 5 MP photo decodes in 4× fewer steps than at 64 lanes); since 2026-12
encoders write `encoder_lanes_log2` (a lane per 768 symbols below 64 lanes, for short strings
such as a hyperprior's z), and the decoder takes the count from the header within that range
(one count per batch). Each symbol is coded
under the table `table_index[i]` (for a factorized prior, its channel; for a conditional model,
the element's own table), so the same loop serves both.

End-of-stream check (`ok`): header (a lane count in range for n); every lane ends in state L; the words read stay inside the
string; the bytes after them hold exactly one value (≤ 9 chunks) per escaped symbol, with
zero padding and no spare byte, and each escaped value fits in int32. Arbitrary bytes never
crash or hang: indices are clipped and the loop runs ⌈n / K⌉ steps.
"""
from __future__ import annotations

import tensorflow as tf

from codec.entropy.framing import bytes_to_strings
from codec.entropy.portable_coder import (STATE_LOWER, WORD_BITS, TableInfo, _big_endian, traced,
                                          _loose_shapes, _stack, _zigzag_overflow,
                                          encode_items, lane_string_bound)
from codec.entropy.portable_coder import lanes_log2 as v1_lanes_log2

FORMAT_LANES = 3
CHUNK_BITS, ITEM_BITS = 4, 5
MAX_CHUNKS = 9                      # 9 × 4 bits ≥ the 33 bits of a zigzagged int32 overflow
_FREQ_SHIFT, _BIAS_SHIFT = 32, 16
V2_MIN_SYMBOLS = 2048               # `portable` writes v2 from this many symbols (one lane
                                    # below 16,384), v1 below: MNIST, small crops
WIDE_LANE_SYMBOLS = 4096            # symbols per lane above 64 lanes
MAX_LOG2_LANES = 8                  # at most 256 lanes


def lanes_log2(num_symbols) -> tf.Tensor:
    """log2 of the lane count of a v2 string of `num_symbols` symbols (int32 scalar; 0 below
    16,384 symbols, where strings are v1). Never below v1's count for the same n, so v1's
    `min_string_bytes` stays a lower bound for v2 strings."""
    n = tf.cast(num_symbols, tf.int64)
    wide = tf.add_n([tf.cast(n >= WIDE_LANE_SYMBOLS * (1 << j), tf.int32)
                     for j in range(7, MAX_LOG2_LANES + 1)])
    return v1_lanes_log2(num_symbols) + wide


FAST_LANE_SYMBOLS = 768            # new encoders: a lane per 768 symbols below 64 lanes


def encoder_lanes_log2(num_symbols) -> tf.Tensor:
    """log2 of the lane count that encoders write since 2026-12 (int32 scalar): `lanes_log2`,
    or one lane per `FAST_LANE_SYMBOLS` symbols where that gives more (up to 64). Why: the
    decode loop costs the same per step whatever the lane count (it is bound by TF op dispatch,
    not arithmetic), and a hyperprior's z (12,288 symbols on a Kodak image) used to be one
    lane — 12,288 steps, ≈ 0.6 s — where 16 lanes take 768 steps for 60 more state bytes.
    Decoders accept every count from `lanes_log2(n)` to this one (the header says which), so
    strings written before still decode, and `min_string_bytes` (from `lanes_log2`) stays a
    lower bound: more lanes only add state bytes."""
    n = tf.cast(num_symbols, tf.int64)
    fast = tf.add_n([tf.cast(n >= FAST_LANE_SYMBOLS * (1 << j), tf.int32)
                     for j in range(1, 7)])
    return tf.maximum(lanes_log2(num_symbols), tf.where(n >= V2_MIN_SYMBOLS, fast, 0))


def _claimed_lanes_log2(strings: tf.Tensor, n) -> tf.Tensor:
    """log2 K of a batch to decode: the first string's header if it names a count an encoder
    writes for n (`lanes_log2(n)` … `encoder_lanes_log2(n)`), else `lanes_log2(n)` (and the
    header check then refuses the string). One K per batch: the loop runs all lanes at once."""
    least, most = lanes_log2(n), encoder_lanes_log2(n)
    head = tf.io.decode_raw(tf.strings.substr(strings[:1], 0, 1), tf.uint8, fixed_length=1)
    head = tf.cast(tf.concat([tf.reshape(head, [-1]), [0]], 0)[0], tf.int32)
    claimed = tf.bitwise.bitwise_and(tf.bitwise.right_shift(head, 1), 15)
    valid = (tf.bitwise.right_shift(head, 5) == FORMAT_LANES) & (claimed >= least) & \
        (claimed <= most)
    return tf.where(valid, claimed, least)


def min_string_bytes(cdf: tf.Tensor, num_positions, num_channels) -> tf.Tensor:
    """The fewest bytes of any string `portable` writes for `num_positions` positions of
    `num_channels` per-channel symbols: v2's lane bound from V2_MIN_SYMBOLS symbols (every v2
    lane starts at L, one lane included), 0 below (v1 one-lane strings have no bound)."""
    positions = tf.cast(num_positions, tf.int64)
    n = positions * tf.cast(num_channels, tf.int64)
    return tf.where(n >= V2_MIN_SYMBOLS, lane_string_bound(cdf, positions, lanes_log2(n)),
                    tf.zeros_like(positions))


def header_byte(log2k) -> tf.Tensor:
    return tf.cast((FORMAT_LANES << 5) + tf.bitwise.left_shift(log2k, 1), tf.int64)


def packed_slot_table(info: TableInfo) -> tf.Tensor:
    """int64 `[(tables + 1) · 2^P]`: for each (table, slot), `freq << 32 | (slot − start) << 16
    | symbol` of the symbol owning that slot — the decode step's one lookup. The extra last
    table is the identity (freq 2^P, start 0: the state does not change), for the padding
    positions of the last step, so the loop needs no mask."""
    slots = tf.bitwise.left_shift(1, info.precision)
    num_tables = tf.shape(info.pmf_length)[0]
    symbol = info.slot_table()
    table = tf.repeat(tf.range(num_tables), slots)
    slot = tf.tile(tf.range(slots), [num_tables])
    where = info.flat(table, symbol)
    freq = tf.concat([tf.gather(info.freq, where), tf.fill([slots], slots)], 0)
    bias = tf.concat([slot - tf.gather(info.start, where), tf.range(slots)], 0)  # < 2^16
    symbol = tf.concat([symbol, tf.zeros([slots], tf.int32)], 0)
    return (tf.bitwise.left_shift(tf.cast(freq, tf.int64), _FREQ_SHIFT)
            + tf.bitwise.left_shift(tf.cast(bias, tf.int64), _BIAS_SHIFT)
            + tf.cast(symbol, tf.int64))


def _time_major(x: tf.Tensor, steps, lanes) -> tf.Tensor:
    """`[B, steps · lanes]` → `[steps, B, lanes]` (symbol i = t · K + k)."""
    return tf.transpose(tf.reshape(x, tf.stack([tf.shape(x)[0], steps, lanes])), [1, 0, 2])


def _escape_items(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 `[E]` ≥ 0 → (`[E, 9]` 5-bit items `chunk | more << 4`, `[E, 9]` keep mask)."""
    shifts = tf.constant([CHUNK_BITS * j for j in range(MAX_CHUNKS)], tf.int64)
    chunks = tf.bitwise.bitwise_and(tf.bitwise.right_shift(z[:, None], shifts), 15)
    used = tf.concat([tf.ones_like(z[:, None], tf.bool), z[:, None] >= tf.bitwise.left_shift(
        tf.constant(1, tf.int64), shifts[1:])], 1)
    more = tf.concat([used[:, 1:], tf.zeros_like(used[:, :1])], 1)
    return chunks + tf.where(more, tf.constant(1 << CHUNK_BITS, tf.int64), 0), used


def _pack_items(items: tf.Tensor, rows: tf.Tensor, batch) -> tuple[tf.Tensor, tf.Tensor]:
    """5-bit items (flat, with their string `rows`, in order) → (`[B, W]` bytes, keep mask):
    each string's items as one bit sequence, least significant bit first, zero-padded."""
    bits = tf.bitwise.bitwise_and(
        tf.bitwise.right_shift(items[:, None], tf.range(ITEM_BITS, dtype=tf.int64)), 1)
    ragged = tf.RaggedTensor.from_value_rowids(
        tf.reshape(bits, [-1]), tf.repeat(rows, ITEM_BITS), nrows=tf.cast(batch, tf.int64))
    lengths = (ragged.row_lengths() + 7) // 8                            # bytes per string
    width = tf.cast(tf.reduce_max(tf.concat([lengths, [0]], 0)), tf.int32)
    dense = ragged.to_tensor(0, shape=tf.stack([tf.cast(batch, tf.int64),
                                                tf.cast(8 * width, tf.int64)]))
    octets = tf.reshape(dense, tf.stack([batch, width, 8]))
    values = tf.reduce_sum(tf.bitwise.left_shift(octets, tf.range(8, dtype=tf.int64)), axis=2)
    return values, tf.sequence_mask(lengths, width)


def encode(symbols: tf.Tensor, table_index: tf.Tensor, cdf: tf.Tensor) -> tf.Tensor:
    """`int32 symbols[B, n]`, each under table `table_index[B, n]` of `cdf` → `string[B]`
    (v2; for n of at least 16,384 symbols, see `lanes_log2`)."""
    symbols = tf.convert_to_tensor(symbols, tf.int32)
    table_index = tf.convert_to_tensor(table_index, tf.int32)
    info = TableInfo(cdf)
    batch, n = tf.unstack(tf.shape(symbols))
    log2k = encoder_lanes_log2(n)
    k = tf.bitwise.left_shift(1, log2k)
    steps = (n + k - 1) // k
    precision = tf.cast(info.precision, tf.int64)
    pad = [[0, 0], [0, steps * k - n]]
    flat = tf.pad(symbols, pad)
    tables = tf.pad(table_index, pad)
    valid = tf.range(steps * k)[None, :] < n
    pmf_len = tf.gather(info.pmf_length, tables)
    escape = valid & ((flat < 0) | (flat >= pmf_len))
    where = info.flat(tables, tf.where(escape, pmf_len, flat))
    start = _time_major(tf.cast(tf.gather(info.start, where), tf.int64), steps, k)
    freq = _time_major(tf.where(valid, tf.cast(tf.gather(info.freq, where), tf.int64), 0),
                       steps, k)
    x, word_bytes, word_keep = encode_items(freq, start, precision,
                                            tf.constant(STATE_LOWER, tf.int64))

    # Escaped values, in symbol order per string.
    found = tf.where(escape)                                              # [E, 2] (b, i)
    items, used = _escape_items(tf.gather_nd(_zigzag_overflow(flat, pmf_len), found))
    rows = tf.boolean_mask(tf.broadcast_to(found[:, :1], tf.shape(items)), used)
    tail, tail_keep = _pack_items(tf.boolean_mask(items, used), rows, batch)

    state = tf.reshape(_big_endian(x, 4), [batch, -1])
    values = tf.concat([tf.fill([batch, 1], header_byte(log2k)), state, word_bytes, tail], 1)
    keep = tf.concat([tf.ones([batch, 1 + 4 * k], tf.bool), word_keep, tail_keep], 1)
    return bytes_to_strings(values, keep)


def decode(strings: tf.Tensor, table_index: tf.Tensor,
           cdf: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`string[B]` with `table_index[B, n]` → `(int32 symbols[B, n], ok[B])`; never fails on
    content (see the module docstring for what `ok` checks)."""
    strings = tf.convert_to_tensor(strings, tf.string)
    table_index = tf.convert_to_tensor(table_index, tf.int32)
    info = TableInfo(cdf)
    batch = tf.shape(strings)[0]
    n = tf.shape(table_index)[1]
    log2k = _claimed_lanes_log2(strings, n)
    k = tf.bitwise.left_shift(1, log2k)
    steps = (n + k - 1) // k
    precision = tf.cast(info.precision, tf.int64)
    slot_mask = tf.bitwise.left_shift(tf.constant(1, tf.int64), precision) - 1

    lengths = tf.strings.length(strings)
    word_start = 1 + 4 * k
    width = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), word_start) + 2
    raw = tf.reshape(tf.cast(tf.io.decode_raw(strings, tf.uint8, fixed_length=width),
                             tf.int64), tf.stack([batch, width]))
    ok = (lengths >= word_start) & (raw[:, 0] == header_byte(log2k))
    lane_bytes = tf.reshape(raw[:, 1:word_start], tf.stack([batch, k, 4]))
    x = tf.reduce_sum(tf.bitwise.left_shift(lane_bytes, tf.constant([24, 16, 8, 0], tf.int64)),
                      axis=2)
    max_words = (width - word_start) // 2
    word_index = word_start + 2 * tf.range(max_words)
    words = (tf.bitwise.left_shift(tf.gather(raw, word_index, axis=1), 8)
             + tf.gather(raw, word_index + 1, axis=1))                    # [B, max_words]
    available = tf.maximum(lengths - word_start, 0) // 2

    packed = packed_slot_table(info)
    identity = tf.shape(info.pmf_length)[0]          # the padding positions' table
    padded = tf.pad(table_index, [[0, 0], [0, steps * k - n]], constant_values=identity)
    base = _time_major(tf.bitwise.left_shift(tf.cast(padded, tf.int64), precision), steps, k)
    flat_words = tf.reshape(words, [-1])
    row_base = (tf.range(batch) * max_words)[:, None]
    last_word = max_words - 1

    # ≈ 20 ops per step: one lookup, the rANS update, one renormalization read per lane.
    def body(t, x, read, out):
        entry = tf.gather(packed, base[t] + tf.bitwise.bitwise_and(x, slot_mask))
        x = (tf.bitwise.right_shift(entry, _FREQ_SHIFT) * tf.bitwise.right_shift(x, precision)
             + tf.bitwise.bitwise_and(tf.bitwise.right_shift(entry, _BIAS_SHIFT), 0xFFFF))
        need = x < STATE_LOWER
        count = tf.cast(need, tf.int32)
        at = tf.minimum(read + tf.cumsum(count, axis=1, exclusive=True), last_word)
        word = tf.gather(flat_words, row_base + at)
        x = tf.where(need, tf.bitwise.left_shift(x, WORD_BITS) + word, x)
        return t + 1, x, read + tf.reduce_sum(count, axis=1, keepdims=True), out.write(t, entry)

    loop_vars = (tf.constant(0), x, tf.zeros([batch, 1], tf.int32),
                 tf.TensorArray(tf.int64, size=steps, element_shape=tf.TensorShape(None)))
    _, x, read, out = tf.while_loop(lambda t, *_: t < steps, body, loop_vars,
                                    shape_invariants=_loose_shapes(loop_vars))
    read = read[:, 0]
    ok &= tf.reduce_all(x == STATE_LOWER, axis=1) & (read <= available)
    entries = tf.reshape(tf.transpose(_stack(out, batch, k, tf.int64), [1, 0, 2]),
                         tf.stack([batch, steps * k]))[:, :n]
    table_symbols = tf.cast(tf.bitwise.bitwise_and(entries, 0xFFFF), tf.int32)
    symbols, escapes_ok = _read_escapes(raw, lengths, word_start + 2 * read, table_symbols,
                                        tf.gather(info.pmf_length, table_index))
    return symbols, ok & escapes_ok


def _read_escapes(raw, lengths, escape_start, table_symbols, pmf_len):
    """Replaces each escape symbol (= its table's pmf_length) by its value from the bytes after
    the words; `ok[B]` says those bytes hold exactly one value per escape (≤ 9 chunks), with
    zero padding and no spare byte, and that every value fits in int32."""
    batch, width = tf.unstack(tf.shape(raw))
    position = tf.range(width)[None, :]
    tail_bytes = tf.maximum(lengths - escape_start, 0)
    in_tail = (position >= escape_start[:, None]) & (position < lengths[:, None])
    found = tf.where(in_tail)                                      # [F, 2] (b, j), row-major
    string_of = tf.cast(found[:, 0], tf.int32)
    offset = tf.cast(found[:, 1], tf.int32) - tf.gather(escape_start, string_of)
    # Bits of the tail, numbered from 0 per string; item q holds bits 5q … 5q + 4.
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(
        tf.gather_nd(raw, found)[:, None], tf.range(8, dtype=tf.int64)), 1)   # [F, 8]
    bit_index = 8 * offset[:, None] + tf.range(8)[None, :]
    items_per_string = (8 * width) // ITEM_BITS + 1
    item_id = string_of[:, None] * items_per_string + bit_index // ITEM_BITS
    items = tf.reshape(tf.math.unsorted_segment_sum(
        tf.bitwise.left_shift(bits, tf.cast(bit_index % ITEM_BITS, tf.int64)), item_id,
        batch * items_per_string), tf.stack([batch, items_per_string]))    # [B, Q]

    is_escape = table_symbols == pmf_len
    escapes = tf.reduce_sum(tf.cast(is_escape, tf.int32), axis=1)
    q = tf.range(items_per_string)[None, :]
    last = tf.bitwise.right_shift(items, CHUNK_BITS) == 0                 # ends a value
    value_of = tf.cumsum(tf.cast(last, tf.int32), axis=1, exclusive=True)  # value index
    # Items used: up to and including the last item of value number `escapes`.
    used = (value_of < escapes[:, None]) & (q < (8 * tail_bytes[:, None]) // ITEM_BITS)
    items_used = tf.reduce_sum(tf.cast(used, tf.int32), axis=1)
    complete = tf.reduce_sum(tf.cast(used & last, tf.int32), axis=1) == escapes
    # No spare byte; the padding bits after the last item are zero.
    ok = complete & ((ITEM_BITS * items_used + 7) // 8 == tail_bytes)
    padding = tf.math.unsorted_segment_max(
        tf.cast(bit_index >= ITEM_BITS * tf.gather(items_used, string_of)[:, None], tf.int64)
        * bits, tf.broadcast_to(string_of[:, None], tf.shape(bits)), batch)
    ok &= padding <= 0

    group = tf.where(used, tf.broadcast_to(tf.range(batch)[:, None] * items_per_string, tf.shape(
        items)) + value_of, batch * items_per_string)                      # [B, Q]
    segments = batch * items_per_string + 1
    start = tf.math.unsorted_segment_min(tf.broadcast_to(q, tf.shape(items)), group, segments)
    chunk = q - tf.gather(start, group)
    ok &= tf.reduce_all(~used | (chunk < MAX_CHUNKS), axis=1)
    z = tf.math.unsorted_segment_sum(
        tf.bitwise.left_shift(tf.bitwise.bitwise_and(items, 15),
                              CHUNK_BITS * tf.cast(tf.minimum(chunk, MAX_CHUNKS - 1), tf.int64)),
        group, segments)
    at = tf.where(is_escape)                                       # [E, 2] in symbol order
    ordinal = tf.gather_nd(tf.cumsum(tf.cast(is_escape, tf.int32), axis=1, exclusive=True), at)
    chosen = tf.gather(z, tf.cast(at[:, 0], tf.int32) * items_per_string
                       + tf.minimum(ordinal, items_per_string - 1))
    pmf = tf.cast(tf.gather_nd(pmf_len, at), tf.int64)
    value = tf.where(tf.bitwise.bitwise_and(chosen, 1) == 1,
                     -tf.bitwise.right_shift(chosen + 1, 1),
                     tf.bitwise.right_shift(chosen, 1) + pmf)
    out_of_range = (value < -2 ** 31) | (value >= 2 ** 31)
    ok &= tf.math.unsorted_segment_max(tf.cast(out_of_range, tf.int32),
                                       tf.cast(at[:, 0], tf.int32), batch) <= 0
    symbols = tf.tensor_scatter_nd_update(
        table_symbols, at, tf.cast(tf.clip_by_value(value, -2 ** 31, 2 ** 31 - 1), tf.int32))
    return symbols, ok


# The traced forms, as in v1.
encode = traced(encode, tf.int32, tf.int32, tf.int32)  # noqa: F811
decode = traced(decode, tf.string, tf.int32, tf.int32)  # noqa: F811
