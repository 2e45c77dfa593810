"""Which exports can a stock TF Serving load? Every signature's graph (and the functions it
calls) is walked and each op is checked against a fresh `import tensorflow` (serving/ops_audit).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from serving.ops_audit import audit, signature_ops

# The tensorflow-compression-ops range coder: the only custom ops allowed, and only in exports
# made with coder "tfc" (served by rdpipe's own server, which loads that op library).
TFC_RANGE_CODER_OPS = {"CreateRangeEncoder", "EntropyEncodeChannel", "EntropyEncodeFinalize",
                       "CreateRangeDecoder", "EntropyDecodeChannel", "EntropyDecodeFinalize"}


@pytest.fixture(scope="module")
def tfc_export(tmp_path_factory):
    """An (untrained) codec exported with the TFC range coder: op content does not need training."""
    from codec.models.mnist_train import MnistTrainConfig, build_trainer, export_codec
    config = MnistTrainConfig(epochs=1, coder="tfc", verbose=0)
    path = tmp_path_factory.mktemp("tfc_export") / "saved_model"
    export_codec(build_trainer(config), path, config)
    return path


def test_walk_reaches_ops_inside_called_functions(tiny_model):
    ops = signature_ops(tiny_model / "saved_model")
    # The signature's own graph only holds a StatefulPartitionedCall; the convolutions live in
    # the called function (and functions it calls).
    assert "StatefulPartitionedCall" in ops["compress"]
    assert {"Conv2D", "MatMul"} <= ops["compress"]
    assert "Svd" in ops["svd_approximate"]


def test_default_export_uses_stock_tensorflow_ops_only(tiny_model):
    report = audit(tiny_model / "saved_model")
    assert report == {name: [] for name in report}, f"non-stock ops: {report}"
    assert {"compress", "decompress", "svd_approximate"} <= set(report)


def test_default_export_round_trips_in_a_process_without_custom_ops(tiny_model, test_digits):
    """A fresh interpreter that never imports tensorflow_compression_ops (as a stock TF Serving)
    loads the export and decodes what this process encoded."""
    from codec.saved_codec import SavedCodec
    digits = test_digits[0][:6]
    strings, _ = SavedCodec(tiny_model).compress(digits)
    script = textwrap.dedent("""
        import sys, numpy as np, tensorflow as tf
        model = tf.saved_model.load(sys.argv[1])
        strings = [bytes.fromhex(h) for h in sys.argv[2:]]
        images = model.signatures["decompress"](strings=tf.constant(strings))["images"].numpy()
        again = model.signatures["compress"](images=tf.constant(images))["strings"].numpy()
        assert "tensorflow_compression_ops" not in sys.modules
        print(images.astype(np.uint8).tobytes().hex())
        print(",".join(s.hex() for s in again))   # "," keeps empty strings (headerless coder)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tiny_model / "saved_model"),
                          *(s.hex() for s in strings)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split("\n")
    images = np.frombuffer(bytes.fromhex(out[0]), np.uint8).reshape(digits.shape)
    np.testing.assert_array_equal(images, SavedCodec(tiny_model).decompress(strings))
    # Bit-identical to this process encoding the same reconstructions.
    again = [bytes.fromhex(h) for h in out[1].split(",")]
    assert again == list(SavedCodec(tiny_model).compress(images)[0])


def test_tfc_export_uses_no_custom_op_outside_the_named_range_coder(tfc_export):
    report = audit(tfc_export)
    custom = {op for ops in report.values() for op in ops}
    assert custom <= TFC_RANGE_CODER_OPS, f"unexpected non-stock ops: {custom - TFC_RANGE_CODER_OPS}"
    assert report["svd_approximate"] == []  # pure TF: loadable anywhere
    assert set(report["compress"]) == {"CreateRangeEncoder", "EntropyEncodeChannel",
                                       "EntropyEncodeFinalize"}
    assert set(report["decompress"]) == {"CreateRangeDecoder", "EntropyDecodeChannel",
                                         "EntropyDecodeFinalize"}
