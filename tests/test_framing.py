"""Image-shape side information (codec/entropy/framing.py, schemas/bitstream.md "Image shape")."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from codec.entropy.framing import MAX_PIXELS, add_image_shape, split_image_shape


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 65535), width=st.integers(1, 65535),
       payloads=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=4))
def test_shape_round_trips_and_costs_at_most_six_bytes(height, width, payloads):
    width = min(width, MAX_PIXELS // height)       # within the pixel limit (tested below)
    framed = add_image_shape(payloads, height, width).numpy()
    rest, h, w, ok = split_image_shape(framed)
    assert ok.numpy().all()
    assert list(rest.numpy()) == payloads
    assert (h.numpy() == height).all() and (w.numpy() == width).all()
    size = sum(1 + (d >= 128) + (d >= 16384) for d in (height, width))
    assert all(len(f) == len(p) + size for f, p in zip(framed, payloads))
    assert framed[0][0] == payloads[0][0]          # the format byte stays first


def test_the_pixel_limit_is_enforced_on_both_sides():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"height\*width <= 16777216"):
        add_image_shape([b"\x20abc"], 4097, 4096)
    assert add_image_shape([b"\x20abc"], 4096, 4096).numpy()[0][1:5] == b"\x80\x20\x80\x20"
    # 4097 × 4096 claimed by a header: varint(4097) = 81 20, varint(4096) = 80 20.
    _, h, w, ok = split_image_shape([b"\x20\x81\x20\x80\x20abc", b"\x20\x80\x20\x80\x20abc"])
    assert list(ok.numpy()) == [False, True]
    assert (h.numpy()[0], w.numpy()[0]) == (1, 1) and (h.numpy()[1], w.numpy()[1]) == (4096, 4096)


def test_kodak_shape_takes_four_bytes():
    assert add_image_shape([b"\x20abc"], 512, 768).numpy()[0] == b"\x20\x80\x04\x80\x06abc"


@pytest.mark.parametrize("string", [
    b"", b"\x20", b"\x20\x05",                     # truncated: no width
    b"\x20\x80", b"\x20\x80\x80\x80\x01\x01",      # unterminated / longer than 3 bytes
    b"\x20\x00\x05", b"\x20\x05\x00",              # zero dimension
    b"\x20\x85\x00\x05",                           # non-minimal (ends in a zero byte)
    b"\x20\xff\xff\x7f\x05",                       # 2^21 − 1 > 65535
])
def test_malformed_shapes_are_rejected_without_errors(string):
    rest, h, w, ok = split_image_shape([string])
    assert not ok.numpy()[0]
    assert rest.numpy()[0] == b"" and h.numpy()[0] == 1 and w.numpy()[0] == 1


def test_random_bytes_never_raise():
    rng = np.random.default_rng(0)
    strings = [rng.bytes(int(n)) for n in rng.integers(0, 12, 3000)]
    rest, h, w, ok = split_image_shape(strings)
    assert rest.shape == (3000,)
    ok = ok.numpy()
    assert ((h.numpy()[ok] >= 1) & (w.numpy()[ok] <= 65535)).all()


def test_out_of_range_dimensions_are_refused_at_encode_time():
    with pytest.raises(tf.errors.InvalidArgumentError, match="65535"):
        add_image_shape([b"\x20"], 70000, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="65535"):
        add_image_shape([b"\x20"], 0, 3)
