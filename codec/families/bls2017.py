"""Ballé et al. 2017 "End-to-end optimized image compression" as a codec family.

Rate: actual bits per pixel (8 × string bytes / pixels, one image per call); distortion: RGB
PSNR in dB (gated ≥ bound); objective bpp + λ·MSE (0–255 pixels); any image size, 3 channels;
data from an image folder (`image_folder`)."""
from __future__ import annotations

import dataclasses

import numpy as np

from codec.data.datasets import DEFAULT_PHOTO_DIRS
from codec.data.examples import example_images
from codec.eval.image_eval import psnr
from codec.families.base import SCHEMAS, CodecFamily, GateSpec
from codec.models.bls2017_train import ImageTrainConfig, train_image_codec

GOLDEN_CROP = 64   # pixels: the golden image is the top-left crop of the first eval image


def train_from_examples(config: ImageTrainConfig, train_files, eval_files, output_dir,
                        saved_model_dir):
    images = example_images(train_files, config.channels)
    return train_image_codec(config, output_dir, images=images,
                             saved_model_dir=saved_model_dir)["codec"]


def train_from_config(config: ImageTrainConfig, output_dir) -> dict:
    """`rdpipe train bls2017`: the config's folders (default: photos-train and
    photos-train-extra)."""
    if not config.train_dir:
        config = dataclasses.replace(config, train_dir=",".join(map(str, DEFAULT_PHOTO_DIRS)))
    return train_image_codec(config, output_dir)


def eval_images(file_patterns, limit=None):
    return example_images(file_patterns, 3, limit)


def measure(codec, images, lmbda: float) -> dict:
    """Mean actual bpp, MSE and PSNR of a SavedCodec, one image per call."""
    bpps, mses, psnrs, failed = [], [], [], 0
    for image in images:
        strings, _ = codec.compress(image[None])
        decoded, ok = codec.decompress_with_status(strings)
        failed += int(not ok[0])
        bpps.append(8 * len(strings[0]) / (image.shape[0] * image.shape[1]))
        mses.append(float(np.mean((image.astype(np.float64) - decoded[0]) ** 2)))
        psnrs.append(psnr(image, decoded[0]))
    metrics = {"bpp": float(np.mean(bpps)), "mse": float(np.mean(mses)),
               "psnr": float(np.mean(psnrs)), "num_images": len(images),
               "failed_sanity_check": failed}
    metrics["objective"] = metrics["bpp"] + lmbda * metrics["mse"]
    return metrics


def golden(codec, eval_files) -> tuple:
    crop = eval_images(eval_files, 1)[0][None, :GOLDEN_CROP, :GOLDEN_CROP]
    strings = codec.compress(crop)["strings"]
    return crop, list(strings.numpy()), codec.decompress(strings)["images"].numpy()


FAMILY = CodecFamily(
    name="bls2017", description="Ballé et al. 2017: 3× conv + GDN, factorized prior, any size",
    config_class=ImageTrainConfig, input_spec=(None, None, 3),
    rate_key="bpp", rate_unit="bpp", distortion_key="psnr", higher_is_better=True,
    distortion_label="PSNR", distortion_unit="dB",
    objective="bpp + λ·MSE", metric_keys=("bpp", "mse", "psnr", "objective"),
    source="image_folder", schema=SCHEMAS / "images" / "schema.pbtxt",
    serving_prefix="bls2017", train_from_examples=train_from_examples,
    train_from_config=train_from_config, eval_images=eval_images, measure=measure,
    golden=golden,
    default_gates=(GateSpec(.0016, max_rate=.3, distortion_bound=24.),
                   GateSpec(.004, max_rate=.45, distortion_bound=25.5),
                   GateSpec(.01, max_rate=.75, distortion_bound=26.),
                   GateSpec(.03, max_rate=1.1, distortion_bound=27.)))
