"""End to end: the mnist-quick pipeline on a real LocalDagRunner run, real MLMD, real pushes."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ml_metadata as mlmd
import pytest
from tfx import v1 as tfx

from conftest import add_mnist_span

from codec.families import GateSpec
from pipelines.configs import MNIST_QUICK
from pipelines.pipeline import metadata_path
from pipelines.runner import run_local





def _lineage_of_push(store: mlmd.MetadataStore, pushed) -> list[str]:
    """Artifact types walked back from a PushedModel through executions to the Examples."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    chain, frontier = [], [pushed.id]
    while frontier:
        events = store.get_events_by_artifact_ids(frontier)
        producers = [e.execution_id for e in events if e.type == mlmd.proto.Event.OUTPUT]
        inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
                  if e.type == mlmd.proto.Event.INPUT]
        frontier = sorted(set(inputs))
        chain += sorted({types[a.type_id] for a in store.get_artifacts_by_id(frontier)})
    return chain


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_quick_pipeline_pushes_gates_and_compares_against_blessed(tmp_path):
    data = tmp_path / "data"
    add_mnist_span(data, 1)
    config = dataclasses.replace(
        MNIST_QUICK, data_root=str(data), mnist_folder="span-{SPAN}",
        max_examples_per_split=1500, gate_examples=300, epochs=6,   # 72 steps: a real model
        lambdas=MNIST_QUICK.lambdas[:2],
        workspace=str(tmp_path / "ws"), serving_dir=str(tmp_path / "serving"))

    first = run_local(config)
    for spec in config.lambdas:
        item = first["lambdas"][spec.tag]
        assert item["gate"]["blessed"] and item["pushed"], item
        assert item["gate"]["baseline"] is None  # nothing blessed before
        version_dir = Path(item["pushed_destination"])
        assert version_dir.parent == tmp_path / "serving" / f"mnist_l{spec.tag}"
        assert version_dir.name.isdigit() and (version_dir / "saved_model.pb").is_file()

    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(metadata_path(config))))
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")]
    assert len(pushed) == 2
    lineage = _lineage_of_push(store, pushed[0])
    for artifact_type in ("Model", "ModelBlessing", "InfraBlessing", "Examples"):
        assert artifact_type in lineage, lineage

    # A new span: retrain, and the gate compares against the model blessed in the first run.
    add_mnist_span(data, 2)
    second = run_local(config)
    for spec in config.lambdas:
        assert second["lambdas"][spec.tag]["gate"]["blessed"]
        gate = second["lambdas"][spec.tag]["gate"]
        assert gate["baseline"] is not None
        assert gate["baseline_uri"] == first["lambdas"][spec.tag]["gate"]["model_uri"]
        assert gate["model_uri"] != gate["baseline_uri"]  # retrained on the new span
        assert any("blessed baseline" in check for check in gate["checks"])
    [examples] = [a for a in store.get_artifacts_by_type("Examples")
                  if a.custom_properties["span"].int_value == 2]
    assert examples

    # A degraded model (real Trainer output: the same run at a learning rate of 1e-7, so it
    # barely trains) under thresholds it passes: only the blessed baseline refuses it, and the
    # Pusher does not push. (Too-strict thresholds are covered by test_families.py.)
    spec = config.lambdas[0]
    degraded = dataclasses.replace(config, learning_rate=1e-7, lambdas=(
        GateSpec(spec.lmbda, max_rate=1e9, distortion_bound=1e9),))
    third = run_local(degraded)
    item = third["lambdas"][spec.tag]
    gate = item["gate"]
    assert not gate["blessed"] and not item["pushed"], gate
    assert gate["baseline_uri"] == second["lambdas"][spec.tag]["gate"]["model_uri"]
    assert gate["metrics"]["objective"] > gate["baseline"]["objective"] * (1 + config.tolerance)
    assert [line.split()[0] for line in gate["checks"]] == ["PASS"] * 3 + ["FAIL"], gate
    assert "blessed baseline" in gate["checks"][-1]
    versions = sorted(p for p in (tmp_path / "serving" / f"mnist_l{spec.tag}").iterdir()
                      if p.name.isdigit())
    assert len(versions) == 2  # the two blessed pushes only
    assert json.loads(json.dumps(third))  # summary is plain data
