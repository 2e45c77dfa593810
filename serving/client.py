"""Client for rdpipe's server — or any TF Serving — using the standard stubs.

`CodecClient` wraps `PredictionServiceStub` / `ModelServiceStub`: compress uint8 images to
strings, decompress strings to images, call `svd_approximate`, read model status. Calls that
fail with UNAVAILABLE are retried with exponential backoff; every call's wall time is recorded in
`last_seconds`.
"""
from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.server import DEFAULT_MAX_MESSAGE_BYTES, grpc_options


class CodecClient:
    def __init__(self, target: str = "127.0.0.1:8500", model: str = "mnist_l2000",
                 version: int | None = None, timeout: float = 30., retries: int = 4,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, ssl_ca: str | None = None):
        """`ssl_ca`: PEM file of the CA that signed the server's certificate → TLS channel."""
        self.model, self.version, self.timeout, self.retries = model, version, timeout, retries
        options = grpc_options(max_message_bytes)
        if ssl_ca:
            credentials = grpc.ssl_channel_credentials(Path(ssl_ca).read_bytes())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.last_seconds = 0.
        self.last_fingerprint: bytes | None = None   # model_fingerprint of the last compress

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request):
        delay = .2
        for attempt in range(self.retries + 1):
            start = time.perf_counter()
            try:
                response = method(request, timeout=self.timeout)
                self.last_seconds = time.perf_counter() - start
                return response
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def predict(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predict.Predict, request)
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    def compress(self, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
        """uint8 `[B, H, W, C]` → (strings, information content in bits per image)."""
        images = np.asarray(images, np.uint8)
        out = self.predict("compress", images=images)
        self.last_fingerprint = (bytes.fromhex(out["model_fingerprint"][0].decode())
                                 if "model_fingerprint" in out else None)
        if "information_bits" in out:
            return list(out["strings"]), out["information_bits"]
        return list(out["strings"]), out["bits_per_pixel"] * images.shape[1] * images.shape[2]

    def signature_input_shape(self, signature: str = "compress",
                              key: str = "images") -> tuple[int | None, ...]:
        """Shape of a signature input from `GetModelMetadata` (None for any size), e.g.
        `(None, 28, 28, 1)` (MNIST) or `(None, None, None, 3)` (an image codec)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = self.model
        if self.version is not None:
            request.model_spec.version.value = self.version
        request.metadata_field.append("signature_def")
        response = self._call(self._predict.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        if signature not in signatures.signature_def:
            raise ValueError(f"model {self.model} has no {signature!r} signature "
                             f"(it has {sorted(signatures.signature_def)})")
        dims = signatures.signature_def[signature].inputs[key].tensor_shape.dim
        return tuple(None if d.size < 0 else int(d.size) for d in dims)

    def decompress(self, strings: list[bytes]) -> np.ndarray:
        return self.predict("decompress", strings=np.array(strings, dtype=object))["images"]

    def svd(self, images: np.ndarray, rank: int | None = None, *,
            compression_factor: float | None = None,
            energy_factor: float | None = None) -> dict[str, np.ndarray]:
        """Low-rank approximation of uint8 `[B, H, W, C]`: exactly one of `rank`,
        `compression_factor` or `energy_factor` (both in (0, 1]) picks the rank. Returns
        reconstruction, singular_values, ranks and stored_size (numbers stored per image)."""
        chosen = [(k, v) for k, v in (("rank", rank), ("compression_factor", compression_factor),
                                      ("energy_factor", energy_factor)) if v is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of rank, compression_factor, energy_factor")
        key, value = chosen[0]
        images = np.asarray(images, np.uint8)
        if key == "rank":
            return self.predict("svd_approximate", images=images, rank=np.int32(value))
        signature = "svd_approximate_compression" if key == "compression_factor" else \
            "svd_approximate_energy"
        return self.predict(signature, images=images, **{key: np.float32(value)})

    def status(self) -> list[tuple[int, str, str]]:
        """(version, state name, error message) per version."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model
        if self.version is not None:
            request.model_spec.version.value = self.version
        response = self._call(self._models.GetModelStatus, request)
        names = get_model_status_pb2.ModelVersionStatus.State
        return [(s.version, names.Name(s.state), s.status.error_message)
                for s in response.model_version_status]

