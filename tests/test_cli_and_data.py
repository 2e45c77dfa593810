"""The `rdpipe` CLI on a tiny model, MNIST loading from IDX files, and the project layout."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.data import datasets
from cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_compress_then_decompress_files(tiny_model, test_digits, tmp_path, capsys):
    digits = test_digits[0][:5, ..., 0]
    np.save(tmp_path / "digits.npy", digits)
    Image.fromarray(digits[0]).save(tmp_path / "one.png")
    assert main(["compress", str(tmp_path / "digits.npy"), str(tmp_path / "one.png"),
                 "--model", str(tiny_model), "--output-dir", str(tmp_path / "bin")]) == 0
    out = capsys.readouterr().out
    assert "6 images" in out and "information" in out
    bins = sorted((tmp_path / "bin").glob("*.bin"))
    assert len(bins) == 6
    assert (tmp_path / "bin" / "one.bin").read_bytes() == \
        (tmp_path / "bin" / "digits_00000.bin").read_bytes()
    assert main(["decompress", *map(str, bins), "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "png")]) == 0
    decoded = np.asarray(Image.open(tmp_path / "png" / "one.png"))
    assert decoded.shape == (28, 28) and decoded.dtype == np.uint8
    # Exactly what the in-process codec decodes from the same bytes, and near the model's
    # measured quality (a constant or blurring decoder fails: tests/quality_floors.py).
    from codec.saved_codec import SavedCodec
    from quality_floors import TINY_MNIST_MAE_FIRST5, assert_mnist_quality, constant_decoder
    codec = SavedCodec(tiny_model)
    reference = codec.decompress(codec.compress(digits[..., None])[0])[..., 0]
    np.testing.assert_array_equal(decoded, reference[0])
    decoded_all = np.stack([np.asarray(Image.open(tmp_path / "png" / f"digits_{i:05d}.png"))
                            for i in range(5)])
    np.testing.assert_array_equal(decoded_all, reference)
    assert_mnist_quality(digits, decoded_all, mae_floor=1.2 * TINY_MNIST_MAE_FIRST5)
    with pytest.raises(AssertionError, match="floor"):     # …which a constant decoder fails
        assert_mnist_quality(digits, constant_decoder(digits),
                             mae_floor=1.2 * TINY_MNIST_MAE_FIRST5)


def test_one_bad_input_fails_alone_and_the_others_are_coded(tiny_model, test_digits,
                                                            tmp_path, capsys):
    """A folder with a non-image and a corrupt .bin among good files: the good ones are coded
    and decoded exactly, the bad ones are named, and the exit status says something failed."""
    from codec.saved_codec import SavedCodec
    digits = test_digits[0][:2, ..., 0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(inputs / f"d{i}.png")
    (inputs / "notes.png").write_text("not an image")
    assert main(["compress", str(inputs), "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "bin")]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and "1 of 3 inputs not compressed" in err
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["d0.bin", "d1.bin"]
    good = (tmp_path / "bin" / "d1.bin").read_bytes()
    (tmp_path / "bin" / "d1.bin").write_bytes(good[:-3])              # truncated payload
    assert main(["decompress", str(tmp_path / "bin"), "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err
    assert "d1.bin" in err and "1 of 2 files not decoded" in err
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["d0.png"]
    codec = SavedCodec(tiny_model)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "png" / "d0.png")),
                                  codec.decompress(codec.compress(digits[:1, ..., None])[0])
                                  [0, ..., 0])


def test_cli_errors_are_clear(tiny_model, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["compress", str(tmp_path / "notes.txt"), "--model", str(tiny_model)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    np.save(tmp_path / "floats.npy", np.zeros((2, 28, 28), np.float32))
    assert main(["compress", str(tmp_path / "floats.npy"), "--model", str(tiny_model)]) == 2
    assert "uint8" in capsys.readouterr().err
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    assert main(["compress", str(tmp_path / "big.png"), "--model", str(tiny_model)]) == 2
    assert "28×28" in capsys.readouterr().err
    (tmp_path / "empty.bin").write_bytes(b"")
    assert main(["decompress", str(tmp_path / "empty.bin"), "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "o")]) == 2
    assert "not an rdpipe file" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "empty.bin"), "--model", str(tiny_model),
                 "--raw", "--output-dir", str(tmp_path / "o")]) == 2
    assert "sanity check" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "empty.bin"), "--model", str(tiny_model),
                 "--raw", "--no-check", "--output-dir", str(tmp_path / "o")]) == 0
    assert main(["compress", str(tmp_path / "big.png"), "--model", str(tmp_path)]) == 2
    assert "no SavedModel" in capsys.readouterr().err
    assert main(["eval", "--models", str(tiny_model), "--codec", "jpeg", "--images",
                 str(tmp_path), "--output", str(tmp_path / "rd.json")]) == 2
    assert "an MNIST model" in capsys.readouterr().err


def test_sample_and_figures(tiny_model, tmp_path, tfds_dir):
    assert main(["sample", "--model", str(tiny_model), "-n", "8",
                 "--output", str(tmp_path / "s.png")]) == 0
    assert main(["figure", "digits", "--models", str(tiny_model), "--data-dir", tfds_dir,
                 "--output", str(tmp_path / "d.png")]) == 0
    assert main(["figure", "rd", "--models", str(tiny_model), "--split", "test[:200]",
                 "--data-dir", tfds_dir, "--output", str(tmp_path / "rd.png")]) == 0
    for name in ("s.png", "d.png", "rd.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 300


def test_random_payloads_sample_distinct_digit_like_images(tiny_model, tmp_path, tfds_dir,
                                                           capsys):
    """The decoder as a generative model: 16 random payloads give 16 different images whose
    pixel statistics are those of digits (dark background, some ink), not one collapsed
    image and not noise."""
    from codec.saved_codec import SavedCodec
    codec = SavedCodec(tiny_model)
    strings = codec.random_strings(16, 8, np.random.default_rng(1))
    # Headerless strings (portable-range, MNIST's coder): all 9 bytes random, nothing to fix.
    assert codec.headerless and all(len(s) == 9 for s in strings)
    assert len({s[0] >> 5 for s in strings}) > 1
    images, _ = codec.decompress_with_status(strings)
    flat = images.reshape(16, -1).astype(np.float64) / 255.
    assert len({image.tobytes() for image in images}) == 16
    assert min(np.abs(a - b).mean() for i, a in enumerate(flat) for b in flat[i + 1:]) > .005
    digits, _ = datasets.mnist_arrays("test[:200]", data_dir=tfds_dir)
    real = digits.reshape(200, -1) / 255.
    lo, hi = np.percentile(real.mean(1), [1, 99])
    assert np.mean((flat.mean(1) > lo / 2) & (flat.mean(1) < hi * 1.5)) >= .75
    assert np.mean(np.median(flat, 1) < .1) >= .75                   # mostly background
    assert main(["sample", "--model", str(tiny_model), "-n", "16", "--seed", "1",
                 "--output", str(tmp_path / "s.png")]) == 0
    assert "16 samples (16 distinct" in capsys.readouterr().out


def _panels_with_ink(path: Path, columns: int) -> int:
    """How many of `columns` equal vertical strips of a PNG hold a drawing (non-white)."""
    picture = np.asarray(Image.open(path).convert("L"), np.float64)
    strips = np.array_split(picture, columns, axis=1)
    return sum(float((strip < 200).mean()) > .01 for strip in strips)


def test_figure_commands_for_the_prior_the_spectrum_fit_and_a_matrix_svd(tmp_path, capsys):
    assert main(["figure", "prior", "--output", str(tmp_path / "prior.png")]) == 0
    assert _panels_with_ink(tmp_path / "prior.png", 2) == 2
    assert main(["figure", "spectrum-fit", "--starts", "3", "--eigenvalues", "-1", "2", "3",
                 "--output", str(tmp_path / "fit.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("start ") == 3 and _panels_with_ink(tmp_path / "fit.png", 2) == 2
    assert main(["figure", "svd-matrix", "--ranks", "2", "6", "--output",
                 str(tmp_path / "m" / "matrix.png")]) == 0
    panels = tmp_path / "m" / "matrix_approximations.png"
    assert _panels_with_ink(panels, 3) == 3
    assert (tmp_path / "m" / "matrix_spectrum.png").stat().st_size > 10_000
    assert main(["figure", "digits", "--output", str(tmp_path / "x.png")]) == 2
    assert "needs --models" in capsys.readouterr().err


def test_fit_spectrum_keeps_its_history():
    from codec.layers.spectral import fit_spectrum
    fit = fit_spectrum([1., 2.], seed=1, tolerance=1e-6)
    assert fit.loss_history.shape == (fit.steps,) and fit.eigenvalue_history.shape == (
        fit.steps, 2)
    assert fit.loss_history[0] > 100 * fit.loss_history[-1]
    np.testing.assert_allclose(fit.eigenvalue_history[-1], [1., 2.], atol=.01)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_directory_becomes_a_tfds_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz",
                   rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    images, labels = datasets.mnist_arrays("test", data_dir=tmp_path / "tfds",
                                           mnist_dir=tmp_path)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    assert set(labels) <= set(range(10))
    assert datasets.mnist_builder(tmp_path / "tfds").info.splits["train"].num_examples == 12


def test_missing_mnist_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEFAULT_MNIST_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("RDPIPE_MNIST_DIR", raising=False)
    monkeypatch.setenv("RDPIPE_MNIST_DOWNLOAD", "0")
    with pytest.raises(datasets.MnistNotFoundError, match="IDX files in .*nowhere"):
        datasets.load_mnist("train", data_dir=tmp_path / "tfds")


def test_corrupt_idx_is_rejected(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc"))
    with pytest.raises(ValueError, match="holds 3 bytes"):
        datasets.read_idx(tmp_path / "x.gz")


def test_layout_and_codec_imports_no_tfx():
    for part in ("codec", "components", "pipelines", "serving", "schemas", "tests",
                 "benchmarks", "pyproject.toml", "Makefile", "README.md", ".ci/run"):
        assert (ROOT / part).exists(), part
    code = ("import sys, codec.models.mnist_train, codec.saved_codec, codec.eval.evaluation; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tfx', 'tensorflow_model_analysis', 'ml_metadata')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_figure_titles_name_lambda_for_pushed_and_trained_models(tmp_path):
    from cli.main import _model_title
    pushed = tmp_path / "serving" / "mnist_l500" / "3"
    pushed.mkdir(parents=True)
    assert _model_title(pushed) == "λ=500 (mnist_l500, version 3)"
    trained = tmp_path / "lmbda_2000"
    trained.mkdir()
    (trained / "training.json").write_text('{"config": {"lmbda": 2000}}')
    assert _model_title(trained) == "λ=2000 (lmbda_2000)"
    assert _model_title(tmp_path) == tmp_path.name
