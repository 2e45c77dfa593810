"""Responses built from the model registry for both protocols (gRPC `server.py`, REST
`rest.py`): model version status as TF Serving reports it."""
from __future__ import annotations

import grpc
from tensorflow_serving.apis import get_model_status_pb2, status_pb2

from serving.models import ModelRegistry
from serving.predict import RequestError


_STATE_CODES = get_model_status_pb2.ModelVersionStatus.State
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]


def status_response(registry: ModelRegistry, name: str, version: int | None
                    ) -> get_model_status_pb2.GetModelStatusResponse:
    """Version states as TF Serving reports them; RequestError(NOT_FOUND) for unknown ones."""
    try:
        versions = registry.status(name, version)
    except KeyError as error:
        raise RequestError("NOT_FOUND", str(error.args[0])) from None
    response = get_model_status_pb2.GetModelStatusResponse()
    for served in versions:
        status = response.model_version_status.add()
        status.version = served.version
        status.state = _STATE_CODES.Value(served.state)
        # Always set, as TF Serving does (REST shows {"error_code": "OK", "error_message": ""}).
        status.status.CopyFrom(status_pb2.StatusProto(
            error_code=_UNKNOWN if served.error else 0,
            error_message=served.error))
    return response
