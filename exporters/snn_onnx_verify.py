"""A `.snn.onnx` runs only if its graph is the one the network in its metadata exports to.

Why: the sha256 in the metadata covers the embedded IntNet, but `--backend ort` runs the graph, which could
be edited independently (changed weights, v_init, input scale or readout bias, an added node, another opset,
a missing output). The exporter is deterministic, so the graph is rebuilt from the embedded network with
the file's recorded kernels (build_snn_onnx) and compared as protobuf messages: model fields, opsets,
metadata keys, graph inputs/outputs, every initializer, every node and attribute (Scan bodies included).
The first difference is refused in one line naming it; nothing of the file is handed to onnxruntime before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qcfs.errors import ModelFileError
from qcfs.exporters.snn_onnx import KERNELS, META_INTNET, build_snn_onnx, embedded_intnet
from qcfs.intnet import IntNet

FIX = "re-export it with qcfs-export --backend snn-onnx"
MODEL_FIELDS = ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string")


def _bytes(msg: Any) -> bytes:
    return msg.SerializeToString(deterministic=True)


def _node_difference(a: Any, b: Any, label: str) -> str:
    """Why node `a` (file) differs from `b` (derived); called only when their bytes differ."""
    from onnx import AttributeProto

    if (a.op_type, a.domain) != (b.op_type, b.domain):
        return f"{label}: op {a.op_type!r}"
    if list(a.input) != list(b.input) or list(a.output) != list(b.output):
        return f"{label}: inputs/outputs {list(a.input)} -> {list(a.output)}"
    got, want = {x.name: x for x in a.attribute}, {x.name: x for x in b.attribute}
    if sorted(got) != sorted(want) or len(got) != len(a.attribute):
        return f"{label}: attributes {sorted(got)}"
    for name, w in want.items():
        g = got[name]
        if w.type == AttributeProto.GRAPH and g.type == w.type:
            diff = graph_difference(g.g, w.g, f"{label} body")
            if diff:
                return diff
        elif _bytes(g) != _bytes(w):
            return f"{label}: attribute {name}"
    return f"{label}: name or doc_string"


def graph_difference(got: Any, want: Any, where: str = "graph") -> str | None:
    """The first difference of GraphProto `got` from `want`, None when they serialize identically."""
    if _bytes(got) == _bytes(want):
        return None
    for field in ("input", "output"):
        gn, wn = [v.name for v in getattr(got, field)], [v.name for v in getattr(want, field)]
        if gn != wn:
            missing = [n for n in wn if n not in gn]
            return f"{where} {field}s {gn}" + (f" (missing {missing})" if missing else f" (expected {wn})")
        for g, w in zip(getattr(got, field), getattr(want, field)):
            if _bytes(g) != _bytes(w):
                return f"{where} {field} {g.name!r} (type or shape)"
    gi, wi = {t.name: t for t in got.initializer}, {t.name: t for t in want.initializer}
    if len(gi) != len(got.initializer):
        return f"{where} initializers (a name used twice)"
    for name in wi.keys() - gi.keys():
        return f"{where} initializer {name!r} (missing)"
    for name in gi.keys() - wi.keys():
        return f"{where} initializer {name!r} (unexpected)"
    for t in want.initializer:
        if _bytes(gi[t.name]) != _bytes(t):
            return f"{where} initializer {t.name!r}"
    if len(got.node) != len(want.node):
        return f"{where}: {len(got.node)} nodes where the network has {len(want.node)} (a node added or removed)"
    for i, (a, b) in enumerate(zip(got.node, want.node)):
        if _bytes(a) != _bytes(b):
            return _node_difference(a, b, f"{where} node {i} ({b.op_type} -> {', '.join(b.output)})")
    return f"{where} (initializer order, value_info, name or doc_string)"


def model_difference(got: Any, want: Any) -> str | None:
    """The first difference of ModelProto `got` from `want` (the embedded IntNet's bytes excepted: they are
    the source, checked by their digest)."""
    for field in MODEL_FIELDS:
        if getattr(got, field) != getattr(want, field):
            return f"model field {field} ({getattr(got, field)!r}; the network exports {getattr(want, field)!r})"
    go = [(o.domain or "ai.onnx", o.version) for o in got.opset_import]
    wo = [(o.domain or "ai.onnx", o.version) for o in want.opset_import]
    if go != wo:
        return f"opset_import {go} (the network exports with {wo})"
    for field in ("functions", "training_info"):
        if [_bytes(x) for x in getattr(got, field)] != [_bytes(x) for x in getattr(want, field)]:
            return f"model {field}"
    gk, wk = [p.key for p in got.metadata_props], [p.key for p in want.metadata_props]
    if gk != wk:
        return f"metadata keys {gk} (expected {wk})"
    for g, w in zip(got.metadata_props, want.metadata_props):
        if g.key != META_INTNET and g.value != w.value:
            return f"metadata {g.key}"
    return graph_difference(got.graph, want.graph)


def verify_graph(path: str | Path, model: Any, net: IntNet) -> None:
    """ModelFileError unless `model` is exactly build_snn_onnx(net, <its recorded kernels>)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            raise ModelFileError(f"{path}: tensor {tensor.name!r} keeps its data in an external file; qcfs "
                                 f"writes none; {FIX}")
    kernels = {p.key: p.value for p in model.metadata_props}.get("qcfs_kernels")
    if kernels not in KERNELS or kernels == "auto":
        raise ModelFileError(f"{path}: metadata qcfs_kernels {kernels!r}; expected int8 or float32; {FIX}")
    try:
        want = build_snn_onnx(net, kernels)
    except ValueError as err:
        raise ModelFileError(f"{path}: the network in its metadata cannot be an snn-onnx export with {kernels} "
                             f"kernels ({err}); {FIX}") from None
    diff = model_difference(model, want)
    if diff:
        raise ModelFileError(f"{path}: {diff} differs from the graph the network in its metadata exports to: "
                             f"an edited or foreign file; {FIX}")


def verified_snn_onnx(path: str | Path) -> tuple[Any, IntNet]:
    """(ModelProto, its embedded IntNet) of an .snn.onnx whose graph is what that network exports to."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)  # never read another file's arrays
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - onnx raises DecodeError and friends from protobuf
        raise ModelFileError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    net = embedded_intnet(model, path)
    verify_graph(path, model, net)
    return model, net
