"""The model server: TF Serving's gRPC API (`tensorflow_serving.apis` protos and service names)
and REST API over one model registry, with optional dynamic batching, Prometheus metrics,
structured logs and TLS.

gRPC: `PredictionService.Predict` (any signature, `output_filter`),
`PredictionService.GetModelMetadata` (signature defs), `ModelService.GetModelStatus`.
REST: see `serving/rest.py`. Errors use TF Serving's status codes (`serving/predict.py`).
"""
from __future__ import annotations

import dataclasses
import logging
import ssl
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving.batching import Batcher, BatchingParameters
from serving.models import AVAILABLE, ModelRegistry
from serving.observability import ServerMetrics
from serving.predict import Predictor, RequestError, RequestGuard
from serving.responses import status_response
from serving.rest import make_rest_server

log = logging.getLogger("rdpipe.serving")
# Generous enough for a 4K RGB image as a uint8 tensor (3840×2160×3 ≈ 25 MB) plus framing;
# also a JSON request of it in the columnar format would not fit — use gRPC for big images.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _version_of(model_spec) -> int | None:
    return model_spec.version.value if model_spec.HasField("version") else None


def _abort(context, error: RequestError):
    context.abort(getattr(grpc.StatusCode, error.code), str(error))


def _tensor_inputs(request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    inputs = {}
    for key, proto in request.inputs.items():
        try:
            inputs[key] = tf.make_ndarray(proto)
        except Exception as error:  # malformed TensorProto
            raise RequestError("INVALID_ARGUMENT",
                               f"input {key!r}: malformed TensorProto ({error})") from None
    return inputs


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor, metrics: ServerMetrics):
        self.predictor, self.metrics = predictor, metrics

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            with self.metrics.track("grpc", "Predict", spec.name, spec.signature_name):
                prediction = self.predictor.predict(spec.name, _version_of(spec),
                                                    spec.signature_name, _tensor_inputs(request),
                                                    list(request.output_filter))
        except RequestError as error:
            _abort(context, error)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = prediction.served.name
        response.model_spec.version.value = prediction.served.version
        response.model_spec.signature_name = prediction.signature
        for key, value in prediction.outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        try:
            with self.metrics.track("grpc", "GetModelMetadata", request.model_spec.name):
                if list(request.metadata_field) != ["signature_def"]:
                    raise RequestError("INVALID_ARGUMENT",
                                       "Metadata field signature_def is the only one supported;"
                                       f" got {list(request.metadata_field)}")
                served = self.predictor.served(request.model_spec.name,
                                               _version_of(request.model_spec))
        except RequestError as error:
            _abort(context, error)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = served.name
        response.model_spec.version.value = served.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in served.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics: ServerMetrics):
        self.registry, self.metrics = registry, metrics

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        try:
            with self.metrics.track("grpc", "GetModelStatus", spec.name):
                return status_response(self.registry, spec.name, _version_of(spec))
        except RequestError as error:
            _abort(context, error)


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits shared by server and client (keep them consistent)."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


@dataclasses.dataclass
class ServerOptions:
    """`rdpipe serve` flags (TF Serving's equivalents in comments)."""
    host: str = "127.0.0.1"              # loopback unless told otherwise
    port: int = 8500                     # --port
    rest_port: int | None = 8501         # --rest_api_port (None: no REST)
    max_request_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # gRPC message and REST body limit
    batching: BatchingParameters | None = None  # --enable_batching + --batching_parameters_file
    ssl_cert: str | None = None          # PEM certificate chain (TLS on both ports)
    ssl_key: str | None = None           # PEM private key
    grpc_workers: int = 64               # ≥ concurrent requests a batch should gather
    request_guard: RequestGuard | None = None   # checks inputs before execution (predict.py)


class ModelServer:
    """Registry + predictor + gRPC + REST; `start()` binds, `stop()` shuts everything down."""

    def __init__(self, registry: ModelRegistry, options: ServerOptions = ServerOptions()):
        if (options.ssl_cert is None) != (options.ssl_key is None):
            raise ValueError("TLS needs both --ssl-cert and --ssl-key")
        self.registry, self.options = registry, options
        self.metrics = ServerMetrics()
        self.batcher = (Batcher(options.batching, self._observe_batch)
                        if options.batching else None)
        self.predictor = Predictor(registry, self.batcher, options.request_guard)
        registry.add_listener(self._on_model_event)
        for name in registry.model_names():
            self.metrics.available.labels(name).set(len(registry.available_versions(name)))
        self.grpc_server: grpc.Server | None = None
        self.rest_server = None
        self.port = self.rest_port = None

    def _observe_batch(self, key: tuple, size: int) -> None:
        self.metrics.batch_size.labels(key[0], key[2]).observe(size)

    def _on_model_event(self, event: str, name: str, version: int) -> None:
        self.metrics.model_events.labels(name, event).inc()
        self.metrics.available.labels(name).set(len(self.registry.available_versions(name)))
        if event == "unload" and self.batcher is not None:
            self.batcher.drop((name, version))

    def start(self) -> "ModelServer":
        options = self.options
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(options.grpc_workers),
                                       options=grpc_options(options.max_request_bytes))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.predictor, self.metrics), self.grpc_server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.registry, self.metrics), self.grpc_server)
        address = f"{options.host}:{options.port}"
        if options.ssl_cert:
            credentials = grpc.ssl_server_credentials(
                [(Path(options.ssl_key).read_bytes(), Path(options.ssl_cert).read_bytes())])
            self.port = self.grpc_server.add_secure_port(address, credentials)
        else:
            self.port = self.grpc_server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {address}")
        self.grpc_server.start()
        log.info("gRPC on %s:%d", options.host, self.port,
                 extra={"event": "grpc_started", "port": self.port, "tls": bool(options.ssl_cert),
                        "base_path": str(self.registry.base_path),
                        "batching": dataclasses.asdict(options.batching)
                        if options.batching else None})
        if options.rest_port is not None:
            context = None
            if options.ssl_cert:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(options.ssl_cert, options.ssl_key)
            self.rest_server, self.rest_port = make_rest_server(
                self.predictor, self.metrics, options.host, options.rest_port,
                options.max_request_bytes, context)
        return self

    def stop(self, grace: float = 0.) -> None:
        if self.grpc_server is not None:
            self.grpc_server.stop(grace)
        if self.rest_server is not None:
            self.rest_server.shutdown()
            self.rest_server.server_close()
        if self.batcher is not None:
            self.batcher.close()
        self.registry.stop()


def make_grpc_server(registry: ModelRegistry, host: str = "127.0.0.1", port: int = 8500,
                     max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
                     ) -> tuple[ModelServer, int]:
    """A started gRPC-only server (no REST, no batching); returns it and the bound port."""
    server = ModelServer(registry, ServerOptions(host=host, port=port, rest_port=None,
                                                 max_request_bytes=max_message_bytes)).start()
    return server, server.port


__all__ = ["ModelServer", "ServerOptions", "make_grpc_server", "status_response",
           "ModelRegistry", "AVAILABLE"]
