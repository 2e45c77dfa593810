"""End to end: the images-quick pipeline (Ballé 2017 codec, tiny) on a real LocalDagRunner run."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines.configs import IMAGES_QUICK
from pipelines.runner import format_summary, run_local

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-train"


@pytest.mark.timeout(900)
def test_images_quick_pipeline_trains_gates_and_pushes(tmp_path):
    folder = tmp_path / "data" / "photos"
    folder.mkdir(parents=True)
    for path in sorted(PHOTOS.glob("*.png"))[:6]:
        with Image.open(path) as image:      # small crops keep the run to about a minute
            image.convert("RGB").crop((0, 0, 96, 80)).save(folder / path.name)
    config = dataclasses.replace(IMAGES_QUICK, data_root=str(tmp_path / "data"),
                                 image_pattern="photos/*.png",
                                 workspace=str(tmp_path / "ws"),
                                 serving_dir=str(tmp_path / "serving"))
    summary = run_local(config)
    [item] = summary["lambdas"].values()
    assert item["gate"]["blessed"] and item["pushed"], item
    metrics = item["gate"]["metrics"]
    assert metrics["bpp"] > 0 and metrics["num_images"] >= 1
    assert metrics["failed_sanity_check"] == 0
    assert "bpp, PSNR" in format_summary(summary)

    version_dir = Path(item["pushed_destination"])
    assert version_dir.parent.name == "bls2017_l0p01"
    served = tf.saved_model.load(str(version_dir))
    assert {"compress", "decompress", "svd_approximate", "svd_approximate_compression",
            "svd_approximate_energy"} <= set(served.signatures)
    image = np.random.default_rng(0).integers(0, 256, (1, 17, 33, 3)).astype(np.uint8)
    strings = served.signatures["compress"](images=tf.constant(image))["strings"]
    decoded = served.signatures["decompress"](strings=strings)["images"]
    assert decoded.shape == image.shape
