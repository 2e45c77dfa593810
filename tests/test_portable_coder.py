"""The portable rANS coder (codec/entropy/portable_coder.py): round trips on random tables and symbols,
escapes, single- and multi-lane strings, determinism, sizes next to TFC's coder, format bytes,
and fuzzing with random and mutated strings (no crash, no hang, check rejects them)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression_ops as tco
from hypothesis import HealthCheck, given, settings, strategies as st

from codec.entropy import portable_coder, range_coder
from codec.entropy.coders import coder_of_string, get_coder, string_format_ids


def make_tables(rng, channels: int, max_length: int, precision: int = 12,
                concentration: float = .5) -> tf.Tensor:
    rows = []
    for _ in range(channels):
        # TFC's pmf_to_quantized_cdf aborts the process unless every symbol fits in 2^precision.
        length = min(int(rng.integers(1, max_length + 1)), 2 ** precision // 2)
        pmf = rng.dirichlet(np.full(length, concentration)) * (1 - 2 ** -8)
        cdf = tco.pmf_to_quantized_cdf(np.append(pmf, 2 ** -8).astype(np.float32),
                                       precision=precision).numpy()
        rows.append(np.concatenate([[-precision], cdf]))
    return tf.constant(np.concatenate(rows).astype(np.int32))


def pmf_lengths(cdf: tf.Tensor) -> np.ndarray:
    return portable_coder.TableInfo(cdf).pmf_length.numpy()


def sample_symbols(rng, cdf, shape, escape_rate=.05, extremes: bool = True) -> np.ndarray:
    """Symbols mostly inside each channel's table, some escapes (incl. int32 extremes unless
    `extremes` is False: TFC's coder only takes |symbol| < 2^30)."""
    lengths = pmf_lengths(cdf)
    symbols = (rng.random(shape) * lengths[None, None, :]).astype(np.int32)
    escape = rng.random(shape) < escape_rate
    far = rng.choice([-1, -2, -17, -2 ** 31, 2 ** 31 - 1, 70_000] if extremes else
                     [-1, -2, -17, -2 ** 29, 2 ** 29, 70_000], size=shape)
    near = lengths[None, None, :] + rng.integers(0, 40, shape)
    symbols[escape] = np.where(rng.random(shape) < .5, far, near)[escape]
    return symbols


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31), batch=st.integers(0, 4), positions=st.integers(1, 12),
       channels=st.integers(1, 6), max_length=st.integers(1, 40), precision=st.integers(5, 16),
       escape_rate=st.sampled_from([0., .02, .3]))
@pytest.mark.parametrize("coder", [portable_coder, range_coder], ids=["rans", "range"])
def test_round_trip_on_random_tables_and_symbols(coder, seed, batch, positions, channels,
                                                 max_length, precision, escape_rate):
    rng = np.random.default_rng(seed)
    cdf = make_tables(rng, channels, max_length, precision)
    symbols = sample_symbols(rng, cdf, (batch, positions, channels), escape_rate)
    strings = coder.encode(symbols, cdf)
    assert strings.shape == (batch,)
    decoded, ok = coder.decode(strings, positions, channels, cdf)
    assert ok.numpy().all()
    np.testing.assert_array_equal(decoded.numpy(), symbols)
    if coder is portable_coder:
        assert all(coder_of_string(s) == "portable" for s in strings.numpy())
    else:                                     # headerless: no format byte, no trailing zeros
        assert all(not s.endswith(b"\x00") for s in strings.numpy())


def test_large_latents_use_lanes_and_stay_within_1_percent_of_tfc():
    """Kodak-size latents (48×32 positions × 192 channels): 64 lanes, bit-exact, ≤ 1.01×."""
    rng = np.random.default_rng(0)
    channels, positions = 192, 48 * 32
    scales = np.exp(rng.uniform(-2, 2, channels))
    rows, width = [], 41
    for scale in scales:  # discretized Laplace priors, as a trained codec's would look
        pmf = np.exp(-np.abs(np.arange(width) - width // 2) / scale)
        pmf = pmf / pmf.sum() * (1 - 2 ** -8)
        cdf = tco.pmf_to_quantized_cdf(np.append(pmf, 2 ** -8).astype(np.float32),
                                       precision=12).numpy()
        rows.append(np.concatenate([[-12], cdf]))
    cdf = tf.constant(np.concatenate(rows).astype(np.int32))
    symbols = np.round(rng.laplace(0, scales, (1, positions, channels))).astype(np.int32)
    symbols += width // 2
    symbols[0, :3, :3] = [[-5, 1000, 2 ** 29]] * 3   # a few escapes too
    assert int(portable_coder.lanes_log2(positions * channels)) == 6
    assert [int(portable_coder.lanes_log2(n)) for n in (50, 16383, 16384, 32767, 32768)] == \
        [0, 0, 3, 3, 4]
    strings = portable_coder.encode(symbols, cdf)
    decoded, ok = portable_coder.decode(strings, positions, channels, cdf)
    assert ok.numpy().all()
    np.testing.assert_array_equal(decoded.numpy(), symbols)
    tfc = get_coder("tfc").encode(symbols, cdf)
    ratio = len(strings.numpy()[0]) / len(tfc.numpy()[0])
    assert ratio <= 1.01, ratio


def test_deterministic_and_identical_in_graph_and_eager_mode():
    rng = np.random.default_rng(5)
    cdf = make_tables(rng, 10, 20)
    symbols = sample_symbols(rng, cdf, (6, 30, 10))
    eager = portable_coder.encode(symbols, cdf).numpy()
    graph = tf.function(portable_coder.encode)(tf.constant(symbols), cdf).numpy()
    again = portable_coder.encode(symbols, cdf).numpy()
    assert list(eager) == list(graph) == list(again)


def test_each_backend_decodes_its_own_strings_and_refuses_the_other():
    rng = np.random.default_rng(2)
    cdf = make_tables(rng, 8, 16)
    symbols = sample_symbols(rng, cdf, (5, 4, 8), escape_rate=.05, extremes=False)
    portable, tfc = get_coder("portable"), get_coder("tfc")
    for coder, other in ((portable, tfc), (tfc, portable)):
        strings = coder.encode(symbols, cdf)
        assert (string_format_ids(strings).numpy() == coder.format_id).all()
        decoded, ok = coder.decode(strings, 4, 8, cdf)
        assert ok.numpy().all()
        np.testing.assert_array_equal(decoded.numpy(), symbols)
        _, ok = other.decode(strings, 4, 8, cdf)
        assert not ok.numpy().any()
    with pytest.raises(tf.errors.InvalidArgumentError, match="only encodes symbols"):
        tfc.encode(np.full((1, 1, 8), 2 ** 31 - 1, np.int32), cdf)
    assert coder_of_string(b"") == "empty string"
    assert coder_of_string(b"\xe0") == "unknown format byte 0xe0"


def _mutations(rng, strings: list[bytes], count: int) -> list[bytes]:
    out = []
    for i in range(count):
        s = bytearray(strings[i % len(strings)])
        kind = i % 4
        if kind == 0 and s:                         # flip one bit
            s[int(rng.integers(len(s)))] ^= 1 << int(rng.integers(8))
        elif kind == 1:                             # truncate
            s = s[:int(rng.integers(len(s) + 1))]
        elif kind == 2:                             # append junk
            s += rng.bytes(int(rng.integers(1, 4)))
        else:                                       # overwrite a random byte
            if s:
                s[int(rng.integers(len(s)))] = int(rng.integers(256))
        out.append(bytes(s))
    return out


def test_fuzz_random_and_mutated_strings_never_crash_or_hang():
    """12,000 single-lane strings (MNIST-like: 50 symbols) + 600 multi-lane ones."""
    rng = np.random.default_rng(11)
    cdf = make_tables(rng, 50, 30)
    symbols = sample_symbols(rng, cdf, (200, 1, 50), escape_rate=.02)
    valid = list(portable_coder.encode(symbols, cdf).numpy())
    random = [rng.bytes(int(n)) for n in rng.integers(0, 60, 4000)]
    headed = [bytes([0x20 | int(rng.integers(32))]) + rng.bytes(int(n))
              for n in rng.integers(0, 60, 4000)]
    mutated = _mutations(rng, valid, 4000)
    fuzz = random + headed + mutated
    decoded, ok = portable_coder.decode(fuzz, 1, 50, cdf)
    ok = ok.numpy()
    assert decoded.shape == (12000, 1, 50)
    assert ok[:8000].mean() < .01                       # random bytes: rejected
    changed = np.array([m not in set(valid) for m in mutated])
    assert ok[8000:][changed].mean() < .05               # real damage: nearly always caught

    big_cdf = make_tables(rng, 64, 12)
    big = portable_coder.encode(sample_symbols(rng, big_cdf, (3, 512, 64)), big_cdf).numpy()
    assert all(s[0] >> 2 & 7 == 4 for s in big)         # 32,768 symbols → 16 lanes
    fuzz = _mutations(rng, list(big), 300) + [b"\x24" + rng.bytes(int(n))
                                              for n in rng.integers(0, 9000, 300)]
    _, ok = portable_coder.decode(fuzz, 512, 64, big_cdf)
    assert ok.numpy()[300:].mean() == 0


@pytest.mark.parametrize("bad_input", [
    [b""], [b"\x20"], [b"\x21"], [b"\x20\x00\x00"], [b"\x3f" + b"\xff" * 5], [b"\x3c"],
    [b"\x24" + b"\x00" * 7], [b"\x20" * 40],
])
def test_edge_strings_decode_cleanly_and_only_canonical_ones_pass(bad_input):
    """Tiny strings either fail the check or are exactly what the encoder writes for what they
    decode to (b"\x21" — state 1, no payload — is the valid string for all-most-probable
    symbols: they cost less than the header's spare bits)."""
    rng = np.random.default_rng(3)
    cdf = make_tables(rng, 4, 6)
    decoded, ok = portable_coder.decode(bad_input, 3, 4, cdf)
    assert decoded.shape == (1, 3, 4)
    if ok.numpy()[0]:
        assert portable_coder.encode(decoded, cdf).numpy()[0] == bad_input[0]
