"""Shared fixtures: MNIST from ../shared/data via TFDS, and one tiny trained codec per session."""
from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests never download: a missing IDX copy must fail loudly, not fetch from the network.
os.environ.setdefault("RDPIPE_MNIST_DOWNLOAD", "0")
warnings.filterwarnings("ignore", category=FutureWarning)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _tfds_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or str(ROOT / ".cache" / "tensorflow_datasets")


def pytest_sessionstart(session):
    """Prepares the shared TFDS MNIST once, before pytest-xdist starts its workers (`make
    test` runs `-n 2`): two workers preparing the same dataset directory would race."""
    if not hasattr(session.config, "workerinput"):      # the controller, or no xdist
        from codec.data.datasets import mnist_builder
        mnist_builder(_tfds_dir())


@pytest.fixture(scope="session")
def tfds_dir() -> str:
    """TFDS data dir shared by the session (Makefile sets it inside the checkout)."""
    return _tfds_dir()


@pytest.fixture(scope="session")
def test_digits(tfds_dir) -> tuple[np.ndarray, np.ndarray]:
    """500 held-out digits (uint8 [500, 28, 28, 1]) and labels."""
    from codec.data.datasets import mnist_arrays
    return mnist_arrays("test[:500]", data_dir=tfds_dir)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tfds_dir) -> Path:
    """A codec trained for two epochs on 8,000 digits (~20 s): real strings, tiny config."""
    from codec.models.mnist_train import MnistTrainConfig, train_mnist
    out = tmp_path_factory.mktemp("tiny_mnist")
    config = MnistTrainConfig(lmbda=500., epochs=2, train_split="train[:8000]",
                              validation_split="test[500:700]", verbose=0, data_dir=tfds_dir)
    train_mnist(config, out)
    return out


@pytest.fixture(scope="session")
def tiny_model_rans(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported again with the framed one-lane rANS coder (`portable`, MNIST's
    coder before 2026-12): the same weights and tables, strings that carry a format byte."""
    from codec.models.mnist_train import reexport_mnist_codec
    out = tmp_path_factory.mktemp("tiny_mnist_rans")
    reexport_mnist_codec(tiny_model, out / "saved_model", coder="portable")
    return out


SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def add_mnist_span(data_root: Path, span: int) -> Path:
    """Creates `<data_root>/span-<span>/` holding (symlinks to) the four shared IDX files."""
    folder = data_root / f"span-{span}"
    folder.mkdir(parents=True)
    for path in SHARED_MNIST.glob("*-ubyte*"):
        (folder / path.name).symlink_to(path)
    return folder


@dataclasses.dataclass
class Served:
    """A running ModelServer over a copy of the tiny model as `mnist_l500` version 1."""
    base: Path
    registry: object      # serving.models.ModelRegistry
    server: object        # serving.server.ModelServer
    predict: object       # PredictionServiceStub
    models: object        # ModelServiceStub
    target: str           # gRPC host:port
    rest: str             # REST base URL


@pytest.fixture()
def served(tiny_model, tmp_path):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from serving.batching import BatchingParameters
    from serving.models import ModelRegistry
    from serving.server import ModelServer, ServerOptions
    base = tmp_path / "models"
    shutil.copytree(tiny_model / "saved_model", base / "mnist_l500" / "1")
    registry = ModelRegistry(base)
    registry.refresh()
    registry.start_polling(.2)
    # Batching on, so every request of these tests also goes through the batcher.
    server = ModelServer(registry, ServerOptions(
        port=0, rest_port=0, batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000))).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield Served(base, registry, server,
                 prediction_service_pb2_grpc.PredictionServiceStub(channel),
                 model_service_pb2_grpc.ModelServiceStub(channel), f"127.0.0.1:{server.port}",
                 f"http://127.0.0.1:{server.rest_port}")
    channel.close()
    server.stop()
