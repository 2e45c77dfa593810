"""gRPC server speaking the TF Serving API (`tensorflow_serving.apis` protos and service names).

Implemented: `PredictionService.Predict` (any signature, `output_filter`),
`PredictionService.GetModelMetadata` (signature defs), `ModelService.GetModelStatus`.
Errors use TF Serving's status codes: unknown model/version → NOT_FOUND; unknown signature,
missing/unknown inputs, wrong dtype or shape, bad tensor protos → INVALID_ARGUMENT; errors raised
by the model on valid input (e.g. a failed decode check) → INVALID_ARGUMENT with its message.
"""
from __future__ import annotations

import logging
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)
from tensorflow_serving.apis import status_pb2

from serving.models import AVAILABLE, ModelRegistry

log = logging.getLogger("rdpipe.serving")
DEFAULT_SIGNATURE = "serving_default"
# Generous enough for a 4K RGB image as a uint8 tensor (3840×2160×3 ≈ 25 MB) plus framing.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_STATE_CODES = get_model_status_pb2.ModelVersionStatus.State


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def _served(registry: ModelRegistry, model_spec):
    version = model_spec.version.value if model_spec.HasField("version") else None
    try:
        return registry.get(model_spec.name, version)
    except KeyError as error:
        raise RequestError(grpc.StatusCode.NOT_FOUND, str(error.args[0])) from None


def run_predict(registry: ModelRegistry, request: predict_pb2.PredictRequest
                ) -> predict_pb2.PredictResponse:
    """Predict with TF Serving's semantics; raises RequestError on bad requests."""
    served = _served(registry, request.model_spec)
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    function = served.functions.get(name)
    if function is None:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Serving signature name: \"{name}\" not found in signature def; "
                           f"available: {sorted(served.functions)}")
    specs = function.structured_input_signature[1]
    missing = sorted(set(specs) - set(request.inputs))
    unknown = sorted(set(request.inputs) - set(specs))
    if missing or unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"signature {name!r} expects inputs {sorted(specs)}; missing "
                           f"{missing}, unexpected {unknown}")
    inputs = {}
    for key, spec in specs.items():
        proto = request.inputs[key]
        try:
            value = tf.make_ndarray(proto)
        except Exception as error:  # malformed TensorProto
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {key!r}: malformed TensorProto ({error})") from None
        dtype = tf.dtypes.as_dtype(proto.dtype)
        if dtype != spec.dtype:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {key!r}: expects {spec.dtype.name}, got {dtype.name}")
        if not spec.shape.is_compatible_with(value.shape):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {key!r}: expects shape {spec.shape}, got "
                               f"{list(value.shape)}")
        inputs[key] = tf.constant(value, dtype=spec.dtype)
    try:
        outputs = function(**inputs)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        message = getattr(error, "message", None) or str(error)
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, message.strip()) from None
    wanted = list(request.output_filter) or sorted(outputs)
    bad = sorted(set(wanted) - set(outputs))
    if bad:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output_filter names unknown outputs {bad}; available "
                           f"{sorted(outputs)}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = served.name
    response.model_spec.version.value = served.version
    response.model_spec.signature_name = name
    for key in wanted:
        response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def Predict(self, request, context):
        try:
            return run_predict(self.registry, request)
        except RequestError as error:
            context.abort(error.code, str(error))

    def GetModelMetadata(self, request, context):
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "Metadata field signature_def is the only one supported; got "
                          f"{list(request.metadata_field)}")
        try:
            served = _served(self.registry, request.model_spec)
        except RequestError as error:
            context.abort(error.code, str(error))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = served.name
        response.model_spec.version.value = served.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in served.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        try:
            versions = self.registry.status(spec.name, version)
        except KeyError as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error.args[0]))
        response = get_model_status_pb2.GetModelStatusResponse()
        for served in versions:
            status = response.model_version_status.add()
            status.version = served.version
            status.state = _STATE_CODES.Value(served.state)
            if served.error:
                status.status.CopyFrom(status_pb2.StatusProto(
                    error_code=grpc.StatusCode.UNKNOWN.value[0], error_message=served.error))
        return response


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits shared by server and client (keep them consistent)."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


def make_grpc_server(registry: ModelRegistry, host: str = "127.0.0.1", port: int = 8500,
                     max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                     workers: int = 8) -> tuple[grpc.Server, int]:
    """A started gRPC server; returns it and the bound port (port 0 → a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=grpc_options(max_message_bytes))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    server.start()
    log.info("gRPC on %s:%d serving models under %s", host, bound, registry.base_path)
    return server, bound


__all__ = ["make_grpc_server", "run_predict", "ModelRegistry", "AVAILABLE"]
