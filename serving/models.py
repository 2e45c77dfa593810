"""Model discovery and loading, mirroring TF Serving's file-system source.

Layout: `<base_path>/<model_name>/<version>/saved_model.pb` — every sub-directory of the base
path is a model, numeric sub-directories are its versions. The default policy serves the latest
version (`num_versions=1`); `num_versions=N` serves the N latest, `versions=[...]` pins specific
ones. `refresh()` loads what the policy wants and unloads the rest; a version that is incomplete
or fails to load is reported in `status()` with its error and never served; it is retried when
its directory changes (e.g. a non-atomic copy that completes later, or a repaired export).

Depends only on the SavedModel contract (`schemas/serving_contract.md`), not on `codec/`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

log = logging.getLogger("rdpipe.serving")

# Version states, as TF Serving's ModelVersionStatus.State reports them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


def _load_custom_ops() -> None:
    # Exports that use the `tfc` range coder need its ops registered before loading.
    try:
        import tensorflow_compression_ops  # noqa: F401  pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - stock-op exports load without it
        pass


def dir_fingerprint(path: Path) -> tuple:
    """(relative path, size, mtime) of every file below `path`: changes when files do."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:  # vanished while scanning
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


@dataclasses.dataclass
class ServedVersion:
    name: str
    version: int
    path: Path
    state: str = START
    error: str = ""
    fingerprint: tuple = ()  # directory contents when last loaded (see `dir_fingerprint`)
    signature_defs: dict = dataclasses.field(default_factory=dict)  # name → SignatureDef proto
    functions: dict = dataclasses.field(default_factory=dict)       # name → ConcreteFunction
    _module: object = None

    def load(self) -> None:
        self.state = LOADING
        self.fingerprint = dir_fingerprint(self.path)
        try:
            pb = self.path / "saved_model.pb"
            if not pb.is_file():
                raise FileNotFoundError(f"{pb} missing (incomplete version directory)")
            saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
            self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
            _load_custom_ops()
            self._module = tf.saved_model.load(str(self.path))
            self.functions = dict(self._module.signatures)
            self.state, self.error = AVAILABLE, ""
        except Exception as error:  # any load failure is reported, never served
            self.state, self.error = END, f"{type(error).__name__}: {error}"
            self.functions, self._module = {}, None

    @property
    def module(self):
        """The loaded SavedModel object (None unless AVAILABLE)."""
        return self._module

    def unload(self) -> None:
        self.state = UNLOADING
        self.functions, self._module = {}, None
        self.state = END


class ModelRegistry:
    """Thread-safe registry of served model versions under one base path."""

    def __init__(self, base_path: str | os.PathLike, num_versions: int = 1,
                 versions: dict[str, list[int]] | None = None,
                 on_event: Callable[[str, str, int], None] | None = None):
        self.base_path = Path(base_path)
        if not self.base_path.is_dir():
            raise FileNotFoundError(f"model base path {self.base_path} is not a directory")
        if num_versions < 1:
            raise ValueError("num_versions must be ≥ 1")
        self.num_versions = num_versions
        self.pinned = versions or {}
        self._listeners: list[Callable[[str, str, int], None]] = [on_event] if on_event else []
        self._lock = threading.RLock()
        self._models: dict[str, dict[int, ServedVersion]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ discovery
    def _wanted(self) -> dict[str, list[tuple[int, Path]]]:
        wanted = {}
        for model_dir in sorted(p for p in self.base_path.iterdir() if p.is_dir()):
            if model_dir.name.startswith("."):
                continue
            found = sorted(((int(p.name), p) for p in model_dir.iterdir()
                            if p.is_dir() and p.name.isdigit()), reverse=True)
            pinned = self.pinned.get(model_dir.name)
            if pinned:
                found = [(v, p) for v, p in found if v in pinned]
            else:
                found = found[:self.num_versions]
            wanted[model_dir.name] = found
        return wanted

    def refresh(self) -> None:
        """Loads newly wanted versions, then unloads versions no longer wanted."""
        wanted = self._wanted()
        for name, versions in wanted.items():
            for version, path in versions:
                with self._lock:
                    current = self._models.setdefault(name, {}).get(version)
                if current is not None and current.state == AVAILABLE:
                    continue
                if (current is not None and current.error
                        and current.fingerprint == dir_fingerprint(path)):
                    continue  # failed before and nothing changed: don't retry in a loop
                served = ServedVersion(name, version, path)
                served.load()  # outside the lock: requests keep being served meanwhile
                with self._lock:
                    self._models[name][version] = served
                self._emit("load" if served.state == AVAILABLE else "load_failed",
                           name, version, served.error)
        with self._lock:
            for name, versions in self._models.items():
                keep = self._versions_to_keep(versions, [v for v, _ in wanted.get(name, [])])
                for version, served in versions.items():
                    if version not in keep and served.state == AVAILABLE:
                        served.unload()
                        self._emit("unload", name, version)

    @staticmethod
    def _versions_to_keep(versions: dict[int, ServedVersion], wanted: list[int]) -> set[int]:
        """Availability-preserving (TF Serving's default): an old version is unloaded only once
        a wanted version replaced it, so a new version that fails to load leaves the previous
        one serving."""
        available = sorted((v for v, s in versions.items() if s.state == AVAILABLE),
                           reverse=True)
        keep = {v for v in wanted if v in available}
        for version in available:
            if len(keep) >= len(wanted):
                break
            keep.add(version)
        return keep

    def add_listener(self, listener: Callable[[str, str, int], None]) -> None:
        """`listener(event, model, version)` is called on load / load_failed / unload."""
        self._listeners.append(listener)

    def _emit(self, event: str, name: str, version: int, error: str = "") -> None:
        log.log(logging.WARNING if error else logging.INFO, "%s %s version %d", event, name,
                version, extra={"event": event, "model": name, "version": version,
                                **({"error": error} if error else {})})
        for listener in self._listeners:
            listener(event, name, version)

    def start_polling(self, interval_seconds: float = 1.0) -> None:
        """Refreshes in a background thread (like TF Serving's file-system poll)."""
        def poll():
            while not self._stop.wait(interval_seconds):
                try:
                    self.refresh()
                except Exception:  # a bad scan must not stop serving
                    log.exception("model refresh failed")
        self._thread = threading.Thread(target=poll, name="model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------- lookup
    def get(self, name: str, version: int | None = None) -> ServedVersion:
        """The requested (or latest available) version; KeyError with a message otherwise."""
        with self._lock:
            versions = self._models.get(name)
            if not versions:
                raise KeyError(f"Servable not found for request: Latest({name})"
                               if version is None else
                               f"Servable not found for request: Specific({name}, {version})")
            if version is None:
                available = [v for v in versions.values() if v.state == AVAILABLE]
                if not available:
                    raise KeyError(f"Servable not found for request: Latest({name})")
                return max(available, key=lambda v: v.version)
            served = versions.get(version)
            if served is None or served.state != AVAILABLE:
                raise KeyError(f"Servable not found for request: Specific({name}, {version})"
                               + (f" ({served.error})" if served is not None and served.error
                                  else ""))
            return served

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def available_versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(v for v, s in self._models.get(name, {}).items()
                          if s.state == AVAILABLE)

    def status(self, name: str, version: int | None = None) -> list[ServedVersion]:
        with self._lock:
            versions = self._models.get(name)
            if not versions:
                raise KeyError(f"Could not find any versions of model {name}")
            if version is not None:
                if version not in versions:
                    raise KeyError(f"Could not find version {version} of model {name}")
                return [versions[version]]
            return sorted(versions.values(), key=lambda v: -v.version)

    def wait_until_available(self, name: str, version: int, timeout: float = 60.) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(name, version)
                return
            except KeyError:
                time.sleep(.1)
        raise TimeoutError(f"{name} version {version} not available after {timeout} s")
