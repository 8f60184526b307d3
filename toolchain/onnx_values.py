"""The values in an ONNX graph, checked before anything is computed from them.

Why: the importer folds BatchNorm into the conv before it (σ = sqrt(var + ε)) and the passes divide by λ;
a BatchNorm with negative variance, a NaN/inf initializer, a string tensor or an int64 weight would otherwise
become NaN weights and, at Quantize, int64-min integers: a network that runs and computes nothing the user
trained. One line names the file, the node, its op and the input.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from qcfs.errors import ModelFileError

FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})
# parameters the network computes with (must be float): op -> input positions
PARAMETER_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4),
}
# elementwise ops: a constant operand must be float when the op acts on a float activation (shape arithmetic
# on int64 values, e.g. Add(Shape(x), 1), stays allowed)
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Clip", "Max", "Min"})


def _where(source: str, node: ir.Node, i: int, value: ir.Value) -> str:
    return f"{source}: node '{node.name}' ({node.op_type}) input {i} '{value.name}'"


def check_initializers(model: ir.Model, source: str) -> None:
    """ModelFileError for the first constant input that is a string, non-finite, a non-float number where the
    op computes with it, or a BatchNormalization variance with var + ε ≤ 0."""
    for node in model.graph:
        if node.domain == "qcfs":
            continue  # a qcfs::QCFS node's λ is checked by validate.check_qcfs_node (nothing reads it before)
        numeric = PARAMETER_INPUTS.get(node.op_type, ())
        if node.op_type in ELEMENTWISE and any(
                v is not None and v.const_value is None and v.dtype in FLOAT_TYPES for v in node.inputs):
            numeric = tuple(range(len(node.inputs)))
        for i, value in enumerate(node.inputs):
            if value is None or value.const_value is None:
                continue
            dtype = value.const_value.dtype
            if dtype == ir.DataType.STRING:
                raise ModelFileError(f"{_where(source, node, i, value)} is a string tensor; a network's constants "
                                     "are numbers")
            try:
                arr = value.const_value.numpy()
            except Exception as err:  # malformed raw data of any kind
                raise ModelFileError(f"{_where(source, node, i, value)}: unreadable tensor data ({err})") from None
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise ModelFileError(f"{_where(source, node, i, value)} holds {bad} non-finite value(s) (NaN/inf)")
            if i in numeric and dtype not in FLOAT_TYPES:
                raise ModelFileError(f"{_where(source, node, i, value)} is a {dtype.name} tensor; the {node.op_type} "
                                     "parameters must be float")
        if node.op_type == "BatchNormalization" and len(node.inputs) > 4:
            _check_bn_variance(node, source)


def _check_bn_variance(node: ir.Node, source: str) -> None:
    var = node.inputs[4]
    if var is None or var.const_value is None:
        return
    eps_attr = node.attributes.get("epsilon")
    eps = float(eps_attr.as_float()) if eps_attr is not None else 1e-5
    v = var.const_value.numpy().astype(np.float64).reshape(-1)
    bad = np.flatnonzero(v + eps <= 0)
    if bad.size:
        raise ModelFileError(f"{source}: node '{node.name}' (BatchNormalization) input 4 '{var.name}': variance "
                             f"{v[bad[0]]:g} + epsilon {eps:g} ≤ 0 in channel {int(bad[0])} (variance must be ≥ 0)")
