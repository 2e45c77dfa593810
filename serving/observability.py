"""Prometheus metrics (served on the REST port at `/monitoring/prometheus/metrics`, TF Serving's
path) and structured JSON logs for the model server.

Metrics (all labelled by `model`; request metrics also by `api` = grpc|rest, `method`,
`signature` and, for counts, the TF Serving status `code`):
- `rdpipe_serving_requests_total` — requests by outcome;
- `rdpipe_serving_request_latency_seconds` — histogram of wall time per request, seconds;
- `rdpipe_serving_batch_size` — histogram of executed batch sizes, examples;
- `rdpipe_serving_model_events_total` — load / load_failed / unload events by `event`;
- `rdpipe_serving_model_versions_available` — gauge of servable versions per model.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import types

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("rdpipe.serving")
CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1., 2., 5., 10., 30.)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """One registry per server (not the process-global default) so tests can run several."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("rdpipe_serving_requests", "Requests by outcome",
                                ["api", "method", "model", "signature", "code"],
                                registry=self.registry)
        self.latency = Histogram("rdpipe_serving_request_latency_seconds",
                                 "Wall time per request, seconds",
                                 ["api", "method", "model", "signature"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("rdpipe_serving_batch_size",
                                    "Examples per executed batch", ["model", "signature"],
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.model_events = Counter("rdpipe_serving_model_events", "Model version events",
                                    ["model", "event"], registry=self.registry)
        self.available = Gauge("rdpipe_serving_model_versions_available",
                               "Servable versions per model", ["model"],
                               registry=self.registry)

    def observe_request(self, api: str, method: str, model: str, signature: str, code: str,
                        seconds: float) -> None:
        self.requests.labels(api, method, model, signature, code).inc()
        self.latency.labels(api, method, model, signature).observe(seconds)

    @contextlib.contextmanager
    def track(self, api: str, method: str, model: str = "", signature: str = ""):
        """Times the block and counts it; the block may set `call.model`, `call.signature`
        and `call.code` (default OK; a `RequestError` sets its code; other errors INTERNAL)."""
        call = types.SimpleNamespace(model=model, signature=signature, code="OK")
        start = time.perf_counter()
        try:
            yield call
        except Exception as error:
            call.code = getattr(error, "code", "INTERNAL")
            raise
        finally:
            seconds = time.perf_counter() - start
            self.observe_request(api, method, call.model, call.signature, call.code, seconds)
            log.debug("request", extra={"api": api, "method": method, "model": call.model,
                                        "signature": call.signature, "code": call.code,
                                        "ms": round(seconds * 1e3, 3)})

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """Root logging for `rdpipe serve`: `json` (structured) or `text`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
