"""End to end: the images-quick, hyperprior-quick and mean-scale-quick pipelines (Ballé 2017
codec, the scale and the mean-scale hyperprior, tiny) on a real LocalDagRunner run."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from codec.saved_codec import SavedCodec
from pipelines.configs import HYPERPRIOR_QUICK, IMAGES_QUICK, MEAN_SCALE_QUICK
from quality_floors import flat_colour, psnr_db
from pipelines.runner import format_summary, run_local

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-train"


def _most_textured_crop(path: Path, height: int = 80, width: int = 96) -> np.ndarray:
    """The 96×80 crop of a 4×4 grid that one flat colour fits worst: crops with detail, so a
    trained model and a constant decoder are far apart on every one."""
    image = np.asarray(Image.open(path).convert("RGB"))
    ys = np.linspace(0, image.shape[0] - height, 4).astype(int)
    xs = np.linspace(0, image.shape[1] - width, 4).astype(int)
    crops = [image[y:y + height, x:x + width] for y in ys for x in xs]
    return min(crops, key=lambda crop: psnr_db(crop, flat_colour(crop)))


@pytest.mark.timeout(900)
@pytest.mark.slow
@pytest.mark.parametrize("quick,serving", [(IMAGES_QUICK, "bls2017_l0p01"),
                                           (HYPERPRIOR_QUICK, "bmshj2018_l0p01"),
                                           (MEAN_SCALE_QUICK, "mbt2018_l0p01")],
                         ids=["bls2017", "hyperprior", "mean-scale"])
def test_images_quick_pipeline_trains_gates_and_pushes(tmp_path, quick, serving):
    folder = tmp_path / "data" / "photos"
    folder.mkdir(parents=True)
    for path in sorted(PHOTOS.glob("*.png"))[:6]:   # small crops keep the run to a minute
        Image.fromarray(_most_textured_crop(path)).save(folder / path.name)
    config = dataclasses.replace(quick, data_root=str(tmp_path / "data"),
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
    assert version_dir.parent.name == serving
    served = tf.saved_model.load(str(version_dir))
    assert {"compress", "decompress", "svd_approximate", "svd_approximate_compression",
            "svd_approximate_energy"} <= set(served.signatures)
    # The pushed signatures equal the library path (SavedCodec: what the CLI and the client
    # use) on the same bytes, and the model beats a decoder that ignores its input.
    crops = [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]
    codec = SavedCodec(version_dir)
    psnrs, flat = [], []
    for crop in crops:
        strings = served.signatures["compress"](images=tf.constant(crop[None]))["strings"]
        assert list(strings.numpy()) == codec.compress(crop[None])[0]
        decoded = served.signatures["decompress"](strings=strings)["images"].numpy()
        np.testing.assert_array_equal(decoded, codec.decompress(list(strings.numpy())))
        psnrs.append(psnr_db(crop, decoded[0]))
        flat.append(psnr_db(crop, flat_colour(crop)))
    floor = config.lambdas[0].distortion_bound
    assert np.mean(psnrs) >= floor > np.mean(flat), (psnrs, flat)
