"""Compiling the pipeline for Kubeflow Pipelines (V2 pipeline spec) and its recurring run."""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.configs import PipelineConfig
from pipelines.pipeline import create_pipeline


def kfp_cron(cron: str) -> str:
    """5-field crontab ("0 3 * * *") → KFP's 6-field form with seconds ("0 0 3 * * *")."""
    fields = cron.split()
    if len(fields) == 5:
        return " ".join(["0"] + fields)
    if len(fields) == 6:
        return cron
    raise ValueError(f"cron must have 5 (or 6, with seconds) fields, got {cron!r}")


def compile_kubeflow(config: PipelineConfig, output_dir: str | Path, image: str,
                     cron: str | None = None) -> list[Path]:
    """Writes `<name>.json` (KFP V2 pipeline spec) and, with `cron`, `<name>.recurring_run.json`
    (the fields of a KFP recurring-run request: cron trigger, max concurrency, no catch-up)."""
    # Imported here: needs the `kubeflow` extra (kfp-pipeline-spec).
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_runner

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    spec_name = f"{config.name}.json"
    runner = kfp_runner.KubeflowV2DagRunner(
        config=kfp_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(output_dir), output_filename=spec_name)
    runner.run(create_pipeline(config, beam_args=[]), write_out=True)
    written = [output_dir / spec_name]
    if cron:
        recurring = {
            "display_name": f"{config.name} scheduled retraining",
            "pipeline_spec_file": spec_name,
            "trigger": {"cron_schedule": {"cron": kfp_cron(cron)}},
            "max_concurrency": 1,
            "no_catchup": True,
            "mode": "ENABLE",
        }
        path = output_dir / f"{config.name}.recurring_run.json"
        path.write_text(json.dumps(recurring, indent=2) + "\n")
        written.append(path)
    return written
