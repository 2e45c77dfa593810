"""Kubeflow compilation, scheduling, atomic pushes, anomaly stop and run caching."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import add_mnist_span
from components.atomic_pusher import atomic_copy_version, push_once
from pipelines.configs import MNIST, MNIST_QUICK, get_config
from pipelines.kubeflow import compile_kubeflow, kfp_cron
from pipelines.runner import run_local



def test_kubeflow_spec_names_every_component_and_the_recurring_run(tmp_path):
    paths = compile_kubeflow(MNIST, tmp_path, image="example.org/rdpipe:1", cron="0 3 * * *")
    spec = json.loads(paths[0].read_text())
    tasks = set(spec["pipelineSpec"]["root"]["dag"]["tasks"])
    expected = {"MnistExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                "FailOnAnomalies"}
    for tag in ("2000", "500", "300"):
        expected |= {f"Trainer.lmbda_{tag}", f"RateDistortionGate.lmbda_{tag}",
                     f"ServingCheck.lmbda_{tag}", f"Pusher.lmbda_{tag}"}
    assert expected <= tasks, expected - tasks
    assert any(t.startswith("LatestBlessedModel.lmbda_2000") for t in tasks)
    assert "example.org/rdpipe:1" in paths[0].read_text()
    recurring = json.loads(paths[1].read_text())
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert recurring["max_concurrency"] == 1


def test_rdpipe_pipeline_compile_kubeflow_command_writes_a_spec_that_parses(tmp_path, capsys):
    """What users call: the CLI verb, its --set override and its output files."""
    from cli.main import main
    assert main(["pipeline", "compile-kubeflow", "--config", "mnist", "--set", "epochs=3",
                 "--output-dir", str(tmp_path), "--image", "registry/rdpipe:7",
                 "--cron", "30 2 * * 1"]) == 0
    written = [Path(line.removeprefix("wrote ")) for line in
               capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert len(written) == 2 and all(p.is_file() for p in written)
    spec = json.loads(written[0].read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "Pusher.lmbda_300" in tasks and "registry/rdpipe:7" in written[0].read_text()
    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node
    trainer_configs = [json.loads(text) for text in strings(spec)
                       if text.startswith("{") and '"family"' in text]
    assert len(trainer_configs) == 3                       # one Trainer per λ
    assert {c["epochs"] for c in trainer_configs} == {3}   # the --set override reached them
    assert json.loads(written[1].read_text())["trigger"]["cron_schedule"]["cron"] == \
        "0 30 2 * * 1"
    assert main(["pipeline", "compile-kubeflow", "--config", "nope"]) == 2


def test_cron_and_config_errors_are_clear():
    with pytest.raises(ValueError, match="5 .* fields"):
        kfp_cron("every night")
    with pytest.raises(ValueError, match="unknown pipeline config"):
        get_config("nope")
    with pytest.raises(ValueError, match="unknown or non-scalar"):
        MNIST.with_overrides(lambdas="1")
    assert MNIST.with_overrides(epochs="3").epochs == 3


def test_atomic_push_never_exposes_partial_versions(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"x")
    first, v1 = atomic_copy_version(str(model), str(tmp_path / "serving" / "m"))
    second, v2 = atomic_copy_version(str(model), str(tmp_path / "serving" / "m"))
    assert int(v2) > int(v1)  # same second → bumped, versions always grow
    assert not list((tmp_path / "serving" / "m").glob(".tmp-*"))
    assert sorted(p.name for p in (tmp_path / "serving" / "m").iterdir()) == sorted([v1, v2])
    assert (Path(second) / "variables" / "variables.index").read_bytes() == b"x"


def test_push_once_is_idempotent_per_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"pb")
    path1, version1, copied1 = push_once(str(model), str(tmp_path / "m"))
    path2, version2, copied2 = push_once(str(model), str(tmp_path / "m"))
    assert copied1 and not copied2 and (path1, version1) == (path2, version2)


def _quick(tmp_path: Path, **changes):
    if not (tmp_path / "data" / "span-1").exists():
        add_mnist_span(tmp_path / "data", 1)
    return dataclasses.replace(
        MNIST_QUICK, data_root=str(tmp_path / "data"), mnist_folder="span-{SPAN}",
        max_examples_per_split=600, gate_examples=200, epochs=15,  # 75 steps: a real model
        lambdas=MNIST_QUICK.lambdas[:1],
        workspace=str(tmp_path / "ws"), serving_dir=str(tmp_path / "serving"), **changes)


def _quick_cli_args(tmp_path: Path) -> list[str]:
    """`rdpipe pipeline …` flags for what `_quick` builds: one λ, a small subset."""
    config = _quick(tmp_path)
    sets = {"data_root": config.data_root, "mnist_folder": config.mnist_folder,
            "max_examples_per_split": config.max_examples_per_split,
            "gate_examples": config.gate_examples, "epochs": config.epochs,
            "workspace": config.workspace, "serving_dir": config.serving_dir}
    return ["--config", "mnist-quick", "--lambda", f"{config.lambdas[0].lmbda:g}"] + [
        arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_scheduled_run_then_cached_rerun_from_the_cli(tmp_path, capsys):
    """`rdpipe pipeline schedule` (what users leave running) and `rdpipe pipeline run` (what
    `make run` calls), from the command line."""
    from cli.main import main
    config = _quick(tmp_path)
    flags = _quick_cli_args(tmp_path)
    # One real scheduled run (APScheduler, first run immediately), then stop.
    assert main(["pipeline", "schedule", *flags, "--cron", "0 3 * * *", "--max-runs", "1",
                 "--run-now"]) == 0
    out = capsys.readouterr().out
    assert "scheduled mnist-quick with cron '0 3 * * *'" in out
    assert "scheduler stopped after 1 run(s)" in out
    assert "mnist_l2000" in out and "blessed" in out and "NOT BLESSED" not in out
    pushes = list((tmp_path / "serving").glob("*/*/saved_model.pb"))
    assert [p.parts[-3] for p in pushes] == ["mnist_l2000"]
    # Unchanged inputs: every execution is reused from the cache, nothing new is pushed.
    import ml_metadata as mlmd
    from tfx import v1 as tfx
    from pipelines.pipeline import metadata_path
    store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(metadata_path(config))))
    models_before = len(store.get_artifacts_by_type("Model"))
    assert main(["pipeline", "run", *flags]) == 0
    out = capsys.readouterr().out
    assert "running pipeline mnist-quick: λ [2000], 15 epoch(s)" in out
    assert len(store.get_artifacts_by_type("Model")) == models_before
    types = {t.id: t.name for t in store.get_execution_types()}
    cached = {types[e.type_id].rsplit(".", 1)[-1] for e in store.get_executions()
              if e.last_known_state == e.CACHED}
    assert {"MnistExampleGen", "StatisticsGen", "Trainer", "ServingCheck"} <= cached, cached
    # The gate re-checks the same model against itself (now the blessed baseline); the
    # push is idempotent: no duplicate version.
    assert len(list((tmp_path / "serving").glob("*/*/saved_model.pb"))) == 1
    assert main(["pipeline", "run", "--config", "mnist-quick", "--lambda", "7"]) == 2
    assert "--lambda 7 is not an operating point of mnist-quick" in capsys.readouterr().err


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_anomalies_stop_the_run_before_training(tmp_path, monkeypatch):
    strict_schema = tmp_path / "schema.pbtxt"
    schema = (Path(__file__).resolve().parent.parent / "schemas/mnist/schema.pbtxt").read_text()
    strict_schema.write_text(schema.replace("min: 0 max: 9", "min: 0 max: 4"))
    config = dataclasses.replace(_quick(tmp_path), schema_file=str(strict_schema))
    with pytest.raises(Exception, match="data validation failed"):
        run_local(config)
    assert not list(Path(config.workspace).glob("*/Trainer.lmbda_*/model/*"))


def test_serving_check_compares_against_the_trainers_local_codec(tiny_model, test_digits):
    from codec.saved_codec import SavedCodec
    from components.gates import serving_check_problems
    codec = SavedCodec(tiny_model)
    images = test_digits[0][:16]
    strings, _ = codec.compress(images)
    decoded = codec.decompress(strings)
    assert serving_check_problems(codec, (images, strings, decoded)) == []
    tampered = [strings[0][:-1] + bytes([strings[0][-1] ^ 1])] + strings[1:]
    problems = serving_check_problems(codec, (images, tampered, decoded))
    assert any("not bit-exact" in p for p in problems)
    problems = serving_check_problems(codec, (images, strings, 255 - decoded))
    assert any("local decode" in p for p in problems)
