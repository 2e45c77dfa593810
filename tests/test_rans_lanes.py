"""Portable rANS v2 (codec/entropy/rans_lanes.py, format id 3): round trips under per-channel and
per-element tables with escapes, the dispatch between v1 and v2 in the `portable` coder, and
strings that are random, truncated, bit-flipped or carry a broken escape section."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings, strategies as st

from codec.entropy import portable_coder, rans_lanes
from codec.entropy.coders import PortableRansCoder, coder_of_string, string_format_ids
from test_portable_coder import make_tables, pmf_lengths, sample_symbols

MIN_LANES_SYMBOLS = portable_coder.SINGLE_LANE_MAX


def _per_element(rng, cdf, batch: int, n: int, escape_rate: float):
    """Symbols `[B, n]`, each under a random table (as a conditional model's would be)."""
    tables = rng.integers(0, len(pmf_lengths(cdf)), (batch, n)).astype(np.int32)
    lengths = pmf_lengths(cdf)[tables]
    symbols = (rng.random((batch, n)) * lengths).astype(np.int32)
    escape = rng.random((batch, n)) < escape_rate
    far = rng.choice([-1, -3, -2 ** 31, 2 ** 31 - 1, 70_000], size=(batch, n))
    symbols[escape] = np.where(rng.random((batch, n)) < .5, far, lengths + 3)[escape]
    return symbols, tables


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31), batch=st.integers(0, 3), extra=st.integers(0, 5000),
       tables=st.integers(1, 9), precision=st.sampled_from([8, 12, 16]),
       escape_rate=st.sampled_from([0., .001, .05]))
def test_round_trip_under_per_element_tables(seed, batch, extra, tables, precision,
                                              escape_rate):
    rng = np.random.default_rng(seed)
    cdf = make_tables(rng, tables, 40, precision)
    symbols, table_index = _per_element(rng, cdf, batch, MIN_LANES_SYMBOLS + extra, escape_rate)
    strings = rans_lanes.encode(symbols, table_index, cdf)
    assert strings.shape == (batch,)
    decoded, ok = rans_lanes.decode(strings, table_index, cdf)
    assert np.asarray(ok).all()
    np.testing.assert_array_equal(np.asarray(decoded), symbols)
    assert all(s[0] >> 5 == rans_lanes.FORMAT_LANES for s in strings.numpy())


def test_portable_coder_writes_v2_for_many_symbols_and_v1_for_few():
    rng = np.random.default_rng(3)
    cdf = make_tables(rng, 16, 30)
    coder = PortableRansCoder()
    # v1 below 2,048 symbols; v2 with 1, 8, 64 and 128 lanes above.
    for positions, format_id in ((rans_lanes.V2_MIN_SYMBOLS // 16 - 1, 1),
                                 (rans_lanes.V2_MIN_SYMBOLS // 16, 3),
                                 (MIN_LANES_SYMBOLS // 16, 3), (12_288, 3), (37_500, 3)):
        symbols = sample_symbols(rng, cdf, (2, positions, 16), escape_rate=.01)
        strings = coder.encode(tf.constant(symbols), cdf)
        assert string_format_ids(strings).numpy().tolist() == [format_id] * 2
        assert {coder_of_string(s) for s in strings.numpy()} == {"portable"}
        decoded, ok = coder.decode(strings, positions, 16, cdf)
        assert np.asarray(ok).all()
        np.testing.assert_array_equal(np.asarray(decoded), symbols)
        if format_id == 3:   # v2 costs what v1 does, but ≤ 4 bytes per extra lane
            v1 = portable_coder.encode(tf.constant(symbols), cdf).numpy()
            n = positions * 16
            extra = 4 * ((1 << int(rans_lanes.encoder_lanes_log2(n))) - (1 << int(
                portable_coder.lanes_log2(n))))
            assert all(-8 <= len(a) - len(b) <= extra + 8 for a, b in zip(strings.numpy(), v1))


def test_lane_counts():
    counts = {n: 1 << int(rans_lanes.lanes_log2(n)) for n in
              (16_384, 131_072, 196_608, 524_287, 524_288, 1_048_576, 10 ** 8)}
    assert counts == {16_384: 8, 131_072: 64, 196_608: 64, 524_287: 64, 524_288: 128,
                      1_048_576: 256, 10 ** 8: 256}
    for n in (16_384, 200_000, 3_000_000):   # never fewer than v1: its length bound holds
        assert int(rans_lanes.lanes_log2(n)) >= int(portable_coder.lanes_log2(n))


def test_encoders_take_a_lane_per_768_symbols_below_64_lanes():
    counts = {n: 1 << int(rans_lanes.encoder_lanes_log2(n)) for n in
              (2_047, 2_048, 3_072, 12_288, 16_384, 49_152, 196_608, 524_288, 10 ** 8)}
    assert counts == {2_047: 1, 2_048: 2, 3_072: 4, 12_288: 16, 16_384: 16, 49_152: 64,
                      196_608: 64, 524_288: 128, 10 ** 8: 256}
    for n in (2_048, 12_288, 200_000, 3_000_000):   # never below the earlier count
        assert int(rans_lanes.encoder_lanes_log2(n)) >= int(rans_lanes.lanes_log2(n))


def test_v1_many_lane_strings_still_decode_through_the_portable_coder():
    rng = np.random.default_rng(4)
    cdf = make_tables(rng, 8, 20)
    symbols = sample_symbols(rng, cdf, (2, 4096, 8), escape_rate=.02)
    v1 = portable_coder.encode(tf.constant(symbols), cdf)
    assert string_format_ids(v1).numpy().tolist() == [1, 1]
    decoded, ok = PortableRansCoder().decode(v1, 4096, 8, cdf)
    assert np.asarray(ok).all()
    np.testing.assert_array_equal(np.asarray(decoded), symbols)


def _coded(seed: int = 5, escape_rate: float = .02):
    rng = np.random.default_rng(seed)
    cdf = make_tables(rng, 8, 20)
    symbols = sample_symbols(rng, cdf, (1, 2048, 8), escape_rate=escape_rate)
    table_index = np.broadcast_to(np.arange(2048 * 8) % 8, (1, 2048 * 8)).astype(np.int32)
    string = rans_lanes.encode(symbols.reshape(1, -1), table_index, cdf).numpy()[0]
    return rng, cdf, symbols, table_index, string


def _ok(strings, table_index, cdf) -> list[bool]:
    table_index = np.broadcast_to(table_index[:1], (len(strings), table_index.shape[1]))
    _, ok = rans_lanes.decode(tf.constant(strings, tf.string), table_index, cdf)
    return np.asarray(ok).tolist()


def test_changed_strings_are_refused():
    rng, cdf, _, table_index, string = _coded()
    changed = [string[:-1], string[:len(string) // 2], string + b"\x00", string + b"\x85",
               b"", bytes([string[0] ^ 4]) + string[1:]]
    # Flips in the header, lane states and words (the escape values at the end are plain
    # bytes: a flip in their value bits decodes, to another value, as in any raw payload).
    for _ in range(40):
        flipped = bytearray(string)
        flipped[int(rng.integers(len(flipped) // 2))] ^= 1 << int(rng.integers(8))
        changed.append(bytes(flipped))
    assert _ok([string], table_index, cdf) == [True]
    assert not any(_ok(changed, table_index, cdf))


def test_broken_escape_sections_are_refused():
    _, cdf, symbols, table_index, string = _coded(escape_rate=.0)
    assert _ok([string], table_index, cdf) == [True]
    # No escapes: any byte after the words is foreign.
    assert _ok([string + b"\x00"], table_index, cdf) == [False]
    _, cdf, symbols, table_index, string = _coded(escape_rate=.01)
    escaped = (symbols < 0) | (symbols >= pmf_lengths(cdf)[None, None, :])
    assert escaped.sum() > 50
    items = 0
    for s, length in zip(symbols[escaped], np.broadcast_to(pmf_lengths(cdf), symbols.shape)[
            escaped]):
        z = -2 * int(s) - 1 if s < 0 else 2 * (int(s) - int(length))
        items += max(1, (z.bit_length() + 3) // 4)
    padding = -5 * items % 8
    assert padding > 0        # this seed leaves padding bits in the last byte
    assert _ok([string + b"\x00",                                   # a spare byte
                string[:-1],                                         # a value cut short
                string[:-1] + bytes([string[-1] | 1 << (7 - padding + 1)])],  # padding bit set
               table_index, cdf) == [False, False, False]


def test_random_bytes_never_crash_and_are_refused():
    rng, cdf, _, table_index, string = _coded()
    strings = [rng.bytes(int(rng.integers(0, 3 * len(string)))) for _ in range(30)]
    strings += [bytes([rans_lanes.FORMAT_LANES << 5 | 3 << 1]) + rng.bytes(len(string))
                for _ in range(30)]
    assert not any(_ok(strings, table_index, cdf))
