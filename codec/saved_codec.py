"""Loading an exported codec SavedModel and calling it from Python with input checks.

The SavedModel contract (see `schemas/`): `compress(images uint8 [B,H,W,C]) → strings [B],
information_bits [B]`, `decompress(strings [B]) → images`, `decompress_unchecked(strings) →
images, sanity_ok`. This wrapper turns numpy in/out, validates shapes and dtypes up front and
raises `DecodeError` with the failing indices instead of an opaque op error.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from codec.entropy.coders import (FORMAT_IDS, available_coders, coder_of_string, get_coder,
                                  is_headerless)
from codec.entropy.entropy_models import DecodeError, check_decoded, table_fingerprint

__all__ = ["SavedCodec", "DecodeError", "InputError", "model_lambda", "model_name",
           "lambda_of_serving_name"]


LEGACY_CODER = "tfc-v0"   # bitstream v0: TFC payload without a format byte (schemas/bitstream.md)


class InputError(ValueError):
    """Images or strings of the wrong type or shape."""


def _load_custom_ops() -> None:
    # The TFC range coder ops must be registered before a SavedModel using them is loaded.
    import tensorflow_compression_ops  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def model_lambda(model_dir: str | os.PathLike) -> float:
    """λ of a model dir: its model card (zoo), training.json / summary.json (trained), or the
    Pusher's `<serving name>_l<λ>/<version>` naming (pushed); NaN if unknown."""
    model_dir = Path(model_dir)
    for directory in (model_dir, model_dir.parent):
        card = directory / "card.json"
        if card.is_file():
            return float(json.loads(card.read_text())["lambda"])
        for name in ("training.json", "summary.json"):
            if (directory / name).is_file():
                return float(json.loads((directory / name).read_text())["config"]["lmbda"])
    for name in (model_dir.name, model_dir.parent.name):
        lmbda = lambda_of_serving_name(name)
        if not math.isnan(lmbda):
            return lmbda
    return float("nan")


def lambda_of_serving_name(name: str) -> float:
    """λ from the Pusher's serving names `<name>_l<λ>` (`mnist_l2000`, `bls2017_l0p01`: the
    pipeline writes the decimal point as `p`); NaN otherwise."""
    match = re.search(r"_l(\d+(?:[.p]\d+)?(?:e-?\d+)?)$", name)
    return float(match.group(1).replace("p", ".")) if match else float("nan")


def model_name(model_dir: str | os.PathLike) -> str:
    """How files name the model that wrote them: the zoo name (`bls2017-q3`), the training
    output dir (`lmbda_0.01`), or `<serving name>/<version>` for a pushed model."""
    path = Path(model_dir).resolve()
    if path.name == "saved_model":
        path = path.parent
    card = path / "card.json"
    if card.is_file():
        return str(json.loads(card.read_text())["name"])
    if path.name.isdigit():
        return f"{path.parent.name}/{path.name}"
    return path.name


def claimed_sizes_and_short_strings(module, strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """For a loaded any-size image model (portable coder): (claimed pixels int64 `[B]`, 0 where
    the header is malformed; bool `[B]` strings shorter than any string coding the size they
    claim can be under the model's tables: `PortableRansCoder.min_string_bytes`, an exact
    bound). New exports refuse such strings inside `decompress` too (ImageCodec); checking
    here makes exports made before, and servers of them, refuse them before decoding (a
    100-byte string claiming 4096×4096 would otherwise run the synthesis over 16 MP)."""
    from codec.entropy import framing, portable_coder  # pylint: disable=import-outside-toplevel
    from codec.models.bls2017 import latent_positions  # pylint: disable=import-outside-toplevel
    if not strings:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    payload, height, width, shape_ok = framing.split_image_shape(
        tf.constant(strings, dtype=tf.string, shape=[len(strings)]))
    ok = shape_ok.numpy()
    pixels = np.where(ok, height.numpy().astype(np.int64) * width.numpy(), 0)
    if hasattr(module, "hyper_synthesis"):
        # Hyperprior exports (all made since the bound existed) check their z string's length
        # inside `decompress`; the factorized bound below would not apply to their layout.
        return pixels, np.zeros(len(strings), bool)
    tables = module.entropy_model
    need = portable_coder.min_string_bytes(
        tables._cdf, latent_positions(height, width),  # pylint: disable=protected-access
        tables._cdf_offset.shape[0])  # pylint: disable=protected-access
    return pixels, ok & (tf.strings.length(payload).numpy().astype(np.int64) < need.numpy())


class SavedCodec:
    """A loaded codec SavedModel (`path` is the `saved_model/` dir or the training output dir).

    Attributes for the file container (codec/entropy/container.py): `name`, `lmbda`, `fingerprint`
    (8 bytes over the entropy tables), `channels` and `fixed_size` (`(H, W)`, or None when the
    model codes any size)."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        given = path
        if (path / "saved_model").is_dir():
            path = path / "saved_model"
        if not (path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"no SavedModel at {path} (expected saved_model.pb)")
        _load_custom_ops()
        self.path = path
        self._module = tf.saved_model.load(str(path))
        self._compress = self._module.signatures["compress"]
        self._decompress = self._module.signatures["decompress_unchecked"]
        spec = self._compress.structured_input_signature[1]["images"]
        self.image_shape: tuple = tuple(spec.shape[1:])  # e.g. (28, 28, 1) or (None, None, 3)
        self.channels: int = int(self.image_shape[-1])
        self.fixed_size = (tuple(self.image_shape[:2])
                           if all(isinstance(d, int) for d in self.image_shape) else None)
        self.name = model_name(given)
        self.lmbda = model_lambda(given if given != path else path.parent)
        self._coder: str | None = None

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """8 bytes of SHA-256 over the model's entropy tables (`table_fingerprint`)."""
        tables = self._module.entropy_model
        return table_fingerprint(tables._cdf, tables._cdf_offset,  # pylint: disable=protected-access
                                 tables._cdf_length, tables._quantization_offset)  # pylint: disable=protected-access

    @property
    def coder(self) -> str | None:
        """Name of the model's entropy coder: recorded in the model (`string_format`, exports
        since headerless strings), else read from the format byte of probe strings."""
        if self._coder is None and hasattr(self._module, "string_format"):
            self._coder = self._module.string_format()["coder"].numpy().decode()
        if self._coder is None:
            # Three different images: every v1 string carries the same format byte, while the
            # first bytes of v0 strings (TFC payload only, exported before the format byte)
            # vary. v0 models keep decoding their own strings, without a format check.
            shape = (1,) + (self.fixed_size or (16, 16)) + (self.channels,)
            probes = [np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8),
                      np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)]
            names = {coder_of_string(self._compress(images=tf.constant(p))["strings"].numpy()[0])
                     for p in probes}
            name = names.pop() if len(names) == 1 else LEGACY_CODER
            self._coder = name if name in FORMAT_IDS.values() else LEGACY_CODER
        return self._coder

    @property
    def string_format(self) -> int:
        """The coder format id the `.bin` header records (0: unknown, e.g. a v0 model)."""
        return get_coder(self.coder).format_id if self.coder in available_coders() else 0

    @property
    def headerless(self) -> bool:
        """Whether this model's strings are pure payload (no format byte: `portable-range`)."""
        return is_headerless(self.coder)

    def _as_batch(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise InputError(f"images must be uint8 in [0, 255], got dtype {images.dtype}")
        if self.fixed_size is None:
            return self._as_image_batch(images)
        shape = self.image_shape
        if images.shape == shape[:-1] and shape[-1] == 1:   # one [H, W] image
            images = images[None]
        if images.shape == shape:                             # one [H, W, C] image
            images = images[None]
        if images.ndim == len(shape) and shape[-1] == 1 and images.shape[1:] == shape[:-1]:
            images = images[..., None]                        # [B, H, W] → [B, H, W, 1]
        if images.shape[1:] != shape:
            raise InputError(f"images must have shape [batch, {', '.join(map(str, shape))}] "
                             f"(or without the channel axis), got {list(images.shape)}")
        return images

    def _as_image_batch(self, images: np.ndarray) -> np.ndarray:
        """Any-size models: `[H, W, C]` or `[B, H, W, C]` (`[H, W]` for greyscale models)."""
        if images.ndim == 2 and self.channels == 1:
            images = images[..., None]
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != self.channels or 0 in images.shape:
            raise InputError(f"images must have shape [batch, height, width, {self.channels}], "
                             f"got {list(images.shape)}")
        return images

    def compress(self, images) -> tuple[list[bytes], np.ndarray]:
        """uint8 images → (one byte string per image, information content in bits per image)."""
        images = self._as_batch(images)
        out = self._compress(images=tf.constant(images))
        if "information_bits" in out:
            return list(out["strings"].numpy()), out["information_bits"].numpy()
        pixels = images.shape[1] * images.shape[2]     # image codecs report bits per pixel
        return list(out["strings"].numpy()), out["bits_per_pixel"].numpy() * pixels

    def decompress(self, strings, check: bool = True) -> np.ndarray:
        """Byte strings → uint8 images `[B, *image_shape]`.

        check=True raises `DecodeError` naming the strings that fail the sanity check;
        check=False decodes anything (e.g. random bytes: sampling from the decoder).
        """
        images, ok = self.decompress_with_status(strings)
        if check:
            empty = [] if self.headerless else [i for i, s in enumerate(strings) if not s]
            if empty:
                raise DecodeError(f"{len(empty)} empty strings (indices {empty[:10]}): an encoder "
                                  "output is never empty for real images")
            self._check_formats(strings)
            check_decoded(ok)
        return images

    def _check_formats(self, strings) -> None:
        """Clear error for strings written by another coder (format byte, schemas/bitstream.md)."""
        expected = self.coder
        if expected not in FORMAT_IDS.values():
            return   # headerless strings, or a v0 model (strings without format byte)
        foreign = [(i, coder_of_string(s)) for i, s in enumerate(strings)
                   if coder_of_string(s) != expected]
        if foreign:
            i, found = foreign[0]
            raise DecodeError(f"{len(foreign)} strings were not written by this model's "
                              f"{expected!r} coder (e.g. index {i}: {found}); decode them with a "
                              "model exported with that coder")

    def random_strings(self, count: int, payload_bytes: int,
                       rng: np.random.Generator) -> list[bytes]:
        """`count` random strings in this model's own format, for sampling from the decoder:
        the format byte's coder id (bits 7–5) is the model's, everything else — the coder's
        own 5 bits of byte 0 and `payload_bytes` bytes after it — is random. (Random framing
        would carry the right coder id only one time in eight; the rest decode as refused,
        i.e. all-zero latents, and the samples collapse onto one image.) Fixed-size models
        only: a variable-size model's strings also carry the image size."""
        if self.fixed_size is None:
            raise InputError("sampling needs a fixed-size model (e.g. MNIST 28×28); this one "
                             "codes any image size")
        format_id = (get_coder(self.coder).format_id
                     if self.coder in FORMAT_IDS.values() and not self.headerless else None)
        strings = []
        for _ in range(count):
            data = bytearray(rng.bytes(payload_bytes + 1))
            if format_id is not None:      # bitstream v1 (v0 strings have no format byte)
                data[0] = (format_id << 5) | (data[0] & 0x1f)
            strings.append(bytes(data))
        return strings

    def decompress_with_status(self, strings) -> tuple[np.ndarray, np.ndarray]:
        """Byte strings → (uint8 images, per-string sanity flag); never raises on content.

        Empty strings are flagged not-ok: the TFC coder only emits one for the degenerate input
        whose every symbol is the lowest table entry, which no real image produces, while a
        lost or zero-length file is a common failure worth reporting.
        """
        if isinstance(strings, (bytes, str)):
            raise InputError("strings must be a sequence of byte strings, not a single string")
        strings = list(strings)
        bad = [i for i, s in enumerate(strings) if not isinstance(s, (bytes, bytearray))]
        if bad:
            raise InputError(f"strings must be bytes; elements {bad[:10]} are not")
        short = self.too_short_for_their_size(strings)
        if short.any():
            return self._decompress_skipping(strings, short)
        out = self._decompress(strings=tf.constant(strings, dtype=tf.string, shape=[len(strings)]))
        # A headerless string may be empty (every symbol the most probable one).
        ok = out["sanity_ok"].numpy() & np.array([len(s) > 0 or self.headerless
                                                  for s in strings], dtype=bool)
        return out["images"].numpy(), ok

    def too_short_for_their_size(self, strings: list[bytes]) -> np.ndarray:
        """bool `[B]`: see `claimed_sizes_and_short_strings` (False for fixed-size models)."""
        if self.fixed_size is not None or self.coder != "portable":
            return np.zeros(len(strings), bool)
        return claimed_sizes_and_short_strings(self._module, strings)[1]

    def _decompress_skipping(self, strings: list[bytes], skip: np.ndarray):
        """Decodes the strings not in `skip`; the skipped ones come back not-ok and all zero."""
        keep = [s for s, drop in zip(strings, skip) if not drop]
        if keep:
            images, ok = self.decompress_with_status(keep)
        else:
            images = np.zeros((0, 1, 1, self.channels), np.uint8)
            ok = np.zeros(0, bool)
        out = np.zeros((len(strings),) + images.shape[1:], np.uint8)
        out[~skip], all_ok = images, np.zeros(len(strings), bool)
        all_ok[~skip] = ok
        return out, all_ok
