"""The one pipeline for every codec family (TFX template conventions: `create_pipeline`
returns the DSL pipeline; it wires components and holds no model code).

ingest (the family's source: MnistExampleGen, span-aware, or ImageFolderExampleGen) →
StatisticsGen → ImportSchemaGen (the family's schema) → ExampleValidator → FailOnAnomalies →
per λ: Trainer.lmbda_X (`components.trainer.run_fn`, `custom_config["family"]`) → Resolver
(latest blessed model of that λ) → RateDistortionGate.lmbda_X (the family's rate and
distortion) → ServingCheck.lmbda_X → Pusher.lmbda_X (atomic push to `<family>_l<λ>`, TF
Serving layout `<serving_dir>/<name>/<version>/saved_model.pb`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from codec.families import CodecFamily, GateSpec, get_family
from components.atomic_pusher import AtomicPushExecutor
from components.gates import FailOnAnomalies, RateDistortionGate, ServingCheck
from components.image_folder_example_gen import ImageFolderExampleGen
from components.mnist_example_gen import MnistExampleGen, mnist_input_config
from pipelines.configs import PipelineConfig

TRAINER_RUN_FN = "components.trainer.run_fn"


def pipeline_root(config: PipelineConfig) -> Path:
    return Path(config.workspace) / config.name


def metadata_path(config: PipelineConfig) -> Path:
    return pipeline_root(config) / "metadata.sqlite"


def validation_front(example_gen, schema_file: Path) -> tuple[list, object, object]:
    """StatisticsGen → ImportSchemaGen → ExampleValidator → FailOnAnomalies after `example_gen`.
    Returns (components incl. example_gen, schema component, the FailOnAnomalies node)."""
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=str(schema_file))
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    data_ok = FailOnAnomalies(anomalies=validator.outputs["anomalies"])
    return [example_gen, statistics, schema, validator, data_ok], schema, data_ok


def latest_blessed(trainer, tag: str):
    """Resolver: the newest model of this λ that its RateDistortionGate blessed (the baseline)."""
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                              producer_component_id=trainer.id, output_key="model"),
        model_blessing=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing,
            producer_component_id=f"RateDistortionGate.lmbda_{tag}", output_key="blessing"),
    ).with_id(f"LatestBlessedModel.lmbda_{tag}")


def atomic_pusher(trainer, gate, serving_check, destination: Path, tag: str):
    """Pusher gated on the model and infra blessings; atomic copy into TF Serving's layout."""
    return tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=gate.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(destination))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPushExecutor),
    ).with_id(f"Pusher.lmbda_{tag}")


def assemble(config: PipelineConfig, components: list, beam_args: list[str] | None,
             enable_cache: bool) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=config.name.replace("-", "_"),
        pipeline_root=str(pipeline_root(config)),
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(metadata_path(config))),
        beam_pipeline_args=beam_args or ["--direct_running_mode=in_memory",
                                         "--direct_num_workers=1"],
    )


def example_gen_for(config: PipelineConfig, family: CodecFamily):
    """The ExampleGen of the family's data source."""
    if family.source == "mnist_idx":
        return MnistExampleGen(input_base=config.data_root,
                               input_config=mnist_input_config(config.mnist_folder),
                               max_examples_per_split=config.max_examples_per_split)
    if family.source == "image_folder":
        return ImageFolderExampleGen(
            input_base=config.data_root,
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name="single_split",
                                            pattern=config.image_pattern)]))
    raise ValueError(f"family {family.name}: unknown data source {family.source!r}")


def training_options(config: PipelineConfig, family: CodecFamily, spec: GateSpec) -> dict:
    """Trainer custom_config: the family, λ, and every config field the family's training
    config also has (epochs, batch_size, learning_rate, coder; filters, patch_size, …)."""
    wanted = {f.name for f in dataclasses.fields(family.config_class)}
    options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if f.name in wanted and getattr(config, f.name) != ""}   # "": family default
    return {"family": family.name, "lmbda": spec.lmbda, **options}


def create_pipeline(config: PipelineConfig, beam_args: list[str] | None = None,
                    enable_cache: bool = True) -> tfx.dsl.Pipeline:
    family = get_family(config.family)
    example_gen = example_gen_for(config, family)
    components, schema, data_ok = validation_front(
        example_gen, Path(config.schema_file) if config.schema_file else family.schema)
    for spec in config.lambdas:
        tag = spec.tag
        trainer = tfx.components.Trainer(
            run_fn=TRAINER_RUN_FN,
            examples=example_gen.outputs["examples"],
            schema=schema.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=training_options(config, family, spec),
        ).with_id(f"Trainer.lmbda_{tag}")
        trainer.add_upstream_node(data_ok)  # anomalies stop the run before training
        resolver = latest_blessed(trainer, tag)
        gate = RateDistortionGate(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
            baseline_model=resolver.outputs["model"], family=family.name,
            lmbda=float(spec.lmbda), max_rate=float(spec.max_rate),
            distortion_bound=float(spec.distortion_bound), tolerance=float(config.tolerance),
            max_examples=config.gate_examples,
        ).with_id(f"RateDistortionGate.lmbda_{tag}")
        serving_check = ServingCheck(model=trainer.outputs["model"]).with_id(
            f"ServingCheck.lmbda_{tag}")
        pusher = atomic_pusher(trainer, gate, serving_check,
                               Path(config.serving_dir) / family.serving_name(spec), tag)
        components += [trainer, resolver, gate, serving_check, pusher]
    return assemble(config, components, beam_args, enable_cache)
