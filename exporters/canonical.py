"""The canonical QCFS ONNX form (docs/canonical_onnx.md) in code: the qcfs::QCFS FunctionProto, opsets,
metadata keys and the last touches every canonical model gets.

Shared by the torch exporter and the importer (qcfs.toolchain.importer), so it imports onnx only, never torch.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import onnx
from onnx import TensorProto, helper

QCFS_DOMAIN = "qcfs"
QCFS_OP = "QCFS"
QCFS_VERSION = 1
DEFAULT_OPSET = 20
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"

META_KEYS = (
    "qcfs.model", "qcfs.dataset", "qcfs.input_shape", "qcfs.classes", "qcfs.normalize.mean",
    "qcfs.normalize.std", "qcfs.L", "qcfs.phi", "qcfs.calibrated", "qcfs.opset",
)


def qcfs_function_proto(opset: int = DEFAULT_OPSET) -> onnx.FunctionProto:
    """Model-local function `qcfs::QCFS(X, lambda) <L: int, shift: float = 0.5>` in standard ops.

    The body evaluates in the order of qcfs.frontend.qcfs_act.qcfs_reference (X/λ → clip → ·L + shift →
    floor → /L → ·λ), not as the doc's algebraic form X·L/λ: both are equal for 0 ≤ shift < 1, but only the
    same float32 rounding order makes onnxruntime's floor decisions agree with torch's at level boundaries.
    float32 only (the canonical form is float32), so Cast, not CastLike: valid from opset 13 on.
    """
    n = helper.make_node
    L_attr = helper.make_attribute_ref("value_int", onnx.AttributeProto.INT, ref_attr_name="L")
    shift_attr = helper.make_attribute_ref("value_float", onnx.AttributeProto.FLOAT, ref_attr_name="shift")
    c_L_int = onnx.NodeProto(op_type="Constant", output=["L_int"])
    c_L_int.attribute.append(L_attr)
    c_shift = onnx.NodeProto(op_type="Constant", output=["shift_f"])
    c_shift.attribute.append(shift_attr)
    nodes = [
        c_L_int,
        n("Cast", ["L_int"], ["L_f"], to=TensorProto.FLOAT),
        c_shift,
        n("Constant", [], ["zero"], value_float=0.0),
        n("Constant", [], ["one"], value_float=1.0),
        n("Div", ["X", "lambda"], ["x_over_lam"]),
        n("Clip", ["x_over_lam", "zero", "one"], ["clipped"]),
        n("Mul", ["clipped", "L_f"], ["scaled"]),
        n("Add", ["scaled", "shift_f"], ["shifted"]),
        n("Floor", ["shifted"], ["level"]),
        n("Div", ["level", "L_f"], ["frac"]),
        n("Mul", ["frac", "lambda"], ["Y"]),
    ]
    fn = helper.make_function(
        QCFS_DOMAIN, QCFS_OP, ["X", "lambda"], ["Y"], nodes,
        [helper.make_opsetid("", opset)], attributes=["L"],
        doc_string="Y = lambda * Clip(Floor(Clip(X / lambda, 0, 1) * L + shift) / L, 0, 1) (QCFS, Bu et al. 2022)",
    )
    fn.attribute_proto.append(helper.make_attribute("shift", 0.5))
    return fn


def attach_qcfs_function(model: onnx.ModelProto, opset: int) -> None:
    """Replace any qcfs::QCFS function by ours and declare the qcfs opset (idempotent)."""
    keep = [f for f in model.functions if not (f.domain == QCFS_DOMAIN and f.name == QCFS_OP)]
    del model.functions[:]
    model.functions.extend(keep + [qcfs_function_proto(opset)])
    if not any(o.domain == QCFS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(QCFS_DOMAIN, QCFS_VERSION))


def set_ir_version(model: onnx.ModelProto) -> None:
    """IR version: onnx's lowest that supports the model's opsets (opset 20 -> IR 9), so older runtimes load it."""
    std = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    model.ir_version = max(9, helper.find_min_ir_version_for(std, ignore_unknown=True))


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, Any]) -> None:
    """Write qcfs.* metadata_props (strings; lists/tuples as JSON), replacing existing keys of the same name."""
    values = {k: (json.dumps(list(v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in meta.items()
              if v is not None}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for k, v in kept + sorted(values.items()):
        model.metadata_props.add(key=k, value=v)


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def qcfs_nodes(nodes: Iterable[onnx.NodeProto]) -> list[onnx.NodeProto]:
    return [n for n in nodes if n.domain == QCFS_DOMAIN and n.op_type == QCFS_OP]
