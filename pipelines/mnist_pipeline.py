"""The MNIST codec pipeline (TFX template conventions: `create_pipeline` returns the DSL pipeline).

ingest (MnistExampleGen, span-aware) → StatisticsGen → ImportSchemaGen → ExampleValidator →
FailOnAnomalies → per λ: Trainer.lmbda_X → Resolver (latest blessed model of that λ) →
RateDistortionGate.lmbda_X → ServingCheck.lmbda_X → Pusher.lmbda_X (atomic push to serving
model `mnist_lX`, TF Serving layout `<serving_dir>/mnist_lX/<version>/saved_model.pb`).
"""
from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx

from components.gates import RateDistortionGate, ServingCheck
from components.mnist_example_gen import MnistExampleGen, mnist_input_config
from pipelines.assembly import (assemble, atomic_pusher, latest_blessed,  # noqa: F401
                                metadata_path, pipeline_root, validation_front)
from pipelines.configs import PROJECT_ROOT, PipelineConfig

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "mnist" / "schema.pbtxt"
TRAINER_RUN_FN = "components.mnist_trainer.run_fn"


def serving_model_name(tag: str) -> str:
    return f"mnist_l{tag}"


def create_pipeline(config: PipelineConfig, beam_args: list[str] | None = None,
                    enable_cache: bool = True) -> tfx.dsl.Pipeline:
    example_gen = MnistExampleGen(input_base=config.data_root,
                                  input_config=mnist_input_config(config.mnist_folder),
                                  max_examples_per_split=config.max_examples_per_split)
    components, schema, data_ok = validation_front(example_gen, SCHEMA_FILE)

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
        resolver = latest_blessed(trainer, tag)
        gate = RateDistortionGate(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
            baseline_model=resolver.outputs["model"], lmbda=float(spec.lmbda),
            max_rate=float(spec.max_rate), max_distortion=float(spec.max_distortion),
            tolerance=float(config.tolerance), max_examples=config.gate_examples,
        ).with_id(f"RateDistortionGate.lmbda_{tag}")
        serving_check = ServingCheck(model=trainer.outputs["model"]).with_id(
            f"ServingCheck.lmbda_{tag}")
        pusher = atomic_pusher(trainer, gate, serving_check,
                               Path(config.serving_dir) / serving_model_name(tag), tag)
        components += [trainer, resolver, gate, serving_check, pusher]

    return assemble(config, components, beam_args, enable_cache)
