"""`portable`: an interleaved rANS entropy coder built only from core TensorFlow ops.

Why: TFC's range coder is a custom op library that stock TF Serving, TFLite and TF.js cannot
load. This coder uses `tf.while_loop`, int64 arithmetic, gathers, `tf.io.decode_raw` and
`tf.strings.reduce_join`, so an exported SavedModel runs on any TensorFlow runtime. All coding
arithmetic is integer, hence bit-exact across runs, devices and platforms. Written by hand
because no maintained TF-ops entropy coder exists (see issue 5).

Format (one self-contained string per batch element; `schemas/bitstream.md`):

    byte 0      header: bits 7–5 format id (1 = portable rANS v1); bits 4–0:
                  1 lane: the top bits of the (reduced) final state, see `_single_lane_frame`
                  K lanes: log2(K) << 2
    state       1 lane: 0–2 bytes (the reduced final state's low bits)
                K lanes: K final states, 4 bytes big-endian each
    words       16-bit big-endian renormalization words, in decoder read order

Coder: rANS (Duda) with a 32-bit state in [L, 2^32), L = 2^16, 16-bit renormalization words,
tables of precision P ≤ 16 bits (the models' integer CDFs). Symbol `i` of a string (row-major
over `[positions, channels]`) goes to lane `i mod K`; every loop step codes one item per lane,
for all strings of the batch at once. K is chosen from the symbol count n: 1 lane below 16,384
symbols, else 2^⌊log2(n / 2048)⌋ lanes (so ≥ 8), at most 64. Each extra lane costs 4 state bytes
(≤ 0.5 % of a Kodak-size string at 64 lanes) and divides the loop steps — the coder's speed —
by K; a single lane keeps MNIST strings tiny.
- One lane: the encoder starts from state 1, so no initial-state bits are spent, and the final
  state is flushed in its minimal bit count (sharing the header byte). The decoder reads a word when its state is below
  L and words remain (safe: with one lane, words are never emitted below L).
- K lanes: every lane starts from L (the decoder must know when a lane reads without looking at
  the shared stream), costing 16 bits per lane.
Symbols outside a channel's table (`< 0` or `≥ pmf_length`) are coded as the escape symbol
followed by the zigzagged overflow `z` in 4-bit chunks, each coded as a uniform 5-bit item
(chunk | continue-flag << 4), least significant first — any int32 round-trips.

End-of-stream check (`ok`): the header matches; every lane decodes all its symbols, ends in its
initial state (1 or L), never reads past the stream, no escape exceeds 8 chunks; the stream is
consumed exactly. Arbitrary bytes never crash or hang the decoder: every index is clipped and
the loop is bounded by 9 items per symbol.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from codec.entropy.framing import bytes_to_strings

FORMAT_PORTABLE = 1
STATE_LOWER = 1 << 16           # L: lower bound of the normalized state
WORD_BITS = 16
SINGLE_LANE_MAX = 16384         # strings with fewer symbols use one lane
LANE_SYMBOLS = 2048             # target symbols per lane above that
MAX_LOG2_LANES = 6              # at most 64 lanes
CHUNK_BITS = 4                  # escape payload bits per chunk item
CHUNK_ITEM_BITS = CHUNK_BITS + 1
MAX_CHUNKS = 8                  # 8 × 4 bits = any zigzagged int32 overflow


def lanes_log2(num_symbols) -> tf.Tensor:
    """log2 of the lane count for strings of `num_symbols` symbols (int32 scalar tensor)."""
    n = tf.cast(num_symbols, tf.int64)
    steps = tf.add_n([tf.cast(n >= LANE_SYMBOLS * (1 << j), tf.int32)
                      for j in range(1, MAX_LOG2_LANES + 1)])
    return tf.where(n < SINGLE_LANE_MAX, 0, steps)


class TableInfo:
    """Per-channel views of the flat CDF table (layout in `codec.entropy.coders`), re-laid out for rANS.

    Within each channel, symbols occupy the 2^P slots in order of decreasing frequency (ties:
    symbol order) rather than in value order. Same frequencies, so the same code length in the
    steady state; but a small state coding a probable symbol stays small (its slot range starts
    near 0). That removes most of rANS's start-up cost from a single-lane string that starts at
    state 1, and a string's trailing run of most-probable symbols costs nothing.
    """

    def __init__(self, cdf: tf.Tensor):
        cdf = tf.convert_to_tensor(cdf, tf.int32)
        starts = tf.cast(tf.where(cdf < 0)[:, 0], tf.int32)
        ends = tf.concat([starts[1:], tf.shape(cdf)], 0)
        self.pmf_length = ends - starts - 3                  # regular symbols per channel
        self.precision = -tf.gather(cdf, starts[0])
        num_symbols = self.pmf_length + 1                     # + the escape symbol
        self.splits = tf.concat([[0], tf.cumsum(num_symbols)], 0)  # (channel, symbol) → flat
        cdf_index = tf.ragged.range(starts + 1, starts + 1 + num_symbols)
        channel = tf.cast(cdf_index.value_rowids(), tf.int32)
        cdf_index = cdf_index.flat_values
        self.freq = tf.gather(cdf, cdf_index + 1) - tf.gather(cdf, cdf_index)  # [Σ symbols]
        symbol = cdf_index - tf.gather(starts + 1, channel)
        key = (tf.cast(channel, tf.int64) * (1 << 17)
               + (1 << 16) - tf.cast(self.freq, tf.int64))
        order = tf.argsort(key, stable=True)
        sorted_freq = tf.gather(self.freq, order)
        slots = tf.bitwise.left_shift(1, self.precision)
        sorted_start = (tf.cumsum(sorted_freq, exclusive=True)
                        - tf.gather(channel, order) * slots)
        self.start = tf.scatter_nd(order[:, None], sorted_start, tf.shape(self.freq))
        self._sorted_symbol = tf.gather(symbol, order)
        self._sorted_freq = sorted_freq

    def flat(self, channel: tf.Tensor, symbol: tf.Tensor) -> tf.Tensor:
        """Index of (channel, table symbol) into `freq` / `start`."""
        return tf.gather(self.splits, channel) + symbol

    def slot_table(self) -> tf.Tensor:
        """`[C · 2^P]` int32: the table symbol (escape = pmf_length) owning each slot."""
        return tf.repeat(self._sorted_symbol, tf.maximum(self._sorted_freq, 0))


def _zigzag_overflow(symbols: tf.Tensor, pmf_length: tf.Tensor) -> tf.Tensor:
    """int64 z ≥ 0 of an escaped symbol: below the table odd, above it even."""
    s = tf.cast(symbols, tf.int64)
    n = tf.cast(pmf_length, tf.int64)
    return tf.where(s < 0, -2 * s - 1, 2 * (s - n))


def _loose_shapes(loop_vars) -> tuple:
    """Shape invariants: rank only (lane counts fold to constants in some graphs only)."""
    return tuple(tf.TensorShape(None) if isinstance(v, tf.TensorArray)
            else tf.TensorShape([None] * v.shape.rank) for v in loop_vars)


def _stack(array: tf.TensorArray, batch, lanes, dtype) -> tf.Tensor:
    """`[T, B, K]` from per-step `[B, K]` writes (also when no step ran)."""
    return tf.cond(array.size() > 0, array.stack,
                   lambda: tf.zeros(tf.stack([0, batch, lanes]), dtype))


def _big_endian(values: tf.Tensor, num_bytes: int) -> tf.Tensor:
    """int64 `[...]` → `[..., num_bytes]` big-endian bytes."""
    shifts = tf.constant([8 * (num_bytes - 1 - i) for i in range(num_bytes)], tf.int64)
    return tf.bitwise.bitwise_and(tf.bitwise.right_shift(values[..., None], shifts), 255)


def min_string_bytes(cdf: tf.Tensor, num_positions, num_channels) -> tf.Tensor:
    """The fewest bytes any string this coder writes for `num_positions` positions (of
    `num_channels` symbols each) under tables `cdf` can have: int64, shape of `num_positions`.

    Exact, not a heuristic (derivation: schemas/bitstream.md, "Decode work bounded by the
    string"). With K ≥ 8 lanes, each lane's value X = state · 2^(16·words) + words starts at
    L = 2^16 and ends below 2^32 · 2^(16·words); renormalization leaves X unchanged, and coding
    a symbol of frequency f (of M = 2^P slots) multiplies it by at least
    h'(f) = 1 + (h(f) − 1)(1 − M/(L·f)), h(f) = (M/f)(1 − (M − f)/L) (the encoder codes from
    states x ≥ L·f/M, where x' = ⌊x/f⌋·M + (x mod f) + c ≥ x·h(f)). So each symbol of channel c
    adds at least g_c = min over the channel's table entries of log2 h'(f) bits (escapes only
    add), and the 16-bit words W satisfy 16·W > positions·Σ_c g_c − 16·K. One-lane strings
    (fewer than 16,384 symbols) start in state 1, where runs of the most probable symbol cost
    nothing: no bound (0); their decode work is bounded by their size instead.
    """
    positions = tf.cast(num_positions, tf.int64)
    log2k = lanes_log2(positions * tf.cast(num_channels, tf.int64))
    return tf.where(log2k > 0, lane_string_bound(cdf, positions, log2k),
                    tf.zeros_like(positions))


def lane_string_bound(cdf: tf.Tensor, num_positions, log2k) -> tf.Tensor:
    """`min_string_bytes` for strings of 2^log2k lanes that all start at state L (v1 with
    K ≥ 8, v2 with any K): `1 + 4K + 2·W` bytes, W the fewest words (see above)."""
    info = TableInfo(cdf)
    channel = tf.ragged.row_splits_to_segment_ids(info.splits)
    f = tf.cast(tf.maximum(info.freq, 1), tf.float64)
    slots = tf.cast(tf.bitwise.left_shift(1, info.precision), tf.float64)
    h = (slots / f) * (1. - (slots - f) / STATE_LOWER)
    h_prime = 1. + (h - 1.) * (1. - slots / (STATE_LOWER * f))
    bits = tf.maximum(tf.math.log(h_prime) / tf.math.log(tf.constant(2., tf.float64)), 0.)
    bits = tf.where(info.freq > 0, bits, tf.constant(float("inf"), tf.float64))
    # Rounded down (1e-9 relative), so float error can only make the bound weaker.
    bits_per_position = tf.reduce_sum(tf.math.segment_min(bits, channel)) * (1. - 1e-9)
    positions = tf.cast(num_positions, tf.int64)
    lanes = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.cast(log2k, tf.int64))
    word_bits = (tf.cast(positions, tf.float64) * bits_per_position
                 - 16. * tf.cast(lanes, tf.float64))
    words = tf.cast(tf.math.floor(tf.maximum(word_bits, 0.) / 16.), tf.int64)   # W > bits/16
    return 1 + 4 * lanes + 2 * words

def lane_items(symbols: tf.Tensor, info: TableInfo, k) -> tuple[tf.Tensor, tf.Tensor]:
    """The coding items of `symbols[B, M, C]` on `k` lanes: int64 `(start, freq)`, each
    `[T, B, K]`, item t of lane j in coding order (frequency 0: no item). Symbol i (row-major)
    goes to lane i mod K; an escaped symbol is the escape item followed by its overflow
    chunks, each a uniform `CHUNK_ITEM_BITS`-bit item."""
    batch, positions, channels = tf.unstack(tf.shape(symbols))
    n = positions * channels
    per_lane = (n + k - 1) // k
    precision = tf.cast(info.precision, tf.int64)

    # Symbol i of a string → lane i mod K, slot j = i div K; padding symbols are inactive.
    flat = tf.pad(tf.reshape(symbols, [batch, n]), [[0, 0], [0, per_lane * k - n]])
    index = tf.range(per_lane * k)
    valid = index < n
    channel = index % channels
    pmf_len = tf.gather(info.pmf_length, channel)                     # [S·K]
    escape = (flat < 0) | (flat >= pmf_len)
    table_symbol = tf.where(escape, pmf_len, flat)
    where = info.flat(tf.broadcast_to(channel, tf.shape(flat)), table_symbol)
    lo = tf.gather(info.start, where)
    hi = lo + tf.gather(info.freq, where)
    z = _zigzag_overflow(flat, pmf_len)
    chunks = 1 + tf.add_n([tf.cast(z >= (1 << (CHUNK_BITS * j)), tf.int32)
                           for j in range(1, MAX_CHUNKS)])
    items = tf.where(valid, 1 + tf.where(escape, chunks, 0), 0)         # [B, S·K]

    # Lay items out per lane: [B, K, S] → offsets along each lane's item sequence.
    def by_lane(x):
        return tf.transpose(tf.reshape(x, [batch, per_lane, k]), [0, 2, 1])
    lane_items = by_lane(items)
    offsets = tf.cumsum(lane_items, axis=2, exclusive=True)
    steps = tf.reduce_max(tf.concat([tf.reshape(tf.reduce_sum(lane_items, 2), [-1]), [0]], 0))
    where_symbol = tf.where(by_lane(tf.broadcast_to(valid, tf.shape(flat))))   # [E, 3]
    symbol_index = tf.concat([tf.cast(where_symbol[:, :2], tf.int32),
                              tf.gather_nd(offsets, where_symbol)[:, None]], 1)
    starts = [tf.gather_nd(by_lane(lo), where_symbol)]
    freqs = [tf.gather_nd(by_lane(hi - lo), where_symbol)]
    indices = [symbol_index]
    # Escape payload items (rare): up to MAX_CHUNKS per escaped symbol.
    where_escape = tf.where(by_lane(escape & valid[None, :]))
    z_escape = tf.gather_nd(by_lane(z), where_escape)
    n_escape = tf.gather_nd(by_lane(chunks), where_escape)
    base = tf.gather_nd(offsets, where_escape) + 1
    chunk_freq = tf.bitwise.left_shift(1, tf.cast(precision, tf.int32) - CHUNK_ITEM_BITS)
    for j in range(MAX_CHUNKS):
        use = j < n_escape
        value = tf.cast(tf.bitwise.bitwise_and(
            tf.bitwise.right_shift(z_escape, CHUNK_BITS * j), (1 << CHUNK_BITS) - 1), tf.int32)
        value += tf.where(j + 1 < n_escape, 1 << CHUNK_BITS, 0)
        sel = tf.where(use)[:, 0]
        indices.append(tf.concat([tf.cast(tf.gather(where_escape[:, :2], sel), tf.int32),
                                  tf.gather(base + j, sel)[:, None]], 1))
        starts.append(tf.gather(value * chunk_freq, sel))
        freqs.append(tf.fill(tf.shape(sel), chunk_freq))
    shape = tf.stack([batch, k, steps])
    all_indices = tf.concat(indices, 0)
    item_start = tf.scatter_nd(all_indices, tf.concat(starts, 0), shape)
    item_freq = tf.scatter_nd(all_indices, tf.concat(freqs, 0), shape)
    item_start = tf.cast(tf.transpose(item_start, [2, 0, 1]), tf.int64)   # [T, B, K]
    item_freq = tf.cast(tf.transpose(item_freq, [2, 0, 1]), tf.int64)
    return item_start, item_freq


def encode(symbols: tf.Tensor, cdf: tf.Tensor) -> tf.Tensor:
    """`int32 symbols[B, M, C]` (channel c under table c) → `string[B]`."""
    symbols = tf.convert_to_tensor(symbols, tf.int32)
    info = TableInfo(cdf)
    _, positions, channels = tf.unstack(tf.shape(symbols))
    log2k = lanes_log2(positions * channels)
    k = tf.bitwise.left_shift(1, log2k)
    precision = tf.cast(info.precision, tf.int64)
    item_start, item_freq = lane_items(symbols, info, k)
    x0 = tf.where(k == 1, tf.constant(1, tf.int64), tf.constant(STATE_LOWER, tf.int64))
    x, words, emitted = encode_items(item_freq, item_start, precision, x0)

    single = k == 1
    values, keep = tf.cond(single, lambda: _single_lane_frame(x[:, 0], words, emitted),
                           lambda: _multi_lane_frame(x, log2k, words, emitted))
    return bytes_to_strings(values, keep)


def encode_items(item_freq: tf.Tensor, item_start: tf.Tensor, precision: tf.Tensor,
                 x0: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The rANS encoder loop shared by v1 and v2: items `[T, B, K]` (frequency 0 = no item)
    coded in reverse from state `x0` → (final states `[B, K]`, word bytes `[B, 2·T·K]` in
    decoder read order, their keep mask)."""
    steps, batch, k = tf.unstack(tf.shape(item_freq))
    word_mask = (1 << WORD_BITS) - 1

    def body(t, x, words, emitted):
        f = item_freq[t]
        active = f > 0
        f_safe = tf.maximum(f, 1)
        emit = active & (x >= tf.bitwise.left_shift(f, 32 - precision))
        words = words.write(t, tf.where(emit, tf.bitwise.bitwise_and(x, word_mask),
                                        tf.zeros_like(x)))
        emitted = emitted.write(t, emit)
        x = tf.where(emit, tf.bitwise.right_shift(x, WORD_BITS), x)
        coded = (tf.bitwise.left_shift(x // f_safe, precision) + x % f_safe + item_start[t])
        return t - 1, tf.where(active, coded, x), words, emitted

    loop_vars = (steps - 1, tf.fill(tf.stack([batch, k]), x0),
                 tf.TensorArray(tf.int64, size=steps, element_shape=tf.TensorShape(None)),
                 tf.TensorArray(tf.bool, size=steps, element_shape=tf.TensorShape(None)))
    _, x, words, emitted = tf.while_loop(lambda t, *_: t >= 0, body, loop_vars,
                                         shape_invariants=_loose_shapes(loop_vars))
    words = tf.reshape(tf.transpose(_stack(words, batch, k, tf.int64), [1, 0, 2]),
                       [batch, -1])                                       # [B, T·K]
    emitted = tf.reshape(tf.transpose(_stack(emitted, batch, k, tf.bool), [1, 0, 2]),
                         [batch, -1])
    words = tf.reshape(tf.bitwise.right_shift(words[..., None], tf.constant([8, 0], tf.int64))
                       % 256, [batch, -1])
    return x, words, tf.reshape(tf.repeat(emitted[..., None], 2, axis=2), [batch, -1])


def _single_lane_frame(x, words, emitted):
    """Header + final state for one lane: `[fmt:3 | top 5 state bits]`, then 0–2 state bytes.

    A final state ≥ L first emits its low word (read first by the decoder, whose start-up
    renormalization then rebuilds the state), so the state stored is < 2^16 and needs 5, 13 or
    21 bits: 0, 1 or 2 bytes after the header. The decoder tells them apart from the string's
    length parity (1 byte: odd) and, for even, the header's low bits (0 only with 2 bytes,
    since the state is never 0).
    """
    batch = tf.shape(x)[0]
    big = x >= STATE_LOWER
    flush_word = tf.bitwise.bitwise_and(x, (1 << WORD_BITS) - 1)
    small = tf.where(big, tf.bitwise.right_shift(x, WORD_BITS), x)       # 1 ≤ small < 2^16
    extra = tf.where(small < 32, 0, tf.where(small < 8192, 1, 2))
    top = tf.bitwise.right_shift(small, 8 * tf.cast(extra, tf.int64))
    header = (FORMAT_PORTABLE << 5) + top
    values = tf.concat([header[:, None], _big_endian(small, 2),
                        _big_endian(flush_word, 2), words], 1)
    keep = tf.concat([tf.ones([batch, 1], tf.bool),
                      tf.stack([extra == 2, extra >= 1], 1),
                      tf.stack([big, big], 1), emitted], 1)
    return values, keep


def _multi_lane_frame(x, log2k, words, emitted):
    """Header `[fmt:3 | log2 lanes:3 | 00]`, then each lane's final state in 4 bytes."""
    batch = tf.shape(x)[0]
    header = tf.cast((FORMAT_PORTABLE << 5) + tf.bitwise.left_shift(log2k, 2), tf.int64)
    state = tf.reshape(_big_endian(x, 4), [batch, -1])
    values = tf.concat([tf.fill([batch, 1], header), state, words], 1)
    keep = tf.concat([tf.ones([batch, 1 + tf.shape(state)[1]], tf.bool), emitted], 1)
    return values, keep


class ItemStep(NamedTuple):
    """One decoded item of a one-stream decoder (`decode_item`)."""
    start: tf.Tensor      # int64: the item's first slot
    freq: tf.Tensor       # int64: its frequency
    value: tf.Tensor      # int32: the symbol, when `done`
    done: tf.Tensor       # bool: a symbol is complete (regular, or an escape's last chunk)
    corrupt: tf.Tensor    # bool: over MAX_CHUNKS chunks, or an overflow outside int32
    escape: tf.Tensor     # bool: the escape symbol (chunks follow)
    last_chunk: tf.Tensor
    z: tf.Tensor          # int64: the overflow assembled so far, this chunk included

    def next_state(self, active, mode, z, chunk):
        """(mode, z, chunk) after this item, where `active`: mode 1 while chunks follow."""
        in_chunk = mode == 1
        new_mode = tf.where(self.escape, 1, tf.where(self.last_chunk, 0, mode))
        return (tf.where(active, new_mode, mode),
                tf.where(active & in_chunk, self.z, tf.where(active, tf.zeros_like(z), z)),
                tf.where(active & in_chunk, chunk + 1, tf.where(active, 0, chunk)))


def decode_item(slot, mode, z, chunk, table_symbol, pmf_len, lo, freq,
                chunk_shift) -> ItemStep:
    """What slot `slot` (int64) means in decoder state `mode` (0: a symbol, 1: an escape's
    chunk), `z` (overflow so far), `chunk` (chunks read): the item layout shared by v1's lanes
    and `codec.entropy.range_coder`. `table_symbol`, `lo`, `freq`: the table entry owning the
    slot (used in mode 0)."""
    chunk_value = tf.bitwise.right_shift(slot, chunk_shift)
    in_chunk = mode == 1
    start = tf.where(in_chunk, tf.bitwise.left_shift(chunk_value, chunk_shift), lo)
    freq = tf.where(in_chunk, tf.bitwise.left_shift(tf.constant(1, tf.int64), chunk_shift), freq)
    is_escape = ~in_chunk & (table_symbol == pmf_len)
    more = tf.bitwise.bitwise_and(chunk_value, 1 << CHUNK_BITS) > 0
    z_new = z + tf.bitwise.left_shift(tf.bitwise.bitwise_and(chunk_value, 15),
                                      CHUNK_BITS * tf.cast(chunk, tf.int64))
    finish_chunk = in_chunk & ~more
    too_long = in_chunk & more & (chunk >= MAX_CHUNKS - 1)
    overflow = tf.where(tf.bitwise.bitwise_and(z_new, 1) == 1,
                        -tf.bitwise.right_shift(z_new + 1, 1),
                        tf.bitwise.right_shift(z_new, 1) + tf.cast(pmf_len, tf.int64))
    out_of_range = finish_chunk & ((overflow < -2 ** 31) | (overflow >= 2 ** 31))
    value = tf.where(finish_chunk, tf.cast(tf.clip_by_value(overflow, -2 ** 31, 2 ** 31 - 1),
                                           tf.int32), table_symbol)
    return ItemStep(start, freq, value, (~in_chunk & ~is_escape) | finish_chunk,
                    too_long | out_of_range, is_escape, finish_chunk, z_new)


def decode(strings: tf.Tensor, num_positions, num_channels,
           cdf: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`string[B]` → `(int32 symbols[B, M, C], ok[B])`; never fails on content."""
    strings = tf.convert_to_tensor(strings, tf.string)
    info = TableInfo(cdf)
    num_positions = tf.cast(num_positions, tf.int32)
    channels = tf.cast(num_channels, tf.int32)
    batch = tf.shape(strings)[0]
    n = num_positions * channels
    log2k = lanes_log2(n)
    k = tf.bitwise.left_shift(1, log2k)
    per_lane = (n + k - 1) // k
    precision = tf.cast(info.precision, tf.int64)
    slot_mask = tf.bitwise.left_shift(tf.constant(1, tf.int64), precision) - 1
    slots = info.slot_table()
    slots_per_channel = tf.bitwise.left_shift(1, tf.cast(precision, tf.int32))
    single = k == 1

    lengths = tf.strings.length(strings)
    width = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 1 + 4 * k) + 2
    raw = tf.cast(tf.io.decode_raw(strings, tf.uint8, fixed_length=width), tf.int64)
    raw = tf.reshape(raw, [batch, width])
    header = raw[:, 0]
    ok = (lengths >= 1) & (tf.bitwise.right_shift(header, 5) == FORMAT_PORTABLE)
    low_bits = tf.bitwise.bitwise_and(header, 31)

    # One lane (see `_single_lane_frame`): 0–2 state bytes, then words.
    odd = (lengths - 1) % 2 == 1
    extra = tf.where(odd, 1, tf.where(low_bits == 0, 2, 0))
    b1, b2 = raw[:, 1], raw[:, 2]
    small = tf.where(extra == 0, low_bits,
                     tf.where(extra == 1, tf.bitwise.left_shift(low_bits, 8) + b1,
                              tf.bitwise.left_shift(b1, 8) + b2))
    minimal = tf.where(extra == 0, small >= 1, tf.where(extra == 1, small >= 32, small >= 8192))
    # K lanes: header low bits = log2(K) << 2, then 4 state bytes per lane.
    lane_bytes = tf.reshape(tf.gather(raw, 1 + tf.range(4 * k), axis=1), [batch, k, 4])
    multi_state = tf.reduce_sum(tf.bitwise.left_shift(
        lane_bytes, tf.constant([24, 16, 8, 0], tf.int64)), axis=2)
    multi_header_ok = low_bits == tf.cast(tf.bitwise.left_shift(log2k, 2), tf.int64)

    ok &= tf.where(single, minimal, multi_header_ok)
    state_bytes = tf.where(single, extra, 4 * k)
    x = tf.where(single, small[:, None] + tf.zeros([batch, k], tf.int64), multi_state)
    word_start = 1 + state_bytes                                         # [B]
    payload = lengths - word_start
    ok &= (payload >= 0) & (payload % 2 == 0)
    num_words = tf.maximum(payload // 2, 0)
    max_words = width // 2
    word_index = word_start[:, None] + 2 * tf.range(max_words)[None, :]
    hi_byte = tf.gather(raw, tf.minimum(word_index, width - 1), batch_dims=1)
    lo_byte = tf.gather(raw, tf.minimum(word_index + 1, width - 1), batch_dims=1)
    words = tf.bitwise.left_shift(hi_byte, 8) + lo_byte                   # [B, max_words]
    # One lane: the flushed low word of a final state ≥ L is read before decoding starts.
    first_read = single & (num_words > 0)
    x = tf.where(first_read[:, None], tf.bitwise.left_shift(x, WORD_BITS) + words[:, :1], x)
    read0 = tf.cast(first_read, tf.int32)

    lane = tf.range(k)[None, :]
    lane_symbols = tf.maximum((n - lane + k - 1) // k, 0) + tf.zeros([batch, 1], tf.int32)
    chunk_shift = precision - CHUNK_ITEM_BITS
    x0 = tf.where(single, tf.constant(1, tf.int64), tf.constant(STATE_LOWER, tf.int64))
    zeros = tf.zeros([batch, k], tf.int32)
    max_steps = (MAX_CHUNKS + 1) * per_lane + 1

    def active_of(pos, mode, err):
        return ~err & ((pos < lane_symbols) | (mode == 1))

    def body(t, x, read, pos, mode, z, chunk, err, values, where_out, done_out):
        active = active_of(pos, mode, err) & ok[:, None]
        slot = tf.bitwise.bitwise_and(x, slot_mask)
        symbol_index = tf.minimum(pos, per_lane - 1) * k + lane
        channel = symbol_index % channels
        table_symbol = tf.gather(slots, channel * slots_per_channel + tf.cast(slot, tf.int32))
        pmf_len = tf.gather(info.pmf_length, channel)
        where = info.flat(channel, table_symbol)
        lo = tf.cast(tf.gather(info.start, where), tf.int64)
        hi = lo + tf.cast(tf.gather(info.freq, where), tf.int64)
        step = decode_item(slot, mode, z, chunk, table_symbol, pmf_len, lo, hi - lo,
                           chunk_shift)
        x_new = step.freq * tf.bitwise.right_shift(x, precision) + slot - step.start
        emit = active & step.done
        values = values.write(t, step.value)
        where_out = where_out.write(t, symbol_index)
        done_out = done_out.write(t, emit)
        err = err | (active & step.corrupt)
        pos = pos + tf.cast(emit, tf.int32)
        mode, z, chunk = step.next_state(active, mode, z, chunk)
        x = tf.where(active, x_new, x)

        # Renormalize: lanes below L read the next words, in lane order.
        need = active & (x < STATE_LOWER)
        need &= ~single | (read[:, None] < num_words[:, None])
        rank = tf.cumsum(tf.cast(need, tf.int32), axis=1, exclusive=True)
        at = read[:, None] + rank
        word = tf.gather(words, tf.minimum(at, max_words - 1), batch_dims=1)
        err = err | (need & (at >= num_words[:, None]))
        x = tf.where(need, tf.bitwise.left_shift(x, WORD_BITS) + word, x)
        read = read + tf.reduce_sum(tf.cast(need, tf.int32), axis=1)
        return t + 1, x, read, pos, mode, z, chunk, err, values, where_out, done_out

    def cond(t, x, read, pos, mode, z, chunk, err, *_):
        return (t < max_steps) & tf.reduce_any(active_of(pos, mode, err) & ok[:, None])

    ta = lambda dtype: tf.TensorArray(dtype, size=0, dynamic_size=True,  # noqa: E731
                                      element_shape=tf.TensorShape(None))
    loop_vars = (tf.constant(0), x, read0, zeros, zeros, tf.zeros([batch, k], tf.int64), zeros,
                 tf.zeros([batch, k], tf.bool), ta(tf.int32), ta(tf.int32), ta(tf.bool))
    _, x, read, pos, mode, _, _, err, values, where_out, done_out = tf.while_loop(
        cond, body, loop_vars, shape_invariants=_loose_shapes(loop_vars))
    ok &= tf.reduce_all(~err & (pos >= lane_symbols) & (mode == 0) & (x == x0), axis=1)
    ok &= read == num_words

    done = _stack(done_out, batch, k, tf.bool)
    found = tf.where(done)                                               # [E, 3] (t, b, k)
    out_value = tf.gather_nd(_stack(values, batch, k, tf.int32), found)
    out_where = tf.gather_nd(_stack(where_out, batch, k, tf.int32), found)
    scatter_index = tf.stack([tf.cast(found[:, 1], tf.int32), out_where], 1)
    symbols = tf.scatter_nd(scatter_index, out_value, tf.stack([batch, per_lane * k]))
    symbols = tf.reshape(symbols[:, :n], tf.stack([batch, num_positions, channels]))
    return symbols, ok


def traced(function, *dtypes):
    """`function` traced once per signature for eager callers (tests, notebooks, `rdpipe`
    tools), which would otherwise run its while_loops op by op, orders of magnitude slower;
    inside a model's tf.function the call is simply traced through. Arguments are converted to
    `dtypes`. do_not_convert: callers' autograph must not re-read the coder's source (the
    wrapper holds no Python control flow), so a traced model never depends on the file on
    disk."""
    compiled = tf.function(function, autograph=False, reduce_retracing=True)

    @tf.autograph.experimental.do_not_convert
    def wrapper(*args):
        return compiled(*(tf.convert_to_tensor(a, d) for a, d in zip(args, dtypes)))

    wrapper.__doc__, wrapper.__name__ = function.__doc__, function.__name__
    return wrapper


# The traced forms (cdf tables, symbols and sizes are int32; strings are strings).
encode = traced(encode, tf.int32, tf.int32)  # noqa: F811
decode = traced(decode, tf.string, tf.int32, tf.int32, tf.int32)  # noqa: F811
