"""File-based ExampleGens with extra execution parameters.

TFX's `FileBasedExampleGen` fixes its spec; rdpipe's ExampleGens need a few typed parameters
of their own (e.g. a per-split example cap, a tolerated fraction of unreadable files) while
keeping the stock file-based driver: span/version resolution of `{SPAN}` patterns, input
fingerprints for caching, train/eval partitioning by `output_config`.
"""
from __future__ import annotations

from typing import Any

import os

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter


def spec_with_params(name: str, params: dict[str, type]) -> type:
    """A `FileBasedExampleGenSpec` subclass with extra optional execution parameters."""
    base = standard_component_specs.FileBasedExampleGenSpec
    extra = {key: ExecutionParameter(type=kind, optional=True) for key, kind in params.items()}
    return type(name, (base,), {"PARAMETERS": {**base.PARAMETERS, **extra}})


class FileBasedExampleGenWithParams(FileBasedExampleGen):
    """Base for ExampleGens whose `SPEC_CLASS` comes from `spec_with_params`."""

    def __init__(self, input_base: str, input_config: example_gen_pb2.Input,
                 output_config: example_gen_pb2.Output | None = None, range_config=None,
                 **params: Any):
        spec = self.SPEC_CLASS(
            input_base=input_base, input_config=input_config,
            output_config=output_config or example_gen_pb2.Output(),
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples), **params)
        # Skip FileBasedExampleGen.__init__ (it would build the stock spec); keep its driver.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


def executor_for(ptransform: beam.PTransform, module: str, name: str) -> type:
    """The Beam ExampleGen executor class that reads with `ptransform`, defined as `name` in
    `module` (TFX finds an executor by its import path, so assign it to that name there)."""
    return type(name, (base_example_gen_executor.BaseExampleGenExecutor,), {
        "__module__": module,
        "GetInputSourceToExamplePTransform": lambda self: ptransform})


def example_source(function):
    """`function(pipeline, exec_properties, split_pattern) → PCollection of tf.Example` as the
    Beam PTransform TFX's ExampleGen executors expect (`executor_for`)."""
    typed = beam.typehints.with_output_types(tf.train.Example)(
        beam.typehints.with_input_types(beam.Pipeline)(function))
    return beam.ptransform_fn(typed)


def split_files(exec_properties: dict[str, Any], split_pattern: str) -> list[str]:
    """The files (not directories) `split_pattern` matches under the component's input_base."""
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    return sorted(p for p in tf.io.gfile.glob(os.path.join(input_base, split_pattern))
                  if not tf.io.gfile.isdir(p))
