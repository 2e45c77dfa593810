"""tf.Examples written by the pipeline's ExampleGens (GZIP TFRecords, feature `image` = encoded
PNG/JPEG bytes) → uint8 images, for the Trainer and the gate of every family."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string)}


def example_files(file_patterns: list[str]) -> list[str]:
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")
    return files


def example_dataset(file_patterns: list[str], channels: int,
                    shape: tuple | None = None) -> tf.data.Dataset:
    """Unbatched uint8 `[H, W, channels]` images, decoded in parallel; `shape` (e.g.
    `(28, 28, 1)`) is asserted for fixed-size families."""
    def decode(record):
        encoded = tf.io.parse_single_example(record, _FEATURES)["image"]
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, shape) if shape else image

    return (tf.data.TFRecordDataset(example_files(file_patterns), compression_type="GZIP")
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE))


def example_images(file_patterns: list[str], channels: int, limit: int | None = None,
                   shape: tuple | None = None) -> list[np.ndarray] | np.ndarray:
    """The first `limit` images as numpy: a `[N, *shape]` array when `shape` is fixed, else a
    list of `[H, W, channels]` arrays (sizes differ)."""
    dataset = example_dataset(file_patterns, channels, shape)
    if limit is not None:
        dataset = dataset.take(limit)
    if shape:
        return np.concatenate([batch.numpy() for batch in dataset.batch(1024)])
    return [image.numpy() for image in dataset]
