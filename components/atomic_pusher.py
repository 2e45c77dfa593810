"""A Pusher executor whose filesystem pushes are atomic.

The stock executor copies the SavedModel straight into `<base>/<version>/` (saved_model.pb last),
so a model server scanning the directory can see a half-written version. Here the copy goes to
a hidden temporary directory next to it and is renamed into place when complete — a single
rename on the same filesystem — so `<base>/<version>` either does not exist or is complete.
TF Serving's file-system source ignores non-numeric directory names such as the temporary one.
Blessing checks (ModelBlessing and InfraBlessing) are the stock executor's.

Pushes are idempotent: `<base>/.rdpipe-pushes.json` maps each pushed model (its artifact URI)
to its version, so re-running a pipeline whose gate re-blesses the same model (e.g. against
itself as the baseline) does not publish a duplicate version.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


def atomic_copy_version(model_path: str, base_directory: str) -> tuple[str, str]:
    """Copies `model_path` to `<base_directory>/<version>` atomically; returns (path, version).

    The version is the Unix time in seconds, bumped until unused (TF Serving needs integers that
    grow with every push).
    """
    fileio.makedirs(base_directory)
    version = int(time.time())
    while fileio.exists(os.path.join(base_directory, str(version))):
        version += 1
    staging = os.path.join(base_directory, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(model_path, staging)
    except BaseException:
        # A failed copy leaves nothing behind: no version folder, and no staging folder to
        # pile up (a kill -9 can still leave one; servers ignore non-numeric names).
        if fileio.exists(staging):
            fileio.rmtree(staging)
        raise
    final = os.path.join(base_directory, str(version))
    fileio.rename(staging, final)
    return final, str(version)


PUSH_REGISTRY = ".rdpipe-pushes.json"


def _read_registry(base_directory: str) -> dict:
    path = os.path.join(base_directory, PUSH_REGISTRY)
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def _write_registry(base_directory: str, registry: dict) -> None:
    path = os.path.join(base_directory, PUSH_REGISTRY)
    staging = f"{path}.{uuid.uuid4().hex[:8]}"
    with fileio.open(staging, "w") as f:
        f.write(json.dumps(registry, indent=2))
    fileio.rename(staging, path, overwrite=True)


def push_once(model_path: str, base_directory: str) -> tuple[str, str, bool]:
    """(serving path, version, newly_copied): copies unless this model is already served."""
    registry = _read_registry(base_directory)
    version = registry.get(model_path)
    if version and fileio.exists(os.path.join(base_directory, version, "saved_model.pb")):
        return os.path.join(base_directory, version), version, False
    serving_path, version = atomic_copy_version(model_path, base_directory)
    registry[model_path] = version
    _write_registry(base_directory, registry)
    return serving_path, version, True


class AtomicPushExecutor(pusher_executor.Executor):
    """Stock Pusher semantics, atomic filesystem destination."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("AtomicPushExecutor supports filesystem destinations only")
        model_path = self.GetModelPath(input_dict)
        serving_path, version, copied = push_once(model_path,
                                                  destination.filesystem.base_directory)
        io_utils.copy_dir(model_path, model_push.uri)  # archive copy, as the stock Pusher does
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
        logging.info("Model %s at %s.", "pushed atomically" if copied else "already served",
                     serving_path)
