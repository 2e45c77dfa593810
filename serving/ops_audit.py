"""Which ops does each signature of a SavedModel need, and which of them are not registered in
stock TensorFlow? (A stock `tensorflow/serving` image refuses to load a model with such ops:
"Op type not registered ...".)

The walk starts at each signature's output tensors in the MetaGraph's graph, follows node inputs
backwards, and descends into every function a node references through a function-valued
attribute (`f` of PartitionedCall/StatefulPartitionedCall, `body`/`cond` of While,
`then_branch`/`else_branch` of If, ...), recursively.

The stock check runs in a fresh interpreter that imports only `tensorflow`, so custom op
libraries already loaded in the caller (e.g. `tensorflow_compression_ops`) cannot hide an op.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tensorflow.core.protobuf import saved_model_pb2


def _tensor_node(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def _function_refs(attrs) -> list[str]:
    refs = []
    for value in attrs.values():
        if value.HasField("func"):
            refs.append(value.func.name)
        refs.extend(f.name for f in value.list.func)
    return refs


def signature_ops(saved_model_dir: str | Path) -> dict[str, set[str]]:
    """{signature name: set of op types it can execute}, from `saved_model.pb` alone."""
    proto = saved_model_pb2.SavedModel.FromString(
        (Path(saved_model_dir) / "saved_model.pb").read_bytes())
    meta_graph = proto.meta_graphs[0]
    graph = meta_graph.graph_def
    nodes = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    function_ops: dict[str, set[str]] = {}

    def ops_of_function(name: str) -> set[str]:
        if name in function_ops:
            return function_ops[name]
        function_ops[name] = set()  # guards recursion
        ops = set()
        for node in functions[name].node_def if name in functions else []:
            ops.add(node.op)
            for ref in _function_refs(node.attr):
                ops |= ops_of_function(ref)
        function_ops[name] = ops
        return ops

    result = {}
    for key, signature in meta_graph.signature_def.items():
        ops, seen = set(), set()
        stack = [_tensor_node(t.name) for t in signature.outputs.values()]
        while stack:
            name = stack.pop()
            if name in seen or name not in nodes:
                continue
            seen.add(name)
            node = nodes[name]
            ops.add(node.op)
            for ref in _function_refs(node.attr):
                ops |= ops_of_function(ref)
            stack.extend(_tensor_node(i) for i in node.input)
        result[key] = ops
    return result


_STOCK_CHECK = """
import json, sys
from tensorflow.python.framework import op_def_registry
ops = json.load(sys.stdin)
print(json.dumps(sorted(op for op in ops if op_def_registry.get(op) is None)))
"""


def unregistered_in_stock_tf(ops: set[str]) -> set[str]:
    """The ops of `ops` that plain `import tensorflow` does not register."""
    out = subprocess.run([sys.executable, "-c", _STOCK_CHECK], input=json.dumps(sorted(ops)),
                         capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", **_env()})
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _env() -> dict[str, str]:
    import os  # pylint: disable=import-outside-toplevel
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def audit(saved_model_dir: str | Path) -> dict[str, list[str]]:
    """{signature: sorted non-stock ops} (empty lists: loadable by stock TF Serving)."""
    per_signature = signature_ops(saved_model_dir)
    custom = unregistered_in_stock_tf(set().union(*per_signature.values()))
    return {key: sorted(ops & custom) for key, ops in sorted(per_signature.items())}
