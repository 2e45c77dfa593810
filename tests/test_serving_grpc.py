"""The TF-Serving-API server over gRPC on loopback: Predict round trips, metadata, status,
hot reload of a new version, refused broken versions, and TF Serving's error codes.
(REST, batching, limits, TLS and metrics: test_serving_rest.py.)"""
from __future__ import annotations

import shutil
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from codec.saved_codec import SavedCodec
from quality_floors import TINY_MNIST_MAE_FIRST5, assert_mnist_quality


def _predict(stub, signature, version=None, output_filter=(), **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist_l500"
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.output_filter.extend(output_filter)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return stub.Predict(request, timeout=60)


def test_grpc_round_trip_equals_local_codec(served, tiny_model, test_digits):
    predict = served.predict
    digits = test_digits[0][:8]
    response = _predict(predict, "compress", images=digits)
    strings = list(tf.make_ndarray(response.outputs["strings"]))
    local = SavedCodec(tiny_model)
    assert strings == local.compress(digits)[0]
    assert response.model_spec.version.value == 1
    decoded = _predict(predict, "decompress", strings=np.array(strings, dtype=object))
    served = tf.make_ndarray(decoded.outputs["images"])
    np.testing.assert_array_equal(served, local.decompress(strings))
    assert_mnist_quality(digits[:5], served[:5], mae_floor=1.2 * TINY_MNIST_MAE_FIRST5)
    everything = set(response.outputs)
    assert {"strings", "model_fingerprint"} <= everything and len(everything) >= 3
    bits_key = sorted(everything - {"strings", "model_fingerprint"})[0]
    only_bits = _predict(predict, "compress", output_filter=[bits_key], images=digits)
    assert set(only_bits.outputs) == {bits_key}                  # the filter is applied
    np.testing.assert_array_equal(tf.make_ndarray(only_bits.outputs[bits_key]),
                                  tf.make_ndarray(response.outputs[bits_key]))
    with pytest.raises(grpc.RpcError) as unknown:
        _predict(predict, "compress", output_filter=["nope"], images=digits)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_and_status(served):
    predict, models = served.predict, served.models
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "mnist_l500"
    response = predict.GetModelMetadata(request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert {"compress", "decompress", "svd_approximate"} <= set(signatures.signature_def)
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "mnist_l500"}))
    [version] = status.model_version_status
    assert version.version == 1
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_new_version_is_served_without_restart_and_broken_ones_are_refused(served):
    base, registry, predict, models = served.base, served.registry, served.predict, served.models
    shutil.copytree(base / "mnist_l500" / "1", base / "mnist_l500" / "2")
    registry.wait_until_available("mnist_l500", 2, timeout=60)
    response = _predict(predict, "compress", images=np.zeros((1, 28, 28, 1), np.uint8))
    assert response.model_spec.version.value == 2  # latest served, old one unloaded
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "mnist_l500"}))
    states = {s.version: s.state for s in status.model_version_status}
    assert states[2] == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    # Version 1 unloads after version 2 is available: poll for it, with a deadline.
    deadline = time.monotonic() + 60
    while states[1] != get_model_status_pb2.ModelVersionStatus.END and \
            time.monotonic() < deadline:
        time.sleep(.05)
        states = {s.version: s.state for s in models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "mnist_l500"}),
            timeout=30).model_version_status}
    assert states[1] == get_model_status_pb2.ModelVersionStatus.END
    # A version whose graph is garbage (corrupt copy) is refused, version 2 keeps serving.
    # Built outside the base path and moved in at once: the poller must never see the good
    # copy before the corruption (it would load it; a race under a loaded CPU).
    staging = base.parent / "staging_7"
    shutil.copytree(base / "mnist_l500" / "2", staging)
    (staging / "saved_model.pb").write_bytes(b"\x00garbage" * 100)
    staging.rename(base / "mnist_l500" / "7")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and 7 not in {v.version for v in registry.status(
            "mnist_l500") if v.error}:
        time.sleep(.1)
    [seven] = registry.status("mnist_l500", 7)
    # TF reports an unparsable saved_model.pb as a protobuf DecodeError or, depending on the
    # loader path, as "OSError: Cannot parse file …": both are refusals with the reason.
    assert seven.state == "END" and ("DecodeError" in seven.error or "parse" in seven.error)
    assert _predict(predict, "compress", images=np.zeros((1, 28, 28, 1), np.uint8)
                    ).model_spec.version.value == 2
    shutil.rmtree(base / "mnist_l500" / "7")
    registry.refresh()
    # A broken version 3 (no variables) is reported with its error and never served.
    staging = base.parent / "staging_3"
    shutil.copytree(base / "mnist_l500" / "2", staging)
    shutil.rmtree(staging / "variables")
    staging.rename(base / "mnist_l500" / "3")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
                model_spec={"name": "mnist_l500", "version": {"value": 3}}))
            if status.model_version_status[0].status.error_message:
                break
        except grpc.RpcError:  # not scanned yet
            pass
        time.sleep(.1)
    assert "variables" in status.model_version_status[0].status.error_message.lower()
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.END
    response = _predict(predict, "compress", images=np.zeros((1, 28, 28, 1), np.uint8))
    assert response.model_spec.version.value == 2
    with pytest.raises(grpc.RpcError) as error:
        _predict(predict, "compress", version=3, images=np.zeros((1, 28, 28, 1), np.uint8))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # Repairing the directory (e.g. a copy that completes late) gets it loaded and served.
    versions = base / "mnist_l500"
    shutil.copytree(versions / "2" / "variables", versions / "3" / "variables")
    registry.wait_until_available("mnist_l500", 3, timeout=60)
    response = _predict(predict, "compress", images=np.zeros((1, 28, 28, 1), np.uint8))
    assert response.model_spec.version.value == 3


_rng = np.random.default_rng(3)
# Random 40-byte payloads: the served tiny model's headerless strings (portable-range) are
# ≈ 13 bytes, so these are never canonical and fail the end-of-stream check; so does a
# 21-byte TFC-framed string (a headerless model has no format byte to refuse it by).
RANDOM_STRINGS = [bytes([0x20 | (b[0] & 0x1F)]) + b[1:] for b in (_rng.bytes(40) for _ in range(64))]
FOREIGN_STRINGS = [b"\x40" + _rng.bytes(20)]  # format id 2: written by the TFC coder


@pytest.mark.parametrize("signature, inputs, code, text", [
    ("compress", {"images": np.zeros((1, 28, 28, 1), np.float32)}, "INVALID_ARGUMENT",
     "expects uint8"),
    ("compress", {"images": np.zeros((1, 32, 32, 1), np.uint8)}, "INVALID_ARGUMENT",
     "expects shape"),
    ("compress", {"pixels": np.zeros((1, 28, 28, 1), np.uint8)}, "INVALID_ARGUMENT",
     "missing"),
    ("nope", {"images": np.zeros((1, 28, 28, 1), np.uint8)}, "INVALID_ARGUMENT", "not found"),
    # 64 random strings: the (weak) end-of-stream check rejects some of them → whole request fails.
    ("decompress", {"strings": np.array(RANDOM_STRINGS, dtype=object)}, "INVALID_ARGUMENT",
     "sanity check"),
    ("decompress", {"strings": np.array(FOREIGN_STRINGS, dtype=object)}, "INVALID_ARGUMENT",
     "sanity check"),
])
def test_malformed_requests_get_tf_serving_status_codes(served, signature, inputs, code, text):
    predict = served.predict
    with pytest.raises(grpc.RpcError) as error:
        _predict(predict, signature, **inputs)
    assert error.value.code() == getattr(grpc.StatusCode, code)
    assert text in error.value.details()


def test_unknown_model_is_not_found(served):
    predict = served.predict
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        predict.Predict(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_cli_compress_decompress_status(served, test_digits, tmp_path, capsys):
    from PIL import Image
    from cli.main import main
    from serving.client import CodecClient
    target = served.target
    client = CodecClient(target, model="mnist_l500")
    assert client.status() == [(1, "AVAILABLE", "")]
    Image.fromarray(test_digits[0][0, ..., 0]).save(tmp_path / "digit.png")
    assert main(["client", "compress", str(tmp_path / "digit.png"), "--server", target,
                 "--model", "mnist_l500", "--output-dir", str(tmp_path / "bin")]) == 0
    assert main(["client", "decompress", str(tmp_path / "bin" / "digit.bin"), "--server",
                 target, "--model", "mnist_l500", "--output-dir", str(tmp_path / "png")]) == 0
    assert main(["client", "status", "--server", target, "--model", "mnist_l500"]) == 0
    out = capsys.readouterr().out
    assert "digit.bin " in out and "AVAILABLE" in out and "ms (last call)" in out
    decoded = np.asarray(Image.open(tmp_path / "png" / "digit.png"))
    np.testing.assert_array_equal(decoded, client.decompress(client.compress(
        test_digits[0][:1])[0])[0, ..., 0])


def test_client_svd_keeps_colour_and_names_the_choice(served, tmp_path, capsys):
    from pathlib import Path
    from PIL import Image
    from cli.main import main
    from codec.linalg import svd
    kodak = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
    crop = np.asarray(Image.open(kodak / "kodim23.png").convert("RGB"))[:96, :128]
    Image.fromarray(crop).save(tmp_path / "parrot.png")
    out = tmp_path / "out"
    for option in (["--rank", "12"], ["--compression-factor", ".2"]):
        assert main(["client", "svd", str(tmp_path / "parrot.png"), "--server", served.target,
                     "--model", "mnist_l500", "--output-dir", str(out), *option]) == 0
    rank = int(svd.rank_from_compression_factor(.2, 96, 128))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["parrot_rank12.png", f"parrot_cf0.2_rank{rank}.png"])
    served_image = np.asarray(Image.open(out / f"parrot_cf0.2_rank{rank}.png"))
    local = svd.approximate_compression(tf.constant(crop[None]), .2).reconstruction.numpy()[0]
    np.testing.assert_array_equal(served_image, local)            # colour, bit-identical
    assert "3 channel(s)" in capsys.readouterr().out
