"""Which versions a server loads (`--num-versions`, `--model-version`), and `rdpipe serve --zoo`
as its own process serving the shipped models."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.entropy import container
from serving.client import CodecClient
from test_serving_rest import _readline
from serving.models import ModelRegistry
from serving.server import ModelServer, ServerOptions

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


@pytest.fixture()
def three_versions(tiny_model, tmp_path) -> Path:
    base = tmp_path / "models"
    for version in (1, 2, 3):
        shutil.copytree(tiny_model / "saved_model", base / "mnist_l500" / str(version))
    return base


def _served_versions(registry: ModelRegistry) -> list[tuple[int, str]]:
    """(version, state) as a gRPC client sees them, newest first."""
    server = ModelServer(registry, ServerOptions(port=0, rest_port=0)).start()
    try:
        client = CodecClient(f"127.0.0.1:{server.port}", model="mnist_l500", retries=0)
        return [(version, state) for version, state, _ in client.status()]
    finally:
        server.stop()


def test_num_versions_serves_the_newest_n(three_versions):
    registry = ModelRegistry(three_versions, num_versions=2)
    registry.refresh()
    assert registry.available_versions("mnist_l500") == [2, 3]
    assert registry.get("mnist_l500").version == 3       # "latest" is the newest loaded
    assert _served_versions(registry) == [(3, "AVAILABLE"), (2, "AVAILABLE")]
    with pytest.raises(KeyError, match=r"Specific\(mnist_l500, 1\)"):
        registry.get("mnist_l500", 1)


def test_pinned_versions_serve_exactly_those(three_versions):
    from cli.serving import _pinned_versions
    pinned = _pinned_versions(["mnist_l500=1,2"])
    assert pinned == {"mnist_l500": [1, 2]}
    registry = ModelRegistry(three_versions, versions=pinned)
    registry.refresh()
    assert registry.available_versions("mnist_l500") == [1, 2]
    assert registry.get("mnist_l500").version == 2       # not 3: it is not pinned
    with pytest.raises(KeyError):
        registry.get("mnist_l500", 3)
    # A new version appears: a pinned server ignores it, a latest-1 server moves to it.
    shutil.copytree(three_versions / "mnist_l500" / "3", three_versions / "mnist_l500" / "4")
    registry.refresh()
    assert registry.available_versions("mnist_l500") == [1, 2]
    latest = ModelRegistry(three_versions)
    latest.refresh()
    assert latest.available_versions("mnist_l500") == [4]
    with pytest.raises(SystemExit, match="NAME=V"):
        _pinned_versions(["mnist_l500"])


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_serve_zoo_serves_every_shipped_model_as_the_library_codes(tmp_path):
    from codec import zoo
    from codec.saved_codec import SavedCodec
    names = [card["name"] for card in zoo.cards()]
    assert names, "the zoo is empty"
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--zoo", "--port", "0", "--rest-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(server.stdout, timeout=240)
        assert line.startswith("serving"), f"no start-up line within 240 s: {line!r}"
        port = int(line.split("gRPC 127.0.0.1:")[1].split(",")[0])
        crop = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[200:248, 300:364]
        for name in names:
            client = CodecClient(f"127.0.0.1:{port}", model=name, retries=0, timeout=60)
            assert client.status() == [(1, "AVAILABLE", "")]
        first = CodecClient(f"127.0.0.1:{port}", model=names[0], retries=0, timeout=60)
        strings, _ = first.compress(crop[None])
        local = SavedCodec(zoo.resolve_model(names[0]))
        assert strings == local.compress(crop[None])[0]
        np.testing.assert_array_equal(first.decompress(strings), local.decompress(strings))
        # --target-bpp through the server chooses what the local command chooses, same bytes.
        from cli.main import main
        Image.fromarray(crop).save(tmp_path / "crop.png")
        target = "0.9"
        assert main(["client", "compress", str(tmp_path / "crop.png"), "--server",
                     f"127.0.0.1:{port}", "--target-bpp", target, "--output-dir",
                     str(tmp_path / "served"), "--quiet"]) == 0
        assert main(["compress", str(tmp_path / "crop.png"), "--target-bpp", target,
                     "--output-dir", str(tmp_path / "local"), "--quiet"]) == 0
        served = container.unpack((tmp_path / "served" / "crop.bin").read_bytes())
        mine = container.unpack((tmp_path / "local" / "crop.bin").read_bytes())
        assert served.model == mine.model and served.segments == mine.segments
        assert main(["client", "compress", str(tmp_path / "crop.png"), "--server",
                     f"127.0.0.1:{port}", "--quality", "2", "--output-dir",
                     str(tmp_path / "q2"), "--quiet"]) == 0
        assert container.unpack((tmp_path / "q2" / "crop.bin").read_bytes()).model == names[1]
    finally:
        server.terminate()
        server.wait(30)
