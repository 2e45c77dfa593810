"""Trainer `run_fn` for the Ballé 2017 image codec (`Trainer(run_fn=
"components.image_trainer.run_fn")`), fed by ImageFolderExampleGen's examples.

Hyper-parameters come from the Trainer's `custom_config` (keys of
`codec.models.bls2017_train.ImageTrainConfig`); the export goes to the serving model dir with a golden
round trip (a crop of the first eval image, coded in-process) for the ServingCheck.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from codec.models.bls2017_train import ImageTrainConfig, train_image_codec
from components.golden import write_golden

GOLDEN_CROP = 64   # pixels: the golden image is the top-left crop of the first eval image
_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string)}


def read_image_examples(file_patterns: list[str], channels: int = 3,
                        limit: int | None = None) -> list[np.ndarray]:
    """GZIP TFRecords of image tf.Examples (`image` = encoded PNG/JPEG bytes) → uint8
    `[H, W, channels]` arrays (grey inputs converted to RGB and vice versa)."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")
    images = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        encoded = tf.io.parse_single_example(record, _FEATURES)["image"]
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        images.append(image.numpy())
        if limit is not None and len(images) >= limit:
            break
    return images


def config_from(custom_config: dict | None) -> ImageTrainConfig:
    """ImageTrainConfig from a Trainer custom_config; unknown keys are an error."""
    custom_config = dict(custom_config or {})
    known = {f.name for f in dataclasses.fields(ImageTrainConfig)}
    unknown = sorted(set(custom_config) - known)
    if unknown:
        raise ValueError(f"unknown image trainer options {unknown}; known: {sorted(known)}")
    custom_config.setdefault("verbose", 2)
    return ImageTrainConfig(**custom_config)


def run_fn(fn_args) -> None:
    """TFX generic-trainer entry point: train on the train split, export, record a golden."""
    config = config_from(fn_args.custom_config)
    train = read_image_examples(fn_args.train_files, config.channels)
    result = train_image_codec(config, fn_args.model_run_dir, images=train,
                               saved_model_dir=fn_args.serving_model_dir)
    golden = read_image_examples(fn_args.eval_files, config.channels, limit=1)[0]
    golden = golden[None, :GOLDEN_CROP, :GOLDEN_CROP]
    codec = result["codec"]
    strings = codec.compress(golden)["strings"]
    decoded = codec.decompress(strings)["images"].numpy()
    write_golden(fn_args.serving_model_dir, golden, list(strings.numpy()), decoded)
