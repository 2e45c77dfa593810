"""Validation gates as TFX Python-function components.

- `FailOnAnomalies`: stops the run (before training) when ExampleValidator found anomalies,
  printing them; trainers are made downstream of it.
- `RateDistortionGate`: per-λ model validation on *actual coded bits*, for any codec family
  (`family` parameter; the family says what rate and distortion are). TFMA computes metrics
  from a model's numeric predictions per example; the rate here is the byte length of strings
  produced by the `compress` signature and the distortion needs a full decode, which TFMA's
  metric API cannot express — hence a custom component writing the standard `ModelBlessing`
  (`blessed` custom property) that the stock Pusher honours.
- `ServingCheck`: loads the SavedModel the way a server does and replays the golden round trips
  the Trainer recorded with its in-process codec (`components.golden`): strings must be
  byte-identical (bit-exact latents) and reconstructions equal to the local decode. Writes an
  `InfraBlessing` the Pusher also requires (the InfraValidator idea without Docker).
"""
# No `from __future__ import annotations`: TFX reads these signatures at import time.

import json
import os

import numpy as np
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import path_utils


InputArtifact = tfx.dsl.components.InputArtifact
OutputArtifact = tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter


def _codec(model):
    from codec.saved_codec import SavedCodec  # pylint: disable=import-outside-toplevel
    return SavedCodec(path_utils.serving_model_path(model.uri))


@tfx.dsl.components.component
def FailOnAnomalies(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:
    """Raises with every anomaly ExampleValidator found (so nothing downstream runs)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    found = []
    for path in sorted(tf.io.gfile.glob(os.path.join(anomalies.uri, "Split-*", "SchemaDiff.pb"))):
        report = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, "rb").read())
        split = os.path.basename(os.path.dirname(path))
        for feature, info in report.anomaly_info.items():
            found.append(f"{split}/{feature}: {info.short_description} — {info.description}")
    if found:
        raise RuntimeError("data validation failed; training skipped:\n  " + "\n  ".join(found))
    print("data validation: no anomalies")


def write_blessing(blessing, model, report: dict, metric_keys) -> None:
    """The gate's `evaluation.json` + the ModelBlessing properties the Pusher and
    LatestBlessedModelStrategy read (`blessed`, `current_model_id`, `current_model`)."""
    with open(os.path.join(blessing.uri, "evaluation.json"), "w") as f:
        json.dump(report, f, indent=2)
    blessing.set_int_custom_property("blessed", int(report["blessed"]))
    blessing.set_int_custom_property("current_model_id", model.id)
    blessing.set_string_custom_property("current_model", model.uri)
    for key in metric_keys:
        blessing.set_float_custom_property(key, float(report["metrics"][key]))


@tfx.dsl.components.component
def RateDistortionGate(
        model: InputArtifact[standard_artifacts.Model],
        examples: InputArtifact[standard_artifacts.Examples],
        blessing: OutputArtifact[standard_artifacts.ModelBlessing],
        baseline_model: InputArtifact[standard_artifacts.Model] = None,
        family: Parameter[str] = "mnist",
        lmbda: Parameter[float] = 1.0,
        max_rate: Parameter[float] = 1e9,
        distortion_bound: Parameter[float] = 1.0,
        tolerance: Parameter[float] = 0.0,
        max_examples: Parameter[int] = 2000) -> None:
    """Blesses the model iff its actual rate ≤ max_rate, its distortion is within
    distortion_bound (the family's metric and direction) and, when a blessed baseline exists,
    its objective (e.g. bits + λ·MAE) is not worse than the baseline's by more than
    `tolerance`."""
    from codec.families import GateSpec, get_family  # pylint: disable=import-outside-toplevel

    codec_family = get_family(family)
    images = codec_family.eval_images([os.path.join(examples.uri, "Split-eval", "*")],
                                      max_examples)
    metrics = codec_family.measure(_codec(model), images, lmbda)
    # The baseline is re-measured on *this* run's eval split (its stored numbers may come from an
    # older span), except when it is this very model (a re-run over unchanged inputs).
    baseline = None
    if baseline_model is not None:
        baseline = metrics if baseline_model.id == model.id else \
            codec_family.measure(_codec(baseline_model), images, lmbda)
    blessed, lines = codec_family.gate_decision(
        metrics, GateSpec(lmbda, max_rate, distortion_bound), baseline, tolerance)
    report = {"family": family, "lambda": lmbda, "blessed": blessed, "checks": lines,
              "metrics": metrics, "model_uri": model.uri, "baseline": baseline,
              "baseline_uri": getattr(baseline_model, "uri", None)}
    write_blessing(blessing, model, report, codec_family.metric_keys)
    verdict = "BLESSED" if blessed else "NOT BLESSED (push skipped)"
    print(f"rate-distortion gate {family} λ={lmbda:g}: {verdict}\n  " + "\n  ".join(lines))


def serving_check_problems(codec, golden) -> list[str]:
    """Differences between a server-style load of the export and the Trainer's local codec."""
    images, local_strings, local_decoded = golden
    strings, _ = codec.compress(images)
    decoded, ok = codec.decompress_with_status(strings)
    problems = []
    mismatched = [i for i, (a, b) in enumerate(zip(strings, local_strings)) if a != b]
    if mismatched or len(strings) != len(local_strings):
        problems.append(f"{len(mismatched)} of {len(images)} strings differ from the Trainer's "
                        f"local encoding (quantized latents not bit-exact), e.g. index "
                        f"{mismatched[:5]}")
    if not ok.all():
        problems.append(f"{int((~ok).sum())} strings fail the decoder's sanity check")
    if decoded.shape != local_decoded.shape or not np.array_equal(decoded, local_decoded):
        problems.append("served reconstructions differ from the Trainer's local decode")
    if codec.compress(images)[0] != strings:
        problems.append("compress is not deterministic")
    return problems


@tfx.dsl.components.component
def ServingCheck(model: InputArtifact[standard_artifacts.Model],
                 blessing: OutputArtifact[standard_artifacts.InfraBlessing]) -> None:
    """Loads the export as a server would and replays the Trainer's golden round trips."""
    from components.golden import read_golden  # pylint: disable=import-outside-toplevel

    codec = _codec(model)
    golden = read_golden(path_utils.serving_model_path(model.uri))
    problems = serving_check_problems(codec, golden)
    blessing.set_int_custom_property("blessed", int(not problems))
    print(f"serving check on {len(golden[0])} eval images vs the Trainer's local codec: "
          + ("OK (identical strings and reconstructions)" if not problems
             else "FAILED: " + "; ".join(problems)))
