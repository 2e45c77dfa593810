"""The headerless `portable-range` coder (codec/entropy/range_coder.py): carries; strings
within a few bits of their information; canonical check; bounded, crash-free decoding of
arbitrary bytes. (Round trips on random tables, escapes included: test_portable_coder.py, run
for both one-stream coders.)"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from codec.entropy import portable_coder, range_coder
from codec.entropy.coders import PortableRangeCoder, get_coder, is_headerless
from test_portable_coder import make_tables, sample_symbols


def _table_samples(rng, cdf, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Symbols drawn from each channel's own table (no escapes) and their information (bits)."""
    table = cdf.numpy()
    starts = list(np.flatnonzero(table < 0)) + [len(table)]
    precision = -table[starts[0]]
    symbols = np.zeros((count, 1, len(starts) - 1), np.int32)
    bits = np.zeros(count)
    for c in range(len(starts) - 1):
        pmf = np.diff(table[starts[c] + 1:starts[c + 1]]) / 2 ** precision
        regular = pmf[:-1] / pmf[:-1].sum()
        symbols[:, 0, c] = rng.choice(len(regular), size=count, p=regular)
        bits -= np.log2(pmf[symbols[:, 0, c]])
    return symbols, bits


def test_strings_are_within_a_few_bits_of_their_information():
    """Issue 20: 50-symbol strings (MNIST-like tables) cost their information + a few bits —
    far below the framed one-lane rANS strings of the same symbols."""
    rng = np.random.default_rng(1)
    cdf = make_tables(rng, 50, 30, 12, concentration=.1)
    symbols, information = _table_samples(rng, cdf, 1000)
    strings = range_coder.encode(symbols, cdf).numpy()
    coded = np.array([8 * len(s) for s in strings])
    assert 0 < (coded - information).mean() <= 5, (coded - information).mean()
    framed = np.array([8 * len(s) for s in portable_coder.encode(symbols, cdf).numpy()])
    assert framed.mean() - coded.mean() > 8
    decoded, ok = range_coder.decode(strings, 1, 50, cdf)
    assert np.asarray(ok).all() and (decoded.numpy() == symbols).all()


def test_carries_propagate_through_runs_of_ff_bytes():
    """A table whose most probable symbol sits at the top of the interval drives `low` up to
    the carry boundary again and again; every string still decodes exactly."""
    precision = 12
    # Symbol 2 (p ≈ 1) owns the bottom slots; 0 and 1 the top two: runs of them push `low`
    # towards 2^32, and the next symbol carries into the bytes already written.
    cdf = tf.constant([-precision, 0, 1, 2, 4095, 4096], tf.int32)
    rng = np.random.default_rng(2)
    symbols = rng.choice(3, size=(64, 200, 1), p=[.45, .45, .1]).astype(np.int32)
    symbols[0] = 1
    strings = range_coder.encode(symbols, cdf)
    decoded, ok = range_coder.decode(strings, 200, 1, cdf)
    assert np.asarray(ok).all()
    np.testing.assert_array_equal(decoded.numpy(), symbols)


def test_most_probable_symbols_only_is_the_empty_string_and_decodes():
    cdf = make_tables(np.random.default_rng(3), 4, 8, 12)
    info = portable_coder.TableInfo(cdf)
    # The most probable symbol of each channel owns slot 0 (frequency-sorted layout).
    slots = info.slot_table().numpy().reshape(4, -1)
    symbols = np.broadcast_to(slots[:, 0], (2, 3, 4)).astype(np.int32)
    strings = range_coder.encode(symbols, cdf).numpy()
    assert list(strings) == [b"", b""]
    decoded, ok = range_coder.decode(tf.constant([b""]), 3, 4, cdf)
    assert np.asarray(ok).all() and (decoded.numpy()[0] == symbols[0]).all()


def test_only_canonical_strings_pass_the_check():
    rng = np.random.default_rng(4)
    cdf = make_tables(rng, 6, 20, 12)
    symbols = sample_symbols(rng, cdf, (16, 5, 6), .05)
    strings = list(range_coder.encode(symbols, cdf).numpy())
    padded = [s + b"\x00" for s in strings]           # same value, not canonical
    longer = [s + b"\x5a\x01" for s in strings]       # bytes the decoder never needs
    for bad in (padded, longer):
        _, ok = range_coder.decode(tf.constant(bad), 5, 6, cdf)
        assert not np.asarray(ok).any()


def test_arbitrary_bytes_never_crash_and_long_ones_never_pass():
    rng = np.random.default_rng(5)
    cdf = make_tables(rng, 50, 30, 12, concentration=.1)
    strings = [rng.bytes(int(n)) for n in rng.integers(0, 300, 2000)]
    decoded, ok = range_coder.decode(tf.constant(strings), 1, 50, cdf)
    assert decoded.shape == (2000, 1, 50)
    lengths = np.array([len(s) for s in strings])
    assert not np.asarray(ok)[lengths > 64].any()


def test_long_strings_are_refused_clearly():
    cdf = make_tables(np.random.default_rng(6), 2, 4, 12)
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 2048 symbols"):
        range_coder.encode(np.zeros((1, 1024, 2), np.int32), cdf)
    _, ok = range_coder.decode(tf.constant([b"\x01"]), 1024, 2, cdf)
    assert not np.asarray(ok).any()


def test_registered_as_a_headerless_coder():
    coder = get_coder("portable-range")
    assert isinstance(coder, PortableRangeCoder) and coder.format_id == 4
    assert is_headerless("portable-range") and not is_headerless("portable")
