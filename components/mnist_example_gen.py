"""MnistExampleGen: MNIST from IDX files, through the TFDS `mnist_idx` dataset, as tf.Examples.

A `FileBasedExampleGen` whose split patterns are globs for the IDX image files, so TFX's
file-based driver does span resolution (`{SPAN}` in the pattern, newest span by default) and
fingerprinting (unchanged files → cached execution) exactly as for its stock ExampleGens:

    MnistExampleGen(input_base="../shared/data", input_config=example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="mnist/train-images-idx3-ubyte*"),
        example_gen_pb2.Input.Split(name="eval", pattern="mnist/t10k-images-idx3-ubyte*")]))

The matched file's directory is the TFDS manual dir; `train-*` files give TFDS split "train",
`t10k-*` give "test". Examples: `image` = PNG bytes of the 28×28×1 digit (as TFDS stores it),
`label` = int64 0–9 (schema: `schemas/mnist/schema.pbtxt`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from codec.data import datasets
from components.example_gen_base import (FileBasedExampleGenWithParams, example_source,
                                         executor_for, spec_with_params, split_files)

MAX_EXAMPLES_KEY = "max_examples_per_split"
_TFDS_SPLITS = {"train": "train", "t10k": "test"}


def _tfds_split_for(path: Path) -> str:
    prefix = path.name.split("-", 1)[0]
    if prefix not in _TFDS_SPLITS:
        raise ValueError(f"{path}: MNIST split patterns must match train-* or t10k-* IDX files")
    return _TFDS_SPLITS[prefix]


def _span_cache_dir(idx_dir: Path) -> str:
    """A TFDS data dir private to these exact IDX files (spans must not share a cache)."""
    digest = hashlib.sha256()
    for path in sorted(idx_dir.glob("*idx*-ubyte*")):
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    root = Path(datasets.tfds_data_dir()) / "rdpipe_spans" / digest.hexdigest()[:16]
    return str(root)


def _examples_from_idx(source: tuple[str, str, int]):
    """Yields tf.Examples for one TFDS split of the IDX files in `idx_dir`."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    idx_dir, split, limit = source
    builder = datasets.mnist_builder(_span_cache_dir(Path(idx_dir)), mnist_dir=idx_dir)
    split_spec = f"{split}[:{limit}]" if limit else split
    dataset = builder.as_dataset(split=split_spec,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    for record in dataset.as_numpy_iterator():
        yield tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record["image"]])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[record["label"]])),
        }))


@example_source
def _MnistToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                    split_pattern: str) -> beam.pvalue.PCollection:
    """Reads the IDX images file matched by `split_pattern` (and its labels) as tf.Examples."""
    matches = split_files(exec_properties, split_pattern)
    images = [Path(m) for m in matches if "images" in Path(m).name]
    if len(images) != 1:
        raise ValueError(f"pattern {split_pattern!r} under the input base must match exactly "
                         f"one IDX images file, matched {matches}")
    limit = int(exec_properties.get(MAX_EXAMPLES_KEY) or 0)
    source = (str(images[0].parent), _tfds_split_for(images[0]), limit)
    return (pipeline
            | "Source" >> beam.Create([source])
            | "ReadTfds" >> beam.FlatMap(_examples_from_idx)
            | "Reshuffle" >> beam.Reshuffle())


MnistExampleGenExecutor = executor_for(_MnistToExample, __name__, "MnistExampleGenExecutor")


class MnistExampleGen(FileBasedExampleGenWithParams):
    """FileBasedExampleGen over MNIST IDX files (span-aware); see the module docstring."""

    SPEC_CLASS = spec_with_params("MnistExampleGenSpec", {MAX_EXAMPLES_KEY: int})
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(MnistExampleGenExecutor)

    def __init__(self, input_base: str, input_config: example_gen_pb2.Input,
                 range_config=None, max_examples_per_split: int = 0):
        """max_examples_per_split: keep only the first N examples of each split (0 = all)."""
        super().__init__(input_base, input_config, example_gen_pb2.Output(), range_config,
                         **{MAX_EXAMPLES_KEY: int(max_examples_per_split)})


def mnist_input_config(folder: str = "mnist") -> example_gen_pb2.Input:
    """train/eval splits for an IDX folder under input_base (may contain `{SPAN}`)."""
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern=f"{folder}/train-images-idx3-ubyte*"),
        example_gen_pb2.Input.Split(name="eval", pattern=f"{folder}/t10k-images-idx3-ubyte*"),
    ])
