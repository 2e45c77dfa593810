"""The MNIST codec pipeline (TFX template conventions: `create_pipeline` returns the DSL pipeline).

ingest (MnistExampleGen, span-aware) → StatisticsGen → ImportSchemaGen → ExampleValidator →
FailOnAnomalies → per λ: Trainer.lmbda_X → Resolver (latest blessed model of that λ) →
RateDistortionGate.lmbda_X → ServingCheck.lmbda_X → Pusher.lmbda_X (atomic push to serving
model `mnist_lX`, TF Serving layout `<serving_dir>/mnist_lX/<version>/saved_model.pb`).
"""
from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx

from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import AtomicPushExecutor
from components.gates import FailOnAnomalies, RateDistortionGate, ServingCheck
from components.mnist_example_gen import MnistExampleGen, mnist_input_config
from pipelines.configs import PROJECT_ROOT, PipelineConfig

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "mnist" / "schema.pbtxt"
TRAINER_RUN_FN = "components.mnist_trainer.run_fn"


def serving_model_name(tag: str) -> str:
    return f"mnist_l{tag}"


def pipeline_root(config: PipelineConfig) -> Path:
    return Path(config.workspace) / config.name


def metadata_path(config: PipelineConfig) -> Path:
    return pipeline_root(config) / "metadata.sqlite"


def create_pipeline(config: PipelineConfig, beam_args: list[str] | None = None,
                    enable_cache: bool = True) -> tfx.dsl.Pipeline:
    example_gen = MnistExampleGen(input_base=config.data_root,
                                  input_config=mnist_input_config(config.mnist_folder),
                                  max_examples_per_split=config.max_examples_per_split)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.ImportSchemaGen(schema_file=str(SCHEMA_FILE))
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    data_ok = FailOnAnomalies(anomalies=validator.outputs["anomalies"])
    components = [example_gen, statistics, schema, validator, data_ok]

    for spec in config.lambdas:
        tag = spec.tag
        trainer = tfx.components.Trainer(
            run_fn=TRAINER_RUN_FN,
            examples=example_gen.outputs["examples"],
            schema=schema.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config={"lmbda": spec.lmbda, "epochs": config.epochs,
                           "batch_size": config.batch_size,
                           "learning_rate": config.learning_rate, "coder": config.coder},
        ).with_id(f"Trainer.lmbda_{tag}")
        trainer.add_upstream_node(data_ok)  # anomalies stop the run before training
        resolver = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                                  producer_component_id=trainer.id, output_key="model"),
            model_blessing=tfx.dsl.Channel(
                type=tfx.types.standard_artifacts.ModelBlessing,
                producer_component_id=f"RateDistortionGate.lmbda_{tag}",
                output_key="blessing"),
        ).with_id(f"LatestBlessedModel.lmbda_{tag}")
        gate = RateDistortionGate(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
            baseline_model=resolver.outputs["model"], lmbda=float(spec.lmbda),
            max_rate=float(spec.max_rate), max_distortion=float(spec.max_distortion),
            tolerance=float(config.tolerance), max_examples=config.gate_examples,
        ).with_id(f"RateDistortionGate.lmbda_{tag}")
        serving_check = ServingCheck(model=trainer.outputs["model"]).with_id(
            f"ServingCheck.lmbda_{tag}")
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"], model_blessing=gate.outputs["blessing"],
            infra_blessing=serving_check.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(
                    base_directory=str(Path(config.serving_dir) / serving_model_name(tag)))),
            custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPushExecutor),
        ).with_id(f"Pusher.lmbda_{tag}")
        components += [trainer, resolver, gate, serving_check, pusher]

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
