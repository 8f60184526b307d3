"""Any accepted ONNX file -> canonical QCFS ONNX (docs/canonical_onnx.md).

Pipeline, on onnx-ir: read defensively (onnx_file) -> version-convert to opset 20 (onnxscript) -> lift
Constant nodes, drop Identity (onnx-ir passes) -> normalise and fuse decomposed QCFS (rewrite_rules; before any
simplifier: constant folding or onnxsim would reassociate the Div/Mul/Add chain and destroy the pattern) ->
fold BatchNormalization into the Conv/Gemm before it, drop inference Dropout (onnxscript rules) -> optional
ReLU calibration -> input/output naming, λ naming -> validate -> attach the qcfs::QCFS function + metadata.

BatchNormalization that follows a Conv or Gemm is folded here, so foreign BN-unfused graphs come out like our
own exports (the torch exporter folds it); a BN anywhere else stays (the conversion passes fold it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import version_converter
from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules.common import (
    dropout_inference_rule, dropout_zero_rule, fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_gemm_rule,
)

from qcfs.errors import ModelFileError, QCFSError, UnsupportedOpError
from qcfs.exporters.canonical import (
    BATCH_DIM, DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, QCFS_DOMAIN, QCFS_OP, attach_qcfs_function,
    get_metadata, set_ir_version, set_metadata,
)
from qcfs.toolchain import calibrate as calib
from qcfs.toolchain.constant_fold import fold_constants
from qcfs.toolchain.onnx_file import read_onnx
from qcfs.toolchain.onnx_values import check_initializers
from qcfs.toolchain.rewrite_rules import NORMALIZE_RULES, QCFS_RULES, is_qcfs
from qcfs.toolchain.validate import validate

MIN_OPSET = 13
CLEANUP_RULES = pattern.RewriteRuleSet(
    [fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_gemm_rule, dropout_inference_rule, dropout_zero_rule]
)
_SOFTMAX_OPS = ("Softmax", "LogSoftmax")


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _to_ir(proto: onnx.ModelProto, source: str) -> ir.Model:
    """Deserialize and bring to opset 20. Our qcfs::QCFS function is dropped first (re-attached at the end):
    the version converter inlines every function, which would decompose the very node we want to keep."""
    opset = _default_opset(proto)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ModelFileError(f"{source}: ONNX opset {opset} is not supported; re-export with opset 13..{newest}")
    keep = [f for f in proto.functions if not (f.domain == QCFS_DOMAIN and f.name == QCFS_OP)]
    del proto.functions[:]
    proto.functions.extend(keep)
    model = ir.serde.deserialize_model(proto)
    vc_logger = logging.getLogger(version_converter.__name__)
    level = vc_logger.level
    vc_logger.setLevel(logging.ERROR)  # its "falling back to the onnx C API" warning is noise for CLI users
    try:
        if opset != DEFAULT_OPSET or model.functions:
            version_converter.convert_version(model, DEFAULT_OPSET, fallback=True)
    except Exception as err:  # the converters raise many types; all mean "cannot bring this file to opset 20"
        raise ModelFileError(f"{source}: cannot convert opset {opset} to {DEFAULT_OPSET} ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:150] if str(err) else ''})") from None
    finally:
        vc_logger.setLevel(level)
    if model.opset_imports.get("", DEFAULT_OPSET) != DEFAULT_OPSET:
        raise ModelFileError(f"{source}: cannot convert opset {opset} to {DEFAULT_OPSET}")
    return model


def _prepare(model: ir.Model) -> None:
    """Constants as initializers and no Identity, so constant operands of the patterns are visible."""
    ir.passes.Sequential(
        common_passes.RemoveInitializersFromInputsPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.IdentityEliminationPass(),
    )(model)


def _fuse(model: ir.Model, source: str) -> None:
    try:
        NORMALIZE_RULES.apply_to_model(model)
        QCFS_RULES.apply_to_model(model)
    except QCFSError as err:
        raise ModelFileError(f"{source}: {err}") from None
    CLEANUP_RULES.apply_to_model(model)
    ir.passes.Sequential(common_passes.IdentityEliminationPass(), common_passes.RemoveUnusedNodesPass())(model)


def _drop_trailing_softmax(model: ir.Model) -> str | None:
    """A Softmax producing the output is monotone per sample: dropping it keeps every argmax. Returns its op."""
    graph = model.graph
    if len(graph.outputs) != 1:
        return None
    out = graph.outputs[0]
    node = out.producer()
    if node is None or node.op_type not in _SOFTMAX_OPS or node.domain not in ("", "ai.onnx"):
        return None
    src = node.inputs[0]
    if src is None or src.is_graph_input() or len(src.uses()) != 1:
        return None
    if not _per_class(node, src):
        return None  # e.g. Softmax(axis=0) normalises over the batch: not argmax-preserving; validate refuses it
    graph.outputs[0] = src
    graph.remove(node, safe=True)
    return node.op_type


def _per_class(node: ir.Node, src: ir.Value) -> bool:
    """True only when the (Log)Softmax normalises each sample over its classes: its input is [batch, classes]
    (known shape, or produced by a Gemm/Flatten) and its axis is 1 / -1. Then it is strictly monotone per
    sample and dropping it keeps every argmax; any other axis mixes samples or classes with positions."""
    attr = node.attributes.get("axis")
    axis = attr.as_int() if attr is not None else -1
    if src.shape is not None:
        rank = len(src.shape)
    else:
        producer = src.producer()
        rank = 2 if producer is not None and producer.op_type in ("Gemm", "Flatten") else None
    return rank == 2 and axis in (1, -1)


def _canonical_io(model: ir.Model, source: str) -> tuple[list[int] | None, int | None]:
    """One image input `input` [batch,C,H,W] and one output `logits` [batch,classes]; returns (CHW, classes)."""
    graph = model.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOpError(f"{source}: expected one image input and one output, found {len(graph.inputs)} "
                                 f"inputs and {len(graph.outputs)} outputs")
    x, y = graph.inputs[0], graph.outputs[0]
    if x.shape is None or len(x.shape) != 4 or x.dtype != ir.DataType.FLOAT:
        raise UnsupportedOpError(f"{source}: input '{x.name}' must be float32 [batch, C, H, W], got "
                                 f"{x.dtype} {x.shape}")
    fixed_batch = x.shape[0] if isinstance(x.shape[0], int) else None
    if fixed_batch is not None:
        _free_fixed_batch(model, fixed_batch)
    x.name, y.name = INPUT_NAME, OUTPUT_NAME
    x.shape = ir.Shape([BATCH_DIM, *x.shape[1:]])
    if y.shape is not None and len(y.shape) >= 1:
        y.shape = ir.Shape([BATCH_DIM, *y.shape[1:]])
    chw = [d if isinstance(d, int) else None for d in x.shape[1:]]
    classes = y.shape[-1] if y.shape is not None and len(y.shape) == 2 and isinstance(y.shape[-1], int) else None
    return (chw if None not in chw else None), classes


def _free_fixed_batch(model: ir.Model, batch: int) -> None:
    """Make a graph exported with a fixed batch size run on any batch: flatten Reshapes that hard-code the
    batch (shape [N, k] -> [-1, k], [N, -1] -> [0, -1]) and forget stale intermediate shapes. Hand-written:
    no library pass relaxes a fixed batch dimension."""
    for node in model.graph:
        if node.op_type == "Reshape" and node.inputs[1] is not None and node.inputs[1].const_value is not None:
            shape = node.inputs[1].const_value.numpy().tolist()
            if len(shape) == 2 and shape[0] == batch:
                new = [0, -1] if shape[1] == -1 else [-1, shape[1]]
                const = ir.Value(name=f"{node.name or 'reshape'}_shape_any_batch",
                                 const_value=ir.tensor(new, dtype=ir.DataType.INT64))
                model.graph.register_initializer(const)
                node.replace_input_with(1, const)
        for out in node.outputs:
            if not out.is_graph_output():
                out.shape = None


def _name_lambdas(model: ir.Model) -> None:
    """Every QCFS node gets its own scalar λ initializer named `<layer>.lam` (node names kept where they exist).
    Hand-written: naming is a convention of the canonical form, not a graph transformation."""
    graph = model.graph
    taken = {n.name for n in graph if n.name}
    for i, node in enumerate(n for n in graph if is_qcfs(n)):
        if not node.name or node.name.startswith("node_"):
            base = f"qcfs_{i}"
            while base in taken:
                base += "_"
            node.name = base
            taken.add(base)
        if len(node.inputs) != 2 or node.inputs[1] is None or node.inputs[1].const_value is None \
                or node.inputs[1].const_value.numpy().size < 1:
            continue  # validate() reports it (missing λ)
        lam = node.inputs[1]
        want = f"{node.name}.lam"
        if lam is not None and lam.name == want and len(lam.uses()) == 1:
            continue
        if lam is None or lam.const_value is None:
            continue  # validate() reports it
        arr = lam.const_value.numpy().astype("float32")
        arr = arr.reshape(()) if arr.size == 1 else arr  # per-channel λ keeps its broadcasting shape
        fresh = ir.Value(name=want, shape=ir.Shape(list(arr.shape)), type=ir.TensorType(ir.DataType.FLOAT),
                         const_value=ir.tensor(arr, name=want))
        if want in graph.initializers:
            graph.initializers.pop(want)
        graph.register_initializer(fresh)
        node.replace_input_with(1, fresh)
    for name in [n for n, v in graph.initializers.items() if not v.uses() and not v.is_graph_output()]:
        del graph.initializers[name]


def _uniform(values: list, default=None):  # type: ignore[no-untyped-def]
    return values[0] if values and all(v == values[0] for v in values) else (values if values else default)


def _metadata(model: ir.Model, old: dict[str, str], *, chw, classes, dataset, calibrated, normalize,
              dropped, source_opset: int) -> dict:
    qnodes = [n for n in model.graph if is_qcfs(n)]
    Ls = [n.attributes["L"].as_int() for n in qnodes]
    phis = [round(n.attributes["shift"].as_float(), 7) if "shift" in n.attributes else 0.5 for n in qnodes]
    meta: dict = {
        "qcfs.model": old.get("qcfs.model", "foreign"),
        "qcfs.dataset": old.get("qcfs.dataset", dataset),
        "qcfs.input_shape": chw,
        "qcfs.classes": classes,
        "qcfs.L": _uniform(Ls),
        "qcfs.phi": _uniform(phis),
        "qcfs.calibrated": calibrated or old.get("qcfs.calibrated", "false"),
        "qcfs.opset": DEFAULT_OPSET,
    }
    if normalize is not None:
        meta["qcfs.normalize.mean"], meta["qcfs.normalize.std"] = list(normalize[0]), list(normalize[1])
    if source_opset != DEFAULT_OPSET:
        meta["qcfs.source_opset"] = source_opset
    if dropped:
        meta["qcfs.dropped_output_op"] = dropped  # argmax unchanged; logits are pre-softmax scores
    return meta


def _normalize_from(old: dict[str, str]):  # type: ignore[no-untyped-def]
    import json

    if "qcfs.normalize.mean" in old and "qcfs.normalize.std" in old:
        try:
            return json.loads(old["qcfs.normalize.mean"]), json.loads(old["qcfs.normalize.std"])
        except ValueError:
            return None
    return None


def load_canonical(
    path: str | os.PathLike,
    *,
    calibrate: str | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    L: int = 4,
    percentile: float = 99.9,
) -> onnx.ModelProto:
    """Read, canonicalise and validate an ONNX file. Raises QCFSError subclasses (one line) on bad input."""
    source = str(path)
    if calibrate not in (None, "relu"):
        raise QCFSError(f"unknown calibration {calibrate!r}; use 'relu'")
    if calibrate and not dataset:
        raise QCFSError("--calibrate relu needs --dataset (samples to measure activations on)")
    if isinstance(L, bool) or int(L) != L or L < 1:
        raise QCFSError(f"--L must be a positive integer, got {L}")
    proto = read_onnx(Path(path))
    old_meta = get_metadata(proto)
    source_opset = _default_opset(proto)
    model = _to_ir(proto, source)
    _prepare(model)
    check_initializers(model, source)
    fold_constants(model)  # after the value checks: folding must not turn a bad constant into a silent one
    _prepare(model)
    _fuse(model, source)
    dropped = _drop_trailing_softmax(model)
    chw, classes = _canonical_io(model, source)
    normalize = _normalize_from(old_meta)
    calibrated = None
    if calibrate == "relu" and calib.relu_nodes(model):
        from qcfs.data import dataset_info

        if normalize is None:
            info = dataset_info(dataset)  # type: ignore[arg-type]
            normalize = (list(info.mean), list(info.std))
        calib.calibrate_relu(model, dataset=dataset, data_dir=data_dir, L=int(L), percentile=percentile,  # type: ignore[arg-type]
                             normalize=normalize, input_shape=chw)
        calibrated = f"relu-p{percentile:g}"
    _name_lambdas(model)
    common_passes.TopologicalSortPass()(model)
    validate(model, source)
    out = ir.to_proto(model)
    attach_qcfs_function(out, DEFAULT_OPSET)
    set_ir_version(out)
    set_metadata(out, _metadata(model, old_meta, chw=chw, classes=classes, dataset=dataset if calibrated else None,
                                calibrated=calibrated, normalize=normalize, dropped=dropped,
                                source_opset=source_opset))
    _check_liftable(out, source)
    return out


def _check_liftable(model: onnx.ModelProto, source: str) -> None:
    """The canonical file must never hold what the converter refuses (a Reshape that is not a flatten of the
    actual input shape, say): lift it once, as conversion would, so --backend onnx refuses it too."""
    from qcfs.toolchain.lift import lift

    try:
        lift(model)
    except QCFSError as err:
        raise UnsupportedOpError(f"{source}: {err}") from None
