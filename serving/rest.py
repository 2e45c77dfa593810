"""TF Serving's REST API subset, over the same `Predictor` as the gRPC front end.

    GET  /v1/models/NAME[/versions/N]             → model version status
    GET  /v1/models/NAME[/versions/N]/metadata    → signature defs
    POST /v1/models/NAME[/versions/N]:predict     → {"instances": [...]} (row) or
                                                    {"inputs": ...} (columnar)
    GET  /monitoring/prometheus/metrics           → Prometheus text format

JSON encoding follows TF Serving's (`json_tensor`): bytes go in and out as `{"b64": "..."}`.
TF Serving base64-encodes a string output only if its name ends in `_bytes`; rdpipe also does so
for any string that is not valid UTF-8 (binary codec strings), since raw bytes are not valid
JSON. Errors are `{"error": "..."}` with TF Serving's HTTP status mapping.

Built on the standard library's `http.server` (threaded): the REST side is a thin JSON layer.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.observability import CONTENT_TYPE, ServerMetrics
from serving.predict import HTTP_STATUS, Predictor, RequestError
from serving.responses import status_response

log = logging.getLogger("rdpipe.serving")
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>-?\d+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[a-z]+))?/?$")


# ------------------------------------------------------------------------- JSON ↔ arrays
def json_to_array(value, dtype: tf.dtypes.DType, name: str) -> np.ndarray:
    """A JSON value (nested lists) as an array of `dtype`; RequestError if it does not fit."""
    try:
        if dtype == tf.string:
            return np.array(_decode_strings(value, name), dtype=object)
        array = np.asarray(value)
    except RequestError:
        raise
    except (ValueError, TypeError, RecursionError) as error:
        raise RequestError("INVALID_ARGUMENT", f"input {name!r}: not a rectangular numeric "
                           f"array ({type(error).__name__}: {error})") from None
    if array.dtype.kind not in "biuf" or (array.size == 0 and array.ndim == 0):
        raise RequestError("INVALID_ARGUMENT",
                           f"input {name!r}: expects {dtype.name} numbers, got {array.dtype}")
    target = np.dtype(dtype.as_numpy_dtype)
    if target.kind in "iu":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise RequestError("INVALID_ARGUMENT", f"input {name!r}: expects integers "
                               f"({dtype.name})")
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise RequestError("INVALID_ARGUMENT", f"input {name!r}: values outside the range "
                               f"of {dtype.name} [{info.min}, {info.max}]")
    elif target.kind == "b" and array.dtype.kind != "b":
        raise RequestError("INVALID_ARGUMENT", f"input {name!r}: expects booleans")
    return array.astype(target)


def _decode_strings(value, name: str):
    if isinstance(value, list):
        return [_decode_strings(v, name) for v in value]
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError("INVALID_ARGUMENT",
                               f"input {name!r}: invalid base64 in {{\"b64\": ...}}") from None
    raise RequestError("INVALID_ARGUMENT",
                       f"input {name!r}: expects strings or {{\"b64\": ...}} objects")


def array_to_json(value: np.ndarray, name: str):
    if value.dtype == object or value.dtype.kind == "S":
        encode_all = name.endswith("_bytes")
        return _encode_strings(value.tolist(), encode_all)
    return value.tolist()


def _encode_strings(value, encode_all: bool):
    if isinstance(value, list):
        return [_encode_strings(v, encode_all) for v in value]
    if not encode_all:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def _is_named(value, inputs: list[str]) -> bool:
    return isinstance(value, dict) and not (set(value) == {"b64"} and inputs != ["b64"])


def parse_predict_body(body: dict, specs: dict) -> tuple[dict[str, np.ndarray], bool]:
    """Request JSON → (input arrays, row format?) for a signature's input `specs`."""
    names = sorted(specs)
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise RequestError("INVALID_ARGUMENT",
                           "request must contain exactly one of 'instances' or 'inputs'")
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
        if all(_is_named(i, names) for i in instances):
            columns = {}
            for i, instance in enumerate(instances):
                if sorted(instance) != names:
                    raise RequestError("INVALID_ARGUMENT", f"instance {i} has inputs "
                                       f"{sorted(instance)}; signature expects {names}")
            for key in names:
                columns[key] = [instance[key] for instance in instances]
        elif len(names) == 1:
            columns = {names[0]: instances}
        else:
            raise RequestError("INVALID_ARGUMENT", f"signature has inputs {names}: every "
                               "instance must be an object naming them")
        return {k: json_to_array(v, specs[k].dtype, k) for k, v in columns.items()}, True
    inputs = body["inputs"]
    if _is_named(inputs, names):
        columns = inputs
    elif len(names) == 1:
        columns = {names[0]: inputs}
    else:
        raise RequestError("INVALID_ARGUMENT", f"signature has inputs {names}: 'inputs' must "
                           "be an object naming them")
    arrays = {}
    for key, value in columns.items():
        spec = specs.get(key)
        arrays[key] = json_to_array(value, spec.dtype if spec else tf.float32, key)
    return arrays, False


def predict_response_json(outputs: dict[str, np.ndarray], rows: bool) -> dict:
    if not rows:
        encoded = {k: array_to_json(v, k) for k, v in outputs.items()}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise RequestError("INVALID_ARGUMENT", f"outputs have inconsistent batch sizes {sizes}; "
                           "use the columnar format ('inputs')")
    encoded = {k: array_to_json(v, k) for k, v in outputs.items()}
    if len(encoded) == 1:
        return {"predictions": next(iter(encoded.values()))}
    n = next(iter(sizes.values()))
    return {"predictions": [{k: v[i] for k, v in encoded.items()} for i in range(n)]}


# ------------------------------------------------------------------------------- server
class _Handler(BaseHTTPRequestHandler):
    server_version = "rdpipe-serving"
    protocol_version = "HTTP/1.1"
    predictor: Predictor
    metrics: ServerMetrics
    max_request_bytes: int

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        log.debug("rest %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, error: RequestError) -> None:
        self._send_json(HTTP_STATUS.get(error.code, 500), {"error": str(error)})

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path.rstrip("/") == "/monitoring/prometheus/metrics":
            self._send(200, self.metrics.exposition(), CONTENT_TYPE)
            return
        match = _MODEL_PATH.match(self.path)
        if not match or match["verb"]:
            self._error(RequestError("NOT_FOUND", f"no GET endpoint {self.path}"))
            return
        name, version = match["name"], _version(match["version"])
        method = "GetModelMetadata" if match["metadata"] else "GetModelStatus"
        try:
            with self.metrics.track("rest", method, name):
                payload = (self._metadata(name, version) if match["metadata"]
                           else self._status(name, version))
        except RequestError as error:
            self._error(error)
            return
        self._send_json(200, payload)

    def _status(self, name: str, version: int | None) -> dict:
        response = status_response(self.predictor.registry, name, version)
        return json_format.MessageToDict(response, including_default_value_fields=True,
                                         preserving_proto_field_name=True)

    def _metadata(self, name: str, version: int | None) -> dict:
        served = self.predictor.served(name, version)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in served.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        return {"model_spec": {"name": served.name, "signature_name": "",
                               "version": str(served.version)},
                "metadata": {"signature_def": json_format.MessageToDict(
                    signature_map, preserving_proto_field_name=True)}}

    def do_POST(self):  # noqa: N802
        match = _MODEL_PATH.match(self.path)
        if not match or match["verb"] is None:
            self._error(RequestError("NOT_FOUND", f"no POST endpoint {self.path}"))
            return
        if match["verb"] != "predict":
            self._error(RequestError("UNIMPLEMENTED", f":{match['verb']} is not supported; "
                                     "use :predict"))
            return
        name, version = match["name"], _version(match["version"])
        try:
            with self.metrics.track("rest", "Predict", name) as call:
                body = self._read_json()
                signature = body.get("signature_name") or ""
                call.signature = signature
                payload = self._predict(name, version, signature, body)
        except RequestError as error:
            self._error(error)
            return
        self._send_json(200, payload)

    def _read_json(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError("INVALID_ARGUMENT", "Content-Length header required")
        if int(length) > self.max_request_bytes:
            self.close_connection = True
            raise RequestError("RESOURCE_EXHAUSTED", f"request of {length} bytes exceeds the "
                               f"limit of {self.max_request_bytes} bytes (--max-request-bytes)")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError("INVALID_ARGUMENT", f"malformed JSON: {error}") from None
        except RecursionError:   # Python's parser recurses per nesting level
            raise RequestError("INVALID_ARGUMENT", "malformed JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise RequestError("INVALID_ARGUMENT", "request body must be a JSON object")
        return body

    def _predict(self, name: str, version: int | None, signature: str, body: dict) -> dict:
        served = self.predictor.served(name, version)
        function = served.functions.get(signature or "serving_default")
        specs = function.structured_input_signature[1] if function is not None else {}
        inputs, rows = parse_predict_body(body, specs) if function is not None else ({}, False)
        prediction = self.predictor.predict(name, served.version, signature, inputs)
        return predict_response_json(prediction.outputs, rows)


def _version(text: str | None) -> int | None:
    return None if text is None else int(text)


def make_rest_server(predictor: Predictor, metrics: ServerMetrics, host: str = "127.0.0.1",
                     port: int = 8501, max_request_bytes: int = 64 << 20,
                     ssl_context: ssl.SSLContext | None = None
                     ) -> tuple[ThreadingHTTPServer, int]:
    """A started REST server (daemon thread); returns it and the bound port (0 → free)."""
    handler = type("Handler", (_Handler,), {"predictor": predictor, "metrics": metrics,
                                            "max_request_bytes": max_request_bytes})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    bound = server.server_address[1]
    log.info("REST on %s:%d", host, bound, extra={"event": "rest_started", "port": bound})
    return server, bound
