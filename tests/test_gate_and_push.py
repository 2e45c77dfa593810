"""The gate and the push, adversarially: a model whose strings fail is refused, a failed
ServingCheck stops the real Pusher executor, and a push killed halfway leaves no version a
server could load. (A model worse than the blessed baseline is refused in a real pipeline run:
test_pipeline_e2e.py.)"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs as specs
from tfx.utils import proto_utils

from codec.families import GateSpec, get_family
from codec.saved_codec import SavedCodec
from components import atomic_pusher
from components.atomic_pusher import AtomicPushExecutor
from components.gates import ServingCheck
from components.golden import write_golden


class TruncatingCodec(SavedCodec):
    """A real export whose encoder output loses its last byte (a broken writer): every string
    then fails the decoder's end-of-stream check."""

    def compress(self, images):
        strings, bits = super().compress(images)
        return [s[:-1] for s in strings], bits


def test_the_gate_refuses_a_model_whose_strings_fail(tiny_model, test_digits):
    family = get_family("mnist")
    digits = test_digits[0][:64]
    good = family.measure(SavedCodec(tiny_model), digits, 500.)
    assert good["failed_sanity_check"] == 0
    lenient = GateSpec(500., max_rate=1e9, distortion_bound=1e9)
    assert family.gate_decision(good, lenient, baseline=None, tolerance=0.)[0]
    broken = family.measure(TruncatingCodec(tiny_model), digits, 500.)
    assert broken["failed_sanity_check"] > 0
    blessed, lines = family.gate_decision(broken, lenient, baseline=None, tolerance=0.)
    assert not blessed
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL {broken['failed_sanity_check']} strings fail the decoder's check (must be 0)"]


def _artifact(kind, uri: Path, **properties):
    artifact = kind()
    artifact.uri = str(uri)
    uri.mkdir(parents=True, exist_ok=True)
    for key, value in properties.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _stale_export(tiny_model: Path, tmp_path: Path, test_digits) -> Path:
    """A Model artifact whose golden record was written by a *different* model (the Trainer's
    local codec and its export disagree: e.g. an export of stale weights)."""
    model_uri = tmp_path / "Trainer" / "model"
    export = model_uri / "Format-Serving"
    shutil.copytree(tiny_model / "saved_model", export)
    digits = test_digits[0][:8]
    codec = SavedCodec(export)
    strings, _ = codec.compress(digits)
    # The golden digits decoded by another decoder: what a mismatched export looks like.
    write_golden(str(export), digits, strings, 255 - codec.decompress(strings))
    return model_uri


def _push(tmp_path: Path, model_uri: Path, model_blessed: int, infra_blessed: int):
    serving = tmp_path / "serving" / "mnist_l500"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving)))
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "Pusher" / "pushed_model")
    inputs = {
        specs.MODEL_KEY: [_artifact(standard_artifacts.Model, model_uri)],
        specs.MODEL_BLESSING_KEY: [_artifact(standard_artifacts.ModelBlessing,
                                             tmp_path / "Gate" / "blessing",
                                             blessed=model_blessed)],
        specs.INFRA_BLESSING_KEY: [_artifact(standard_artifacts.InfraBlessing,
                                             tmp_path / "ServingCheck" / "blessing",
                                             blessed=infra_blessed)],
    }
    AtomicPushExecutor().Do(inputs, {specs.PUSHED_MODEL_KEY: [pushed]},
                            {specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
                             specs.CUSTOM_CONFIG_KEY: json.dumps({})})
    versions = sorted(p.name for p in serving.iterdir() if p.name.isdigit()) \
        if serving.exists() else []
    return pushed.get_int_custom_property("pushed"), versions


def test_a_failed_serving_check_blocks_the_push(tiny_model, tmp_path, test_digits, capsys):
    model_uri = _stale_export(tiny_model, tmp_path, test_digits)
    model = _artifact(standard_artifacts.Model, model_uri)
    infra = _artifact(standard_artifacts.InfraBlessing, tmp_path / "ServingCheck" / "blessing")
    # The real component's executor, as the orchestrator runs it.
    ServingCheck.EXECUTOR_SPEC.executor_class().Do(
        {"model": [model]}, {"blessing": [infra]}, {})
    assert "FAILED: served reconstructions differ" in capsys.readouterr().out
    assert infra.get_int_custom_property("blessed") == 0
    # The rate-distortion gate blessed it; the failed serving check alone stops the push.
    assert _push(tmp_path, model_uri, model_blessed=1, infra_blessed=0) == (0, [])
    assert _push(tmp_path, model_uri, model_blessed=1, infra_blessed=1)[0] == 1


def test_a_push_killed_halfway_leaves_no_version_a_server_loads(tiny_model, tmp_path,
                                                                 monkeypatch):
    from serving.models import ModelRegistry
    model_uri = tmp_path / "Trainer" / "model"
    shutil.copytree(tiny_model / "saved_model", model_uri / "Format-Serving")
    real_copy = atomic_pusher.io_utils.copy_dir

    def copy_then_die(source, destination):
        """Copies saved_model.pb and part of the variables, then fails (disk full, kill)."""
        Path(destination, "variables").mkdir(parents=True)
        shutil.copy(Path(source, "saved_model.pb"), destination)
        data = next(Path(source, "variables").glob("variables.data-*"))
        Path(destination, "variables", data.name).write_bytes(data.read_bytes()[:100])
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_dir", copy_then_die)
    with pytest.raises(OSError, match="injected"):
        _push(tmp_path, model_uri, model_blessed=1, infra_blessed=1)
    base = tmp_path / "serving" / "mnist_l500"
    assert list(base.iterdir()) == []                 # no version, no staging folder left
    registry = ModelRegistry(tmp_path / "serving")
    registry.refresh()
    assert registry.available_versions("mnist_l500") == []
    # The next push (the fault gone) is complete and served.
    monkeypatch.setattr(atomic_pusher.io_utils, "copy_dir", real_copy)
    pushed, versions = _push(tmp_path, model_uri, model_blessed=1, infra_blessed=1)
    assert pushed == 1 and len(versions) == 1
    registry.refresh()
    [version] = registry.available_versions("mnist_l500")
    assert str(version) == versions[0]
    digits = np.zeros((1, 28, 28, 1), np.uint8)
    assert SavedCodec(base / versions[0]).compress(digits)[0]
