"""Validation gates for the image-codec pipeline (TFX Python-function components).

- `ImageRateDistortionGate`: blesses a model iff, on the eval split, the mean *actual* bits per
  pixel (string bytes × 8 / pixels, one image per call) ≤ `max_bpp`, the mean RGB PSNR
  (0–255) ≥ `min_psnr`, and — when a blessed baseline exists — bpp + λ·MSE is not worse than the
  baseline's by more than `tolerance`. Writes the standard `ModelBlessing` the Pusher honours.
- `ImageServingCheck`: loads the export as a server would and replays the Trainer's golden round
  trip (identical strings, identical reconstruction, deterministic compress).
"""
# No `from __future__ import annotations`: TFX reads these signatures at import time.

import os

import numpy as np
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components.gates import write_blessing

InputArtifact = tfx.dsl.components.InputArtifact
OutputArtifact = tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter


def _signatures(model):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri))
    return loaded.signatures["compress"], loaded.signatures["decompress_unchecked"]


def measure_image_codec(model, images: list) -> dict:
    """Mean actual bpp, MSE and PSNR (0–255) of an exported image codec, one image per call."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    compress, decompress = _signatures(model)
    bpps, mses, failed = [], [], 0
    for image in images:
        strings = compress(images=tf.constant(image[None]))["strings"]
        out = decompress(strings=strings)
        failed += int(not out["sanity_ok"].numpy()[0])
        decoded = out["images"].numpy()[0].astype(np.float64)
        bpps.append(8 * len(strings.numpy()[0]) / (image.shape[0] * image.shape[1]))
        mses.append(float(np.mean((image.astype(np.float64) - decoded) ** 2)))
    mse = float(np.mean(mses))
    return {"bpp": float(np.mean(bpps)), "mse": mse,
            "psnr": float(np.mean([10 * np.log10(255 ** 2 / max(m, 1e-10)) for m in mses])),
            "num_images": len(images), "failed_sanity_check": failed}


def image_gate_decision(metrics: dict, *, lmbda: float, max_bpp: float, min_psnr: float,
                        baseline, tolerance: float):
    """(blessed, one line per check). Pure function."""
    objective = metrics["bpp"] + lmbda * metrics["mse"]
    checks = [
        (metrics["bpp"] <= max_bpp, f"rate {metrics['bpp']:.3f} bpp ≤ max_bpp {max_bpp:g}"),
        (metrics["psnr"] >= min_psnr, f"PSNR {metrics['psnr']:.2f} dB ≥ min_psnr {min_psnr:g}"),
        (metrics["failed_sanity_check"] == 0,
         f"{metrics['failed_sanity_check']} strings fail the decoder's check (must be 0)"),
    ]
    if baseline is not None:
        limit = (baseline["bpp"] + lmbda * baseline["mse"]) * (1 + tolerance)
        checks.append((objective <= limit, f"objective bpp+λ·MSE {objective:.3f} ≤ blessed "
                                           f"baseline × (1 + {tolerance:g}) = {limit:.3f}"))
    return all(ok for ok, _ in checks), [("PASS " if ok else "FAIL ") + t for ok, t in checks]


@tfx.dsl.components.component
def ImageRateDistortionGate(
        model: InputArtifact[standard_artifacts.Model],
        examples: InputArtifact[standard_artifacts.Examples],
        blessing: OutputArtifact[standard_artifacts.ModelBlessing],
        baseline_model: InputArtifact[standard_artifacts.Model] = None,
        lmbda: Parameter[float] = .01,
        max_bpp: Parameter[float] = 24.,
        min_psnr: Parameter[float] = 0.,
        tolerance: Parameter[float] = 0.0,
        max_examples: Parameter[int] = 8) -> None:
    """Blesses iff actual bpp ≤ max_bpp, PSNR ≥ min_psnr and not worse than the baseline."""
    from components.image_trainer import read_image_examples  # pylint: disable=import-outside-toplevel
    images = read_image_examples([os.path.join(examples.uri, "Split-eval", "*")],
                                 limit=max_examples)
    metrics = measure_image_codec(model, images)
    baseline = None
    if baseline_model is not None:
        baseline = metrics if baseline_model.id == model.id else \
            measure_image_codec(baseline_model, images)
    blessed, lines = image_gate_decision(metrics, lmbda=lmbda, max_bpp=max_bpp,
                                         min_psnr=min_psnr, baseline=baseline,
                                         tolerance=tolerance)
    report = {"lambda": lmbda, "blessed": blessed, "checks": lines, "metrics": metrics,
              "model_uri": model.uri, "baseline": baseline,
              "baseline_uri": getattr(baseline_model, "uri", None)}
    write_blessing(blessing, model, report, ("bpp", "mse", "psnr"))
    verdict = "BLESSED" if blessed else "NOT BLESSED (push skipped)"
    print(f"image rate-distortion gate λ={lmbda:g}: {verdict}\n  " + "\n  ".join(lines))


@tfx.dsl.components.component
def ImageServingCheck(model: InputArtifact[standard_artifacts.Model],
                      blessing: OutputArtifact[standard_artifacts.InfraBlessing]) -> None:
    """Replays the Trainer's golden image round trip against a server-style load."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from components.golden import read_golden  # pylint: disable=import-outside-toplevel
    images, local_strings, local_decoded = read_golden(path_utils.serving_model_path(model.uri))
    compress, decompress = _signatures(model)
    strings = compress(images=tf.constant(images))["strings"]
    out = decompress(strings=strings)
    problems = []
    if list(strings.numpy()) != list(local_strings):
        problems.append("strings differ from the Trainer's local encoding")
    if not np.array_equal(out["images"].numpy(), local_decoded):
        problems.append("served reconstruction differs from the Trainer's local decode")
    if not out["sanity_ok"].numpy().all():
        problems.append("golden strings fail the decoder's check")
    if list(compress(images=tf.constant(images))["strings"].numpy()) != list(strings.numpy()):
        problems.append("compress is not deterministic")
    blessing.set_int_custom_property("blessed", int(not problems))
    print("image serving check: " + ("OK (identical strings and reconstruction)"
                                     if not problems else "FAILED: " + "; ".join(problems)))
