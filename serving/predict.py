"""The Predict path shared by the gRPC and REST front ends: look up the servable, validate the
inputs against the signature, execute (directly or through the dynamic batcher), filter outputs.

Errors are `RequestError`s carrying TF Serving's status code names: unknown model / version →
NOT_FOUND; unknown signature, missing/unknown inputs, wrong dtype or shape → INVALID_ARGUMENT;
errors raised by the model on valid input (e.g. a failed decode check) → INVALID_ARGUMENT with
the model's message; a full batching queue → UNAVAILABLE; whatever the request guard refuses
(`rdpipe serve`: strings claiming too many pixels → RESOURCE_EXHAUSTED).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import numpy as np
import tensorflow as tf

from serving.batching import Batcher, QueueFullError
from serving.models import ModelRegistry, ServedVersion

log = logging.getLogger("rdpipe.serving")
DEFAULT_SIGNATURE = "serving_default"
# `request_guard(module, functions, signature, arrays) → arrays`: a check the server runs on a
# request's validated inputs before executing (raising RequestError to refuse). The server
# knows no codec; `rdpipe serve` installs the codec's decode-work guard (cli/serving.py).
RequestGuard = Callable[[object, dict, str, dict], dict]

# HTTP statuses of the REST API, as TF Serving maps them (RESOURCE_EXHAUSTED: the request-size
# and decoded-pixel limits → 413 Payload Too Large).
HTTP_STATUS = {"OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400,
               "OUT_OF_RANGE": 400, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
               "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 413,
               "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
               "INTERNAL": 500, "UNKNOWN": 500}


class RequestError(Exception):
    """A request TF Serving would refuse; `code` is a gRPC status code name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Prediction:
    served: ServedVersion
    signature: str
    outputs: dict[str, np.ndarray]


def is_batchable(function) -> bool:
    """Every input and output has an unknown leading (batch) dimension."""
    specs = list(function.structured_input_signature[1].values())
    specs += list(tf.nest.flatten(function.structured_outputs))
    return all(spec.shape.rank and spec.shape[0] is None for spec in specs)


class Predictor:
    """Runs Predict requests against a registry, optionally with dynamic batching."""

    def __init__(self, registry: ModelRegistry, batcher: Batcher | None = None,
                 request_guard: RequestGuard | None = None):
        self.registry = registry
        self.batcher = batcher
        self.request_guard = request_guard

    def served(self, name: str, version: int | None) -> ServedVersion:
        try:
            return self.registry.get(name, version)
        except KeyError as error:
            raise RequestError("NOT_FOUND", str(error.args[0])) from None

    def predict(self, name: str, version: int | None, signature: str,
                inputs: dict[str, np.ndarray], output_filter: list[str] | None = None
                ) -> Prediction:
        served = self.served(name, version)
        signature = signature or DEFAULT_SIGNATURE
        function = served.functions.get(signature)
        if function is None:
            raise RequestError("INVALID_ARGUMENT",
                               f"Serving signature name: \"{signature}\" not found in signature "
                               f"def; available: {sorted(served.functions)}")
        arrays = validate_inputs(function, signature, inputs)
        if self.request_guard is not None and served.module is not None:
            arrays = self.request_guard(served.module, served.functions, signature, arrays)
        wanted = list(output_filter or [])
        outputs_available = sorted(function.structured_outputs)
        bad = sorted(set(wanted) - set(outputs_available))
        if bad:
            raise RequestError("INVALID_ARGUMENT", f"output_filter names unknown outputs {bad}; "
                               f"available {outputs_available}")

        def run(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = function(**{k: tf.constant(v, dtype=specs[k].dtype)
                                 for k, v in values.items()})
            return {k: v.numpy() for k, v in result.items()}

        specs = function.structured_input_signature[1]
        try:
            if self.batcher is not None and is_batchable(function):
                outputs = self.batcher.run((served.name, served.version, signature), run, arrays)
            else:
                outputs = run(arrays)
        except QueueFullError as error:
            raise RequestError("UNAVAILABLE", str(error)) from None
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            message = getattr(error, "message", None) or str(error)
            raise RequestError("INVALID_ARGUMENT", message.strip()) from None
        except tf.errors.OpError as error:
            raise RequestError("INTERNAL", error.message.strip()) from None
        if wanted:
            outputs = {k: outputs[k] for k in wanted}
        return Prediction(served, signature, outputs)


def validate_inputs(function, signature: str, inputs: dict[str, np.ndarray]
                    ) -> dict[str, np.ndarray]:
    """Checks names, dtypes and shapes against the signature; returns the arrays to feed."""
    specs = function.structured_input_signature[1]
    missing = sorted(set(specs) - set(inputs))
    unknown = sorted(set(inputs) - set(specs))
    if missing or unknown:
        raise RequestError("INVALID_ARGUMENT",
                           f"signature {signature!r} expects inputs {sorted(specs)}; missing "
                           f"{missing}, unexpected {unknown}")
    arrays = {}
    for key, spec in specs.items():
        value = inputs[key]
        dtype = _dtype_of(value)
        if dtype != spec.dtype:
            raise RequestError("INVALID_ARGUMENT",
                               f"input {key!r}: expects {spec.dtype.name}, got {dtype.name}")
        if not spec.shape.is_compatible_with(value.shape):
            raise RequestError("INVALID_ARGUMENT",
                               f"input {key!r}: expects shape {spec.shape}, got "
                               f"{list(value.shape)}")
        arrays[key] = value
    return arrays


def _dtype_of(value: np.ndarray) -> tf.dtypes.DType:
    if value.dtype == object or value.dtype.kind in "SU":
        return tf.string
    return tf.dtypes.as_dtype(value.dtype)
