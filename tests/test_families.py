"""Issue 14: every registered codec family goes through the same steps — train a tiny config
from its own data, export, round-trip through the SavedModel, measure, gate, serving check — and
`rdpipe train FAMILY` takes the family's options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.families import FAMILIES, GateSpec, get_family

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def _tiny_options(name: str, tmp_path: Path, tfds_dir: str) -> dict:
    if name == "mnist":
        return {"epochs": 1, "train_split": "train[:1024]", "validation_split": "test[:256]",
                "data_dir": tfds_dir, "verbose": 0}
    folder = tmp_path / "photos"
    folder.mkdir()
    for image_name in ("kodim01.png", "kodim02.png"):
        with Image.open(KODAK / image_name) as image:
            image.convert("RGB").crop((0, 0, 96, 80)).save(folder / image_name)
    patch = 64 if name in ("bmshj2018-hyperprior", "mbt2018-mean") else 32   # their z is /64
    return {"filters": 8, "patch_size": patch, "batch_size": 2, "steps_per_epoch": 3,
            "epochs": 1, "train_dir": str(folder), "verbose": 0}


def _eval_images(family, tmp_path: Path, test_digits):
    if family.input_spec[0] is not None:
        return test_digits[0][:32]
    return [np.asarray(Image.open(KODAK / "kodim03.png").convert("RGB"))[:48, :64]]


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.slow
def test_every_family_trains_exports_measures_and_gates(name, tmp_path, tfds_dir, test_digits):
    from codec.saved_codec import SavedCodec
    from components.gates import serving_check_problems
    family = get_family(name)
    config = family.make_config(_tiny_options(name, tmp_path, tfds_dir))
    family.train_from_config(config, tmp_path / "model")
    codec = SavedCodec(tmp_path / "model")
    assert codec.image_shape == family.input_spec
    images = _eval_images(family, tmp_path, test_digits)
    metrics = family.measure(codec, images, config.lmbda)
    assert {family.rate_key, family.distortion_key, "objective"} <= set(metrics)
    # ≥ 0, not > 0: a 1-epoch MNIST model may code every digit in 0 bytes (headerless coder,
    # every latent at the prior's mode) and that is a correct string.
    assert np.isfinite(metrics[family.rate_key]) and metrics[family.rate_key] >= 0
    lenient = GateSpec(config.lmbda, max_rate=1e9,
                       distortion_bound=0. if family.higher_is_better else 1e9)
    blessed, lines = family.gate_decision(metrics, lenient, baseline=None, tolerance=0.)
    assert blessed, lines
    strict = GateSpec(config.lmbda, max_rate=-1.,   # below any rate, 0 bits included
                      distortion_bound=1e9 if family.higher_is_better else 0.)
    blessed, lines = family.gate_decision(metrics, strict, baseline=metrics, tolerance=0.)
    assert not blessed and lines[0].startswith("FAIL rate") and lines[1].startswith("FAIL")
    assert lines[-1].startswith("PASS objective")     # equal to its baseline
    batch = np.asarray(images[:1]) if family.input_spec[0] is None else images
    strings, _ = codec.compress(batch)
    golden = (batch, strings, codec.decompress(strings))
    assert serving_check_problems(codec, golden) == []
    assert family.serving_name(lenient).startswith(family.serving_prefix + "_l")
    assert family.schema.is_file()


def test_unknown_family_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="registered: bls2017, bmshj2018-hyperprior, mbt2018-mean, mnist"):
        get_family("hyperprior")
    with pytest.raises(ValueError, match="unknown mnist training options"):
        get_family("mnist").make_config({"filters": 8})


def test_train_command_takes_the_family_options():
    from cli.train import parse_options
    from codec.models.bls2017_train import ImageTrainConfig
    from codec.models.mnist_train import MnistTrainConfig
    options = parse_options(MnistTrainConfig, ["--lambda", "500", "--latent-dims", "20",
                                               "--decoder-input", "quantized"], ["epochs=3"])
    assert options == {"lmbda": 500., "latent_dims": 20, "decoder_input": "quantized",
                       "epochs": 3}
    options = parse_options(ImageTrainConfig, ["--train-dir", "a", "b", "--jit", "--grey",
                                               "--patch-size=64"], [])
    assert options == {"train_dir": "a,b", "jit_compile": True, "channels": 1,
                       "patch_size": 64}


def test_rdpipe_train_mnist_with_the_old_spelling(tmp_path, tfds_dir, capsys):
    from cli.main import main
    assert main(["train", "mnist", "--lambda", "500", "--epochs", "1", "--latent-dims", "20",
                 "--train-split", "train[:512]", "--validation-split", "test[:128]",
                 "--data-dir", tfds_dir, "--output", str(tmp_path / "m"), "--quiet"]) == 0
    assert "training mnist λ=500" in capsys.readouterr().out
    assert (tmp_path / "m" / "saved_model" / "saved_model.pb").is_file()
    assert main(["train", "mnist", "--filters", "8"]) == 2
    assert "unknown option --filters" in capsys.readouterr().err
