"""Running the pipeline locally (LocalDagRunner + Beam DirectRunner + SQLite MLMD) and
summarizing what a run decided, from ML Metadata."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ml_metadata as mlmd
from tfx import v1 as tfx

from codec.families import get_family
from pipelines.configs import PipelineConfig
from pipelines.pipeline import create_pipeline, metadata_path


def run_local(config: PipelineConfig, beam_args: list[str] | None = None) -> dict:
    """Runs the pipeline to completion; returns `summarize(config)` plus wall time."""
    Path(config.workspace).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, beam_args=beam_args))
    summary = summarize(config)
    summary["wall_seconds"] = time.perf_counter() - start
    return summary


def _latest_by_component(store: mlmd.MetadataStore, type_name: str, component_id: str):
    """Newest artifact of `type_name` written under `<pipeline_root>/<component_id>/`."""
    marker = f"{os.sep}{component_id}{os.sep}"
    matches = [a for a in store.get_artifacts_by_type(type_name) if marker in a.uri]
    return max(matches, key=lambda a: a.id) if matches else None


def summarize(config: PipelineConfig) -> dict:
    """Per λ: the newest gate report (numbers, checks, verdict) and the newest push."""
    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(metadata_path(config))))
    per_lambda = {}
    for spec in config.lambdas:
        gate = _latest_by_component(store, "ModelBlessing", f"RateDistortionGate.lmbda_{spec.tag}")
        pushed = _latest_by_component(store, "PushedModel", f"Pusher.lmbda_{spec.tag}")
        report = {}
        if gate is not None and os.path.exists(os.path.join(gate.uri, "evaluation.json")):
            report = json.loads(Path(gate.uri, "evaluation.json").read_text())
        per_lambda[spec.tag] = {
            "lambda": spec.lmbda,
            "gate": report,
            "pushed": bool(pushed and pushed.custom_properties["pushed"].int_value),
            "pushed_destination": (pushed.custom_properties["pushed_destination"].string_value
                                   if pushed and "pushed_destination" in pushed.custom_properties
                                   else None),
        }
    return {"pipeline": config.name, "family": config.family, "lambdas": per_lambda}


def format_summary(summary: dict) -> str:
    lines = [f"pipeline {summary['pipeline']}"
             + (f" finished in {summary['wall_seconds']:.0f} s" if "wall_seconds" in summary
                else "")]
    family = get_family(summary.get("family", "mnist"))
    for tag, item in summary["lambdas"].items():
        gate = item["gate"]
        metrics = gate.get("metrics") or {}
        verdict = "blessed" if gate.get("blessed") else "NOT blessed"
        numbers = family.format_metrics(metrics)
        lines.append(f"  λ={item['lambda']:g}: {numbers} → {verdict}; "
                     + (f"pushed to {item['pushed_destination']}" if item["pushed"]
                        else "not pushed"))
        lines += [f"      {check}" for check in gate.get("checks", [])]
    return "\n".join(lines)
