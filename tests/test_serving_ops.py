"""Which exports can a stock TF Serving load? Every signature's graph (and the functions it
calls) is walked and each op is checked against a fresh `import tensorflow` (serving/ops_audit).
"""
from __future__ import annotations

from serving.ops_audit import audit, signature_ops

# The tensorflow-compression-ops range coder: the only custom ops allowed, and only in exports
# made with coder "tfc" (served by rdpipe's own server, which loads that op library).
TFC_RANGE_CODER_OPS = {"CreateRangeEncoder", "EntropyEncodeChannel", "EntropyEncodeFinalize",
                       "CreateRangeDecoder", "EntropyDecodeChannel", "EntropyDecodeFinalize"}


def test_walk_reaches_ops_inside_called_functions(tiny_model):
    ops = signature_ops(tiny_model / "saved_model")
    # The signature's own graph only holds a StatefulPartitionedCall; the convolutions live in
    # the called function (and functions it calls).
    assert "StatefulPartitionedCall" in ops["compress"]
    assert {"Conv2D", "MatMul"} <= ops["compress"]
    assert "Svd" in ops["svd_approximate"]


def test_tfc_export_uses_no_custom_op_outside_the_named_range_coder(tiny_model):
    report = audit(tiny_model / "saved_model")
    custom = {op for ops in report.values() for op in ops}
    assert custom <= TFC_RANGE_CODER_OPS, f"unexpected non-stock ops: {custom - TFC_RANGE_CODER_OPS}"
    assert report["svd_approximate"] == []  # pure TF: loadable anywhere
    assert set(report["compress"]) == {"CreateRangeEncoder", "EntropyEncodeChannel",
                                       "EntropyEncodeFinalize"}
    assert set(report["decompress"]) == {"CreateRangeDecoder", "EntropyDecodeChannel",
                                         "EntropyDecodeFinalize"}
