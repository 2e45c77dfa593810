"""Pieces shared by the MNIST and image pipelines: validation front, per-λ blessing/push tail,
and the `tfx.dsl.Pipeline` itself (LocalDagRunner defaults, SQLite MLMD)."""
from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import AtomicPushExecutor
from components.gates import FailOnAnomalies
from pipelines.configs import PipelineConfig


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
