"""MNIST through tensorflow-datasets, online or offline.

Resolution order of `load_mnist` (first hit wins, nothing silent):
1. an already prepared TFDS `mnist` or `mnist_idx` dataset in the TFDS data dir;
2. the four IDX files (`*-images-idx3-ubyte[.gz]`, `*-labels-idx1-ubyte[.gz]`) in `mnist_dir`,
   `$RDPIPE_MNIST_DIR`, or `../shared/data/mnist` next to the project — prepared once into the
   `mnist_idx` TFDS dataset (same features and splits as TFDS `mnist`) via TFDS's *manual
   download* mechanism. The shared copies are re-gzipped, so their sha256 differ from what the
   stock `mnist` builder registers; building our own dataset from the same bytes avoids that;
3. the stock TFDS `mnist` builder (downloads; only where the network allows, and not when
   `$RDPIPE_MNIST_DOWNLOAD=0`).
If all fail, `MnistNotFoundError` names every place that was looked at.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MNIST_DIR = PROJECT_ROOT.parent / "shared" / "data" / "mnist"
# Training photos of the image codecs (never evaluated on): all four folders by default
# (51 PNG photos, 122 licensed high-resolution JPEGs, 450 ImageNet JPEGs; READMEs there).
DEFAULT_PHOTO_DIRS = tuple(PROJECT_ROOT.parent / "shared" / "data" / name
                           for name in ("photos-train", "photos-train-extra",
                                        "photos-train-large", "photos-train-imagenet"))
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MnistNotFoundError(FileNotFoundError):
    """No prepared dataset, no IDX files and no download: nothing to train on."""


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims.tolist()} but holds {body.size} bytes")
    return body.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(mnist_dir: str | os.PathLike | None = None) -> tuple[Path | None, list[Path]]:
    """Returns `(directory holding all four IDX files or None, directories looked at)`."""
    candidates = [Path(p) for p in (mnist_dir, os.environ.get("RDPIPE_MNIST_DIR")) if p]
    candidates.append(DEFAULT_MNIST_DIR)
    for directory in candidates:
        if all(_find_idx(directory, stem) for pair in IDX_FILES.values() for stem in pair):
            return directory, candidates
    return None, candidates


class MnistIdx(tfds.core.GeneratorBasedBuilder):
    """TFDS `mnist`, built from the original IDX files in the manual directory."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train/t10k images-idx3-ubyte and labels-idx1-ubyte (optionally .gz) in the "
        "manual dir, e.g. ../shared/data/mnist or $RDPIPE_MNIST_DIR.")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="MNIST handwritten digits read from the original IDX files.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
        )

    def _split_generators(self, dl_manager):
        manual = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(manual, *stems)
                for split, stems in IDX_FILES.items()}

    def _generate_examples(self, manual: Path, images_stem: str, labels_stem: str):
        images = read_idx(_find_idx(manual, images_stem))
        labels = read_idx(_find_idx(manual, labels_stem))
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{manual}: unexpected IDX shapes {images.shape}, {labels.shape}")
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image[..., None], "label": int(label)}


def tfds_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """TFDS data dir: argument, `$TFDS_DATA_DIR`, or TFDS's default (`~/tensorflow_datasets`)."""
    return str(data_dir or os.environ.get("TFDS_DATA_DIR")
               or Path.home() / "tensorflow_datasets")


def mnist_builder(data_dir=None, mnist_dir=None) -> tfds.core.DatasetBuilder:
    """Returns a prepared TFDS builder for MNIST (see module docstring for the order)."""
    data_dir = tfds_data_dir(data_dir)
    for name in ("mnist", "mnist_idx"):
        # Only ask TFDS about datasets that exist: tfds.builder() leaves empty version folders.
        if any(Path(data_dir, name).glob("*/dataset_info.json")):
            builder = tfds.builder(name, data_dir=data_dir)
            if builder.is_prepared():
                return builder
    idx_dir, looked_at = find_idx_dir(mnist_dir)
    if idx_dir is not None:
        builder = MnistIdx(data_dir=data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(idx_dir)))
        return builder
    where = (f"a prepared TFDS 'mnist'/'mnist_idx' dataset in {data_dir}, the four IDX files in "
             f"{[str(p) for p in looked_at]} (set --mnist-dir or $RDPIPE_MNIST_DIR)")
    if os.environ.get("RDPIPE_MNIST_DOWNLOAD", "1") == "0":
        raise MnistNotFoundError(f"MNIST not found. Looked for {where}; downloading is "
                                 "disabled ($RDPIPE_MNIST_DOWNLOAD=0)")
    try:
        builder = tfds.builder("mnist", data_dir=data_dir)
        builder.download_and_prepare()
        return builder
    except Exception as error:  # network errors come in many types; all mean "not here"
        raise MnistNotFoundError(
            f"MNIST not found. Looked for {where}, and tried the TFDS download "
            f"({type(error).__name__}: {error})") from error


def load_mnist(split: str, data_dir=None, mnist_dir=None, shuffle_files: bool = False
               ) -> tf.data.Dataset:
    """`tf.data.Dataset` of `(image uint8 [28, 28, 1] in [0, 255], label int64)` pairs.

    `split` uses TFDS split syntax, e.g. `"train"`, `"test[:256]"`.
    """
    builder = mnist_builder(data_dir, mnist_dir)
    return builder.as_dataset(split=split, as_supervised=True, shuffle_files=shuffle_files)


def mnist_arrays(split: str, data_dir=None, mnist_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Whole split as numpy arrays: images uint8 `[N, 28, 28, 1]`, labels int64 `[N]`."""
    images, labels = [], []
    for x, y in load_mnist(split, data_dir, mnist_dir).batch(4096):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)
