"""`qcfs-export --backend onnx --opset N`: write the canonical graph at another ONNX opset, or refuse.

Why a check and not just a converter call: onnx's version converter silently drops the qcfs::QCFS
FunctionProto and has no adapters for some ops (e.g. Reshape 14 -> 13), so a converted file may not load or
may compute something else. We convert, re-attach our function at the target opset, then require that the
checker passes and that onnxruntime gives the same logits as the opset-20 graph on random inputs; anything
else is a one-line refusal naming the opset.
"""

from __future__ import annotations

import numpy as np
import onnx

from qcfs.errors import QCFSError
from qcfs.exporters.canonical import DEFAULT_OPSET, attach_qcfs_function, set_ir_version, set_metadata

SUPPORTED_OPSETS = range(13, DEFAULT_OPSET + 1)  # the qcfs::QCFS function body needs opset >= 13


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise QCFSError(f"--opset {opset}: qcfs writes ONNX opsets {SUPPORTED_OPSETS.start}.."
                        f"{SUPPORTED_OPSETS.stop - 1} only")


def _logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def convert_opset(canon: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The canonical model at `opset`, proven to compute the same logits; QCFSError if it cannot be written."""
    check_opset(opset)
    current = next((o.version for o in canon.opset_import if o.domain in ("", "ai.onnx")), DEFAULT_OPSET)
    if opset == current:
        return canon
    from onnx import version_converter

    try:
        out = version_converter.convert_version(canon, opset)
        attach_qcfs_function(out, opset)
        set_ir_version(out)
        set_metadata(out, {"qcfs.opset": opset})
        onnx.checker.check_model(out)
        dims = [d.dim_value or 2 for d in canon.graph.input[0].type.tensor_type.shape.dim]
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        same = np.array_equal(_logits(canon, x), _logits(out, x))
    except Exception as err:  # noqa: BLE001 - converter, checker and runtime raise many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1][:200]
        raise QCFSError(f"--opset {opset}: this model cannot be written at opset {opset} ({first}); "
                        f"use --opset {current}") from None
    if not same:
        raise QCFSError(f"--opset {opset}: the converted graph computes different logits; use --opset {current}")
    return out
