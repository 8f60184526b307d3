"""Last gate of the importer: a canonical graph holds only ops the conversion passes understand, and every
qcfs::QCFS node has parameters that define a QCFS activation. One error line names file, node, op and a fix."""

from __future__ import annotations


import numpy as np
import onnx_ir as ir

from qcfs.errors import ModelFileError, UnsupportedOpError
from qcfs.exporters.canonical import QCFS_DOMAIN, QCFS_OP

SUPPORTED_OPS = frozenset({
    "Conv", "BatchNormalization", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "ReduceMean",
    "Flatten", "Reshape", "Dropout", "Identity", "Constant",
})

_QCFS_PARTS = "it looks like part of a QCFS activation in a spelling the importer does not know; export with " \
              "qcfs-export or write it as in docs/canonical_onnx.md"
ADVICE: dict[str, str] = {
    "MaxPool": "replace MaxPool by AveragePool and retrain",
    "GlobalMaxPool": "replace GlobalMaxPool by GlobalAveragePool and retrain",
    "Relu": "use --calibrate relu --dataset D to turn each ReLU into QCFS, or train with QCFS",
    "Clip": _QCFS_PARTS, "Floor": _QCFS_PARTS, "Div": _QCFS_PARTS, "Mul": _QCFS_PARTS, "Max": _QCFS_PARTS,
    "Min": _QCFS_PARTS, "Sub": _QCFS_PARTS, "Round": _QCFS_PARTS,
    "Softmax": "only a per-class Softmax (axis 1 / -1 of the [batch, classes] output) that produces the output "
               "can be dropped; remove it from the export",
    "LogSoftmax": "only a per-class LogSoftmax (axis 1 / -1 of the [batch, classes] output) that produces the "
                  "output can be dropped; remove it from the export",
    "LSTM": "recurrent layers cannot be converted to an IF network", "GRU": "recurrent layers cannot be converted",
    "RNN": "recurrent layers cannot be converted",
}
_DEFAULT_ADVICE = "express the network with Conv/Gemm/AveragePool/Add/qcfs::QCFS (see docs/canonical_onnx.md)"


def _op_name(node: ir.Node) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def check_qcfs_node(node: ir.Node, source: str) -> None:
    """L a positive integer, 0 ≤ shift < 1, λ a constant finite positive scalar."""
    where = f"{source}: QCFS node '{node.name}'"
    L_attr, shift_attr = node.attributes.get("L"), node.attributes.get("shift")
    if L_attr is None or L_attr.type != ir.AttributeType.INT or L_attr.as_int() < 1:
        got = "missing" if L_attr is None else repr(L_attr.value)
        raise ModelFileError(f"{where}: attribute L must be a positive integer (got {got})")
    shift = 0.5 if shift_attr is None else shift_attr.value
    if not isinstance(shift, float) or not (0.0 <= shift < 1.0):
        raise ModelFileError(f"{where}: attribute shift (φ) must be a float in [0, 1) (got {shift!r})")
    if len(node.inputs) != 2 or node.inputs[1] is None or node.inputs[1].const_value is None:
        raise ModelFileError(f"{where}: needs inputs (X, lambda) with lambda a constant initializer")
    lam = node.inputs[1].const_value.numpy()
    if lam.size < 1 or not np.issubdtype(lam.dtype, np.floating):
        raise ModelFileError(f"{where}: lambda must be a float scalar or one per channel (got shape "
                             f"{list(lam.shape)}, {lam.dtype})")
    bad = lam.reshape(-1)[~(np.isfinite(lam.reshape(-1)) & (lam.reshape(-1) > 0))]
    if bad.size:
        raise ModelFileError(f"{where}: clip level λ = {float(bad[0])}; λ must be positive and finite")


def check_reshape(node: ir.Node, source: str) -> None:
    """The canonical form holds only flattening Reshapes: target [0, -1], [0, n] or [-1, n] (n = the product of
    the other dims, checked here when the input shape is known and again by the converter)."""
    target = node.inputs[1] if len(node.inputs) > 1 else None
    where = f"{source}: node '{node.name}' (Reshape)"
    if target is None or target.const_value is None:
        raise UnsupportedOpError(f"{where}: target shape is computed at run time; only a constant flatten "
                                 "([0, -1]) is supported")
    t = target.const_value.numpy().reshape(-1).tolist()
    x = node.inputs[0]
    dims = list(x.shape)[1:] if x is not None and x.shape is not None else None
    n = int(np.prod(dims)) if dims is not None and all(isinstance(d, int) for d in dims) else None
    allowzero = node.attributes.get("allowzero")
    keep_batch = allowzero is None or allowzero.as_int() == 0
    ok = len(t) == 2 and ((t[0] == 0 and keep_batch and (t[1] == -1 or n in (None, t[1])))
                          or (t[0] == -1 and t[1] != -1 and n in (None, t[1])))
    if not ok:
        raise UnsupportedOpError(f"{where}: Reshape to {t} is not a flatten (that keeps the batch); only [0, -1], "
                                 "[0, n] or [-1, n] convert")


def validate(model: ir.Model, source: str) -> None:
    """Raise UnsupportedOpError / ModelFileError for the first node the passes could not convert."""
    for node in model.graph:
        if node.domain == QCFS_DOMAIN and node.op_type == QCFS_OP:
            check_qcfs_node(node, source)
            continue
        if node.domain in ("", "ai.onnx") and node.op_type in SUPPORTED_OPS:
            continue
        advice = ADVICE.get(node.op_type, _DEFAULT_ADVICE) if node.domain in ("", "ai.onnx") else _DEFAULT_ADVICE
        raise UnsupportedOpError(f"{source}: node '{node.name}' is a {_op_name(node)}, which cannot be converted; {advice}")
    for node in model.graph:  # after the op check: an unsupported op is the more useful first message
        if node.domain in ("", "ai.onnx") and node.op_type == "Reshape":
            check_reshape(node, source)
