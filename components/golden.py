"""Golden round-trip records shipped inside a SavedModel (`assets.extra/rdpipe_golden.npz`).

At training time the Trainer codes a few eval digits with the *in-process* codec and stores the
digits, their strings and the decoded digits next to the export (TF Serving ignores
`assets.extra/`). The ServingCheck later loads the SavedModel the way a server does and must
reproduce both exactly: identical strings mean bit-identical quantized latents; identical
decoded digits mean the served decoder equals the local one.
"""
from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf

GOLDEN_PATH = os.path.join("assets.extra", "rdpipe_golden.npz")


def write_golden(saved_model_dir: str, images: np.ndarray, strings: list[bytes],
                 decoded: np.ndarray) -> str:
    path = os.path.join(saved_model_dir, GOLDEN_PATH)
    tf.io.gfile.makedirs(os.path.dirname(path))
    buffer = io.BytesIO()
    np.savez(buffer, images=images, decoded=decoded,
             string_bytes=np.frombuffer(b"".join(strings), np.uint8),
             string_lengths=np.array([len(s) for s in strings], np.int64))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def read_golden(saved_model_dir: str) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """(images, strings, decoded) written by `write_golden`; FileNotFoundError if absent."""
    path = os.path.join(saved_model_dir, GOLDEN_PATH)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no golden round-trip record in this export")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        ends = np.cumsum(data["string_lengths"])
        blob = data["string_bytes"].tobytes()
        strings = [blob[end - n:end] for end, n in zip(ends, data["string_lengths"])]
        return data["images"], strings, data["decoded"]
