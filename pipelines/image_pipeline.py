"""The image-codec pipeline (Ballé 2017), TFX template conventions.

ingest (ImageFolderExampleGen over `data_root/image_pattern`, 2:1 train/eval by hash) →
StatisticsGen → ImportSchemaGen (schemas/images) → ExampleValidator → FailOnAnomalies → per λ:
Trainer.lmbda_X (components.image_trainer) → Resolver (latest blessed) →
RateDistortionGate.lmbda_X (actual bpp / PSNR) → ServingCheck.lmbda_X → Pusher.lmbda_X
(serving model `bls2017_lX`, TF Serving layout).
"""
from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.image_folder_example_gen import ImageFolderExampleGen
from components.image_gates import ImageRateDistortionGate, ImageServingCheck
from pipelines.assembly import assemble, atomic_pusher, latest_blessed, validation_front
from pipelines.configs import PROJECT_ROOT, PipelineConfig

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "images" / "schema.pbtxt"
TRAINER_RUN_FN = "components.image_trainer.run_fn"


def serving_model_name(tag: str) -> str:
    return f"bls2017_l{tag}"


def create_image_pipeline(config: PipelineConfig, beam_args: list[str] | None = None,
                          enable_cache: bool = True) -> tfx.dsl.Pipeline:
    example_gen = ImageFolderExampleGen(
        input_base=config.data_root,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=config.image_pattern)]))
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
                           "batch_size": config.batch_size, "filters": config.filters,
                           "patch_size": config.patch_size,
                           "steps_per_epoch": config.steps_per_epoch,
                           "learning_rate": config.learning_rate, "coder": config.coder},
        ).with_id(f"Trainer.lmbda_{tag}")
        trainer.add_upstream_node(data_ok)
        resolver = latest_blessed(trainer, tag)
        gate = ImageRateDistortionGate(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
            baseline_model=resolver.outputs["model"], lmbda=float(spec.lmbda),
            max_bpp=float(spec.max_bpp), min_psnr=float(spec.min_psnr),
            tolerance=float(config.tolerance), max_examples=config.gate_examples,
        ).with_id(f"RateDistortionGate.lmbda_{tag}")
        serving_check = ImageServingCheck(model=trainer.outputs["model"]).with_id(
            f"ServingCheck.lmbda_{tag}")
        pusher = atomic_pusher(trainer, gate, serving_check,
                               Path(config.serving_dir) / serving_model_name(tag), tag)
        components += [trainer, resolver, gate, serving_check, pusher]

    return assemble(config, components, beam_args, enable_cache)


def create_pipeline_for(config: PipelineConfig, beam_args: list[str] | None = None,
                        enable_cache: bool = True) -> tfx.dsl.Pipeline:
    """The pipeline of `config.kind`: "mnist" (the tutorial codec) or "images" (Ballé 2017)."""
    if config.kind == "images":
        return create_image_pipeline(config, beam_args, enable_cache)
    if config.kind == "mnist":
        from pipelines.mnist_pipeline import create_pipeline  # pylint: disable=import-outside-toplevel
        return create_pipeline(config, beam_args, enable_cache)
    raise ValueError(f"unknown pipeline kind {config.kind!r}: mnist or images")
