"""The MNIST codec of TensorFlow Compression's tutorial as a codec family.

Rate: actual bits per digit (8 × string bytes); distortion: MAE on [0, 1] (gated ≤ bound);
objective bits + λ·MAE; fixed 28×28×1 input; data from the MNIST IDX files (`mnist_idx`)."""
from __future__ import annotations

from codec.data.examples import example_dataset, example_images
from codec.eval.evaluation import evaluate_codec
from codec.families.base import SCHEMAS, CodecFamily, GateSpec
from codec.models.mnist_train import MnistTrainConfig, train_mnist

SHAPE = (28, 28, 1)
GOLDEN_DIGITS = 64


def train_from_examples(config: MnistTrainConfig, train_files, eval_files, output_dir,
                        saved_model_dir):
    images = (example_dataset(train_files, 1, SHAPE), example_dataset(eval_files, 1, SHAPE))
    return train_mnist(config, output_dir, images=images,
                       saved_model_dir=saved_model_dir)["codec"]


def eval_images(file_patterns, limit=None):
    return example_images(file_patterns, 1, limit, SHAPE)


def measure(codec, images, lmbda: float) -> dict:
    result = evaluate_codec(codec, images)
    metrics = {k: result[k] for k in ("bits_per_digit", "information_bits", "mae", "psnr",
                                      "num_images", "failed_sanity_check")}
    metrics["objective"] = metrics["bits_per_digit"] + lmbda * metrics["mae"]
    return metrics


def golden(codec, eval_files) -> tuple:
    digits = eval_images(eval_files, GOLDEN_DIGITS)
    strings = codec.compress(digits)["strings"]
    return digits, list(strings.numpy()), codec.decompress(strings)["images"].numpy()


FAMILY = CodecFamily(
    name="mnist", description="TFC tutorial MNIST codec (noisy-logistic prior, bits + λ·MAE)",
    config_class=MnistTrainConfig, input_spec=SHAPE,
    rate_key="bits_per_digit", rate_unit="bits/digit", distortion_key="mae",
    higher_is_better=False, distortion_label="MAE", distortion_unit="",
    objective="bits + λ·MAE",
    metric_keys=("bits_per_digit", "mae", "psnr", "objective"),
    source="mnist_idx", schema=SCHEMAS / "mnist" / "schema.pbtxt", serving_prefix="mnist",
    train_from_examples=train_from_examples, train_from_config=train_mnist,
    eval_images=eval_images, measure=measure, golden=golden,
    # The tutorial's λ values; thresholds sit ~10 % above what 15 epochs reach in actual coded
    # bits (55.8 / 28.7 / 22.5 bits, MAE .035 / .062 / .076: benchmarks/results/mnist_rd.json).
    default_gates=(GateSpec(2000, max_rate=62., distortion_bound=0.040),
                   GateSpec(500, max_rate=32., distortion_bound=0.068),
                   GateSpec(300, max_rate=25., distortion_bound=0.085)))
