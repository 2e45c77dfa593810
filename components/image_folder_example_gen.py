"""ImageFolderExampleGen: PNG/JPEG folders → tf.Examples, with unreadable files accounted for.

Split patterns are file globs under `input_base` (e.g. `photos-train/*`, or
`images/span-{SPAN}/*` so that each scheduled run picks the newest span). With one input split,
`output_config` partitions it into train/eval (TFX default 2:1 by hash of the example).

Each readable image becomes one example (schema: `schemas/images/schema.pbtxt`):
  image     bytes   the file's encoded bytes, unchanged (PNG or JPEG)
  format    bytes   b"png" | b"jpeg"
  height, width, channels   int64 (channels as decoded: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)
  filename  bytes   path relative to input_base

Files that are not PNG/JPEG or fail to decode are never dropped silently: each is logged with
its reason, counted in the Beam counters `rdpipe/images_read` and `rdpipe/images_rejected`, and
the run fails when their fraction of a split exceeds `max_bad_fraction` (default 0: any bad file
fails the run).
"""
from __future__ import annotations

import io
import logging
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.example_gen_base import (FileBasedExampleGenWithParams, example_source,
                                         executor_for, spec_with_params, split_files)

MAX_BAD_FRACTION_KEY = "max_bad_fraction"
_FORMATS = {"PNG": b"png", "JPEG": b"jpeg"}
_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "YCbCr": 3,
             "RGBA": 4, "CMYK": 4}


class TooManyBadImages(RuntimeError):
    """More unreadable files in a split than `max_bad_fraction` allows."""


def read_image_file(path: str, input_base: str) -> tuple[tf.train.Example | None, str]:
    """(example, "") for a readable PNG/JPEG; (None, reason) otherwise. Never raises."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    try:
        data = tf.io.gfile.GFile(path, "rb").read()
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _FORMATS:
                return None, f"unsupported format {image.format} (PNG/JPEG only)"
            image.load()  # full decode: truncated or corrupt files fail here
            mode = image.mode
            if mode == "P":  # palette: decodes to RGB or RGBA
                mode = "RGBA" if "transparency" in image.info else "RGB"
            channels = _CHANNELS.get(mode)
            if channels is None:
                return None, f"unsupported pixel mode {image.mode}"
            width, height = image.size
            fmt = _FORMATS[image.format]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return None, f"not a readable image ({type(error).__name__}: {error})"

    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    relative = os.path.relpath(path, input_base).encode()
    return tf.train.Example(features=tf.train.Features(feature={
        "image": bytes_feature(data), "format": bytes_feature(fmt),
        "height": int_feature(height), "width": int_feature(width),
        "channels": int_feature(channels), "filename": bytes_feature(relative),
    })), ""


class _ReadImage(beam.DoFn):
    def __init__(self, input_base: str):
        self._input_base = input_base
        self._read = beam.metrics.Metrics.counter("rdpipe", "images_read")
        self._rejected = beam.metrics.Metrics.counter("rdpipe", "images_rejected")

    def process(self, path: str):
        example, reason = read_image_file(path, self._input_base)
        if example is None:
            self._rejected.inc()
            logging.warning("ImageFolderExampleGen: rejected %s: %s", path, reason)
            yield beam.pvalue.TaggedOutput("rejected", (path, reason))
        else:
            self._read.inc()
            yield example


def _check_bad_fraction(total: int, rejected: list, max_fraction: float, split: str) -> None:
    if total == 0:
        raise TooManyBadImages(f"split pattern {split!r} matched no files")
    fraction = len(rejected) / total
    if fraction > max_fraction:
        listing = "; ".join(f"{p}: {r}" for p, r in sorted(rejected)[:10])
        raise TooManyBadImages(
            f"{len(rejected)} of {total} files ({fraction:.1%}) matched by {split!r} are not "
            f"readable PNG/JPEG images (allowed: {max_fraction:.1%}): {listing}")


@example_source
def _ImagesToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                     split_pattern: str) -> beam.pvalue.PCollection:
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    max_fraction = float(exec_properties.get(MAX_BAD_FRACTION_KEY) or 0.0)
    paths = split_files(exec_properties, split_pattern)
    results = (pipeline
               | "Paths" >> beam.Create(paths)
               | "Read" >> beam.ParDo(_ReadImage(input_base)).with_outputs("rejected",
                                                                           main="examples"))
    rejected = results.rejected | "AllRejected" >> beam.combiners.ToList()
    # Gate the examples on the bad-file fraction so that the split fails as a whole.
    return (results.examples
            | "GateOnBadFraction" >> beam.Map(
                lambda example, bad: (_check_bad_fraction(len(paths), bad, max_fraction,
                                                          split_pattern), example)[1],
                bad=beam.pvalue.AsSingleton(rejected)))


ImageFolderExampleGenExecutor = executor_for(_ImagesToExample, __name__,
                                             "ImageFolderExampleGenExecutor")


class ImageFolderExampleGen(FileBasedExampleGenWithParams):
    """FileBasedExampleGen over PNG/JPEG files (span-aware); see the module docstring."""

    SPEC_CLASS = spec_with_params("ImageFolderExampleGenSpec", {MAX_BAD_FRACTION_KEY: float})
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(ImageFolderExampleGenExecutor)

    def __init__(self, input_base: str, input_config: example_gen_pb2.Input,
                 output_config: example_gen_pb2.Output | None = None, range_config=None,
                 max_bad_fraction: float = 0.0):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        if output_config is None and len(input_config.splits) == 1:
            output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
                        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))
        super().__init__(input_base, input_config, output_config, range_config,
                         **{MAX_BAD_FRACTION_KEY: float(max_bad_fraction)})
