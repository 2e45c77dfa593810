"""Trainer `run_fn` for the MNIST codec (use as `Trainer(run_fn="components.mnist_trainer.run_fn")`).

Reads the `image` (PNG) feature of the Examples written by `MnistExampleGen`, trains one codec
with `codec.models.mnist_train` and exports the SavedModel (compress / decompress /
decompress_unchecked / svd_approximate signatures) to the Trainer's serving model dir, with a
golden record of in-process round trips in `assets.extra/` for the ServingCheck.
Hyper-parameters come from the Trainer's `custom_config` (keys of `MnistTrainConfig`, e.g.
`{"lmbda": 2000, "epochs": 15}`).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from codec.models.mnist_train import MnistTrainConfig, train_mnist
from components.golden import write_golden

GOLDEN_DIGITS = 64

_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string)}


def read_mnist_examples(file_patterns: list[str]) -> tf.data.Dataset:
    """GZIP TFRecords of MNIST tf.Examples → unbatched uint8 `[28, 28, 1]` images."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_patterns}")

    def decode(record):
        image = tf.io.decode_png(tf.io.parse_single_example(record, _FEATURES)["image"],
                                 channels=1)
        return tf.ensure_shape(image, (28, 28, 1))

    return (tf.data.TFRecordDataset(files, compression_type="GZIP")
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE))


def config_from(custom_config: dict | None) -> MnistTrainConfig:
    """MnistTrainConfig from a Trainer custom_config; unknown keys are an error, not ignored."""
    custom_config = dict(custom_config or {})
    known = {f.name for f in dataclasses.fields(MnistTrainConfig)}
    unknown = sorted(set(custom_config) - known)
    if unknown:
        raise ValueError(f"unknown MNIST trainer options {unknown}; known: {sorted(known)}")
    custom_config.setdefault("verbose", 2)  # one line per epoch in the component log
    return MnistTrainConfig(**custom_config)


def run_fn(fn_args) -> None:
    """TFX generic-trainer entry point: train, export, record golden round trips."""
    config = config_from(fn_args.custom_config)
    images = (read_mnist_examples(fn_args.train_files),
              read_mnist_examples(fn_args.eval_files))
    result = train_mnist(config, fn_args.model_run_dir, images=images,
                         saved_model_dir=fn_args.serving_model_dir)
    # Golden record for the ServingCheck, coded by the in-process codec (not the export).
    codec = result["codec"]
    digits = next(iter(images[1].batch(GOLDEN_DIGITS))).numpy()
    strings = codec.compress(digits)["strings"]
    decoded = codec.decompress(strings)["images"].numpy()
    write_golden(fn_args.serving_model_dir, digits, list(strings.numpy()), decoded)
