"""The server's REST API, dynamic batching, limits, TLS, metrics and structured logs — all on a
real server over loopback (fixture `served` in conftest: REST on, batching on)."""
from __future__ import annotations

import base64
import datetime
import http.client
import json
import logging
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from codec.saved_codec import SavedCodec
from serving.batching import BatchingParameters
from serving.client import CodecClient


def _http(url: str, body=None, context=None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _json(url, body=None, **kwargs):
    status, payload = _http(url, body, **kwargs)
    return status, json.loads(payload)


def _bytes_from_json(value) -> bytes:
    """TF Serving's JSON for a DT_STRING output not named `*_bytes`: UTF-8 text when the bytes
    decode as UTF-8 (short portable strings often do), `{"b64": ...}` otherwise."""
    return value.encode("utf-8") if isinstance(value, str) else base64.b64decode(value["b64"])


def test_rest_status_and_metadata(served):
    status, body = _json(f"{served.rest}/v1/models/mnist_l500")
    assert status == 200
    assert body["model_version_status"][0]["version"] == "1"
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = _json(f"{served.rest}/v1/models/mnist_l500/versions/1/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"compress", "decompress", "svd_approximate"} <= set(signatures)
    assert signatures["compress"]["inputs"]["images"]["dtype"] == "DT_UINT8"


def test_rest_predict_row_and_columnar_round_trip(served, tiny_model, test_digits):
    digits = test_digits[0][:4]
    local = SavedCodec(tiny_model)
    strings, _ = local.compress(digits)
    status, body = _json(f"{served.rest}/v1/models/mnist_l500:predict",
                         {"signature_name": "compress", "instances": digits.tolist()})
    assert status == 200, body
    rows = body["predictions"]
    assert [_bytes_from_json(r["strings"]) for r in rows] == strings
    assert all(isinstance(r["information_bits"], float) for r in rows)
    # Columnar, version pinned, bytes in as {"b64": ...}.
    status, body = _json(f"{served.rest}/v1/models/mnist_l500/versions/1:predict",
                         {"signature_name": "decompress", "inputs": {"strings": [
                             {"b64": base64.b64encode(s).decode()} for s in strings]}})
    assert status == 200, body
    np.testing.assert_array_equal(np.array(body["outputs"], np.uint8), local.decompress(strings))


@pytest.mark.parametrize("path, body, status, text", [
    ("/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found"),
    ("/v1/models/mnist_l500/versions/9:predict", {"instances": [1]}, 404, "Specific"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "compress",
                                       "instances": np.full((1, 28, 28, 1), .5).tolist()},
     400, "expects integers"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "compress",
                                       "instances": np.full((1, 28, 28, 1), 300).tolist()},
     400, "outside the range"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "compress",
                                       "instances": np.zeros((1, 27, 28, 1)).tolist()},
     400, "expects shape"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "decompress",
                                       "instances": [{"b64": "!!not base64!!"}]}, 400, "base64"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "compress"}, 400, "exactly one of"),
    ("/v1/models/mnist_l500:predict", {"signature_name": "nope", "instances": [1]}, 400,
     "not found in signature def"),
    ("/v1/models/mnist_l500:classify", {"instances": [1]}, 501, "not supported"),
    ("/v1/nothing", None, 404, "no GET endpoint"),
])
def test_rest_errors_use_tf_serving_statuses(served, path, body, status, text):
    got, payload = _json(served.rest + path, body)
    assert got == status and text in payload["error"]


def test_rest_rejects_malformed_json_and_oversized_bodies(served, tiny_model):
    status, payload = _json(f"{served.rest}/v1/models/mnist_l500:predict", raw=b"{not json")
    assert status == 400 and "malformed JSON" in payload["error"]
    # 5,000 levels of nesting: answered 400, not a dropped connection (RecursionError).
    deep = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, payload = _json(f"{served.rest}/v1/models/mnist_l500:predict", raw=deep)
    assert status == 400 and "nested too deeply" in payload["error"]
    # The size is refused from the header, before the body is read.
    limit = served.server.options.max_request_bytes
    connection = http.client.HTTPConnection(served.rest.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/models/mnist_l500:predict")
    connection.putheader("Content-Length", str(limit + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"exceeds the limit" in response.read()
    connection.close()


def test_concurrent_requests_are_batched_and_errors_stay_with_their_request(
        served, tiny_model, test_digits):
    local = SavedCodec(tiny_model)
    strings = local.compress(test_digits[0][:24])[0]
    rng = np.random.default_rng(0)
    bad = next(s for s in (rng.bytes(200) for _ in range(1000))
               if not local.decompress_with_status([s])[1][0])  # fails the decode check
    client = CodecClient(served.target, model="mnist_l500")

    def decompress_one(i):
        if i % 6 == 5:  # a bad request mixed into the batches
            with pytest.raises(grpc.RpcError) as error:
                client.decompress([bad])
            return error.value.code()
        return client.decompress([strings[i]])[0]

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(decompress_one, range(24)))
    for i, result in enumerate(results):
        if i % 6 == 5:
            assert result == grpc.StatusCode.INVALID_ARGUMENT
        else:  # batching changes no output
            np.testing.assert_array_equal(result, local.decompress([strings[i]])[0])
    metrics = _http(f"{served.rest}/monitoring/prometheus/metrics")[1].decode()
    labels = '{model="mnist_l500",signature="decompress"}'
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("rdpipe_serving_batch_size_")}
    assert values[f"rdpipe_serving_batch_size_sum{labels}"] == 24  # each example once
    # (Whether these requests shared batches depends on their arrival times; that requests
    # queued together are batched is tested deterministically below.)


def test_queued_requests_are_batched_deterministically():
    """The batcher's worker is held inside a first, full batch (an event) while 23
    single-row requests queue up: once released, they run as ⌈23 / 8⌉ = 3 batches of at most
    8 rows, each result split back to its request. No timing is involved: the batch window is
    an hour, and the batches close because they are full or the queue is drained."""
    import threading
    from serving.batching import _Queue
    started, release = threading.Event(), threading.Event()
    batches = []

    def run(inputs):
        if not batches:
            started.set()
            assert release.wait(60), "never released"
        batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    queue = _Queue(run, BatchingParameters(max_batch_size=8, batch_timeout_micros=3_600_000_000),
                   on_batch=lambda rows: None)
    first = queue.submit({"x": np.zeros(8, int)}, 8)       # full: runs at once
    assert started.wait(60)                      # the worker is busy with request 0
    futures = [queue.submit({"x": np.array([i])}, 1) for i in range(1, 24)]
    queue.close()                                # drain: the last, partial batch runs too
    release.set()
    assert first.result(60)["y"].tolist() == [0] * 8
    assert [f.result(60)["y"].tolist() for f in futures] == [[2 * i] for i in range(1, 24)]
    assert batches == [8, 8, 8, 7]


def test_metrics_count_requests_and_model_events(served, test_digits):
    CodecClient(served.target, model="mnist_l500").compress(test_digits[0][:2])
    _http(f"{served.rest}/v1/models/nope")
    status, text = _http(f"{served.rest}/monitoring/prometheus/metrics")
    text = text.decode()
    assert status == 200
    assert ('rdpipe_serving_requests_total{api="grpc",code="OK",method="Predict",'
            'model="mnist_l500",signature="compress"} 1.0') in text
    assert ('rdpipe_serving_requests_total{api="rest",code="NOT_FOUND",method="GetModelStatus",'
            'model="nope",signature=""} 1.0') in text
    assert 'rdpipe_serving_model_versions_available{model="mnist_l500"} 1.0' in text
    assert "rdpipe_serving_request_latency_seconds_bucket" in text


def test_grpc_message_limit_is_enforced(tiny_model, tmp_path, test_digits):
    import shutil
    from serving.models import ModelRegistry
    from serving.server import ModelServer, ServerOptions
    shutil.copytree(tiny_model / "saved_model", tmp_path / "m" / "mnist_l500" / "1")
    registry = ModelRegistry(tmp_path / "m")
    registry.refresh()
    server = ModelServer(registry, ServerOptions(port=0, rest_port=None,
                                                 max_request_bytes=100_000)).start()
    try:
        client = CodecClient(f"127.0.0.1:{server.port}", model="mnist_l500")
        client.compress(test_digits[0][:100])  # 78 kB: fits
        with pytest.raises(grpc.RpcError) as error:
            client.compress(test_digits[0][:200])  # 157 kB: refused, server unharmed
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(client.compress(test_digits[0][:3])[0]) == 3
    finally:
        server.stop()


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")


def test_tls_on_grpc_and_rest(tiny_model, tmp_path):
    import shutil
    from serving.models import ModelRegistry
    from serving.server import ModelServer, ServerOptions
    cert, key = _self_signed(tmp_path)
    shutil.copytree(tiny_model / "saved_model", tmp_path / "m" / "mnist_l500" / "1")
    registry = ModelRegistry(tmp_path / "m")
    registry.refresh()
    server = ModelServer(registry, ServerOptions(port=0, rest_port=0, ssl_cert=cert,
                                                 ssl_key=key)).start()
    try:
        client = CodecClient(f"localhost:{server.port}", model="mnist_l500", ssl_ca=cert,
                             retries=0)
        assert client.status() == [(1, "AVAILABLE", "")]
        plain = CodecClient(f"localhost:{server.port}", model="mnist_l500", retries=0,
                            timeout=5)
        with pytest.raises(grpc.RpcError):
            plain.status()  # a plaintext client cannot talk to the TLS port
        context = ssl.create_default_context(cafile=cert)
        status, body = _json(f"https://localhost:{server.rest_port}/v1/models/mnist_l500",
                             context=context)
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        server.stop()


def test_batching_parameters_file_and_json_logs():
    params = BatchingParameters.from_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\n"
        "num_batch_threads { value: 4 }\n")
    assert (params.max_batch_size, params.batch_timeout_micros) == (16, 500)
    with pytest.raises(ValueError):
        BatchingParameters(max_batch_size=0)
    from serving.observability import JsonFormatter
    record = logging.LogRecord("rdpipe.serving", logging.INFO, __file__, 1, "load %s", ("m",),
                               None)
    record.event, record.version = "load", 3
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "load m" and entry["event"] == "load" and entry["version"] == 3


def _readline(stream, timeout: float) -> str:
    """One line from a subprocess pipe, or "" after `timeout` seconds (never blocks longer)."""
    import selectors
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        return stream.readline() if selector.select(timeout) else ""
    finally:
        selector.close()


@pytest.mark.slow
def test_rdpipe_serve_subprocess_and_client_cli(tiny_model, tmp_path, test_digits):
    """The newcomer flow: `rdpipe serve` as its own process, then `rdpipe client`."""
    import shutil
    from PIL import Image
    shutil.copytree(tiny_model / "saved_model", tmp_path / "m" / "mnist_l500" / "1")
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--model-base-path",
         str(tmp_path / "m"), "--port", "0", "--rest-port", "0", "--enable-batching"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(server.stdout, timeout=120)
        assert line.startswith("serving"), f"no start-up line within 120 s: {line!r}"
        grpc_port = int(line.split("gRPC 127.0.0.1:")[1].split(",")[0])
        Image.fromarray(test_digits[0][0, ..., 0]).save(tmp_path / "digit.png")
        run = [sys.executable, "-m", "cli.main", "client"]
        common = ["--server", f"127.0.0.1:{grpc_port}", "--model", "mnist_l500"]
        out = subprocess.run(run + ["compress", str(tmp_path / "digit.png"), "--output-dir",
                                    str(tmp_path / "bin")] + common,
                             capture_output=True, text=True, check=True).stdout
        assert "digit.bin " in out and "28×28" in out
        subprocess.run(run + ["decompress", str(tmp_path / "bin" / "digit.bin"),
                              "--output-dir", str(tmp_path / "png")] + common, check=True,
                       capture_output=True)
        decoded = np.asarray(Image.open(tmp_path / "png" / "digit.png"))
        local = SavedCodec(tiny_model)     # the served process decodes as the library does
        np.testing.assert_array_equal(
            decoded, local.decompress(local.compress(test_digits[0][:1])[0])[0, ..., 0])
    finally:
        server.terminate()
        server.wait(30)
    log_lines = [json.loads(l) for l in server.communicate(timeout=30)[1].splitlines()
                 if l.startswith("{")]
    assert any(e.get("event") == "load" and e.get("model") == "mnist_l500" for e in log_lines)


def test_a_full_batching_queue_refuses_with_unavailable(served, test_digits):
    """Back-pressure: over `max_enqueued_batches` the queue refuses at once (TF Serving answers
    UNAVAILABLE, "the batch scheduling queue … is full", so clients retry), deterministically:
    a queue that holds no work refuses every batched request; one held busy refuses the row
    that does not fit."""
    import threading
    from serving.batching import Batcher, QueueFullError, _Queue
    from serving.predict import Predictor, RequestError
    full = Predictor(served.registry, Batcher(BatchingParameters(max_batch_size=8,
                                                                 max_enqueued_batches=0)))
    with pytest.raises(RequestError) as error:
        full.predict("mnist_l500", None, "compress", {"images": test_digits[0][:1]})
    assert error.value.code == "UNAVAILABLE" and "queue is full" in str(error.value)
    open_ = Predictor(served.registry, Batcher(BatchingParameters(max_batch_size=8)))
    assert len(open_.predict("mnist_l500", None, "compress",
                             {"images": test_digits[0][:1]}).outputs["strings"]) == 1
    release = threading.Event()
    queue = _Queue(lambda inputs: release.wait(60) and inputs,
                   BatchingParameters(max_batch_size=2, batch_timeout_micros=3_600_000_000,
                                      max_enqueued_batches=1), on_batch=lambda rows: None)
    running = queue.submit({"x": np.zeros(2)}, 2)            # full batch: the worker takes it
    deadline = time.monotonic() + 60
    while queue._tasks and time.monotonic() < deadline:     # pylint: disable=protected-access
        time.sleep(.01)
    queued = queue.submit({"x": np.zeros(2)}, 2)             # fills the one allowed batch
    with pytest.raises(QueueFullError):
        queue.submit({"x": np.zeros(1)}, 1)
    release.set()
    queue.close()
    assert running.result(60)["x"].shape == (2,) and queued.result(60)["x"].shape == (2,)
