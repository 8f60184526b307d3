"""torch -> canonical QCFS ONNX (docs/canonical_onnx.md) with the dynamo exporter.

Every QCFS module becomes ONE `qcfs::QCFS` node. Route: while exporting, QCFS.forward calls
`torch.onnx.ops.symbolic("qcfs::QCFS", ...)` (public since torch 2.8), which the dynamo exporter emits as a
bare node; a translation-table onnxscript function would be inlined (decomposed) by the exporter's version
conversion. The qcfs::QCFS FunctionProto is attached afterwards so onnxruntime runs the file as is.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import onnx
import onnx_ir as ir
import torch
from torch import nn

from qcfs.data import DATASETS
from qcfs.errors import QCFSError
from qcfs.exporters.canonical import (
    BATCH_DIM, INPUT_NAME, OUTPUT_NAME, QCFS_DOMAIN, QCFS_OP, QCFS_VERSION, attach_qcfs_function,
    qcfs_function_proto, set_ir_version, set_metadata,
)
from qcfs.frontend import export_hooks
from qcfs.frontend.checkpoint import load_checkpoint
from qcfs.frontend.models import ModelConfig
from qcfs.frontend.qcfs_act import QCFS

__all__ = ["export_checkpoint", "export_module", "export_proto", "export_user_module", "load_checkpoint",
           "qcfs_function_proto"]

SUPPORTED_OPSETS = range(13, 21)  # the qcfs function body needs opset >= 13; torch's exporter emits <= 20 here

# Known-harmless exporter noise on every CLI run (torch 2.8+): the op registry warns once per torchvision op
# when torchvision is absent (we never use it), and pytree pickling emits a FutureWarning about LeafSpec.
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"
_TORCHVISION_SKIP = "torchvision is not installed"
_LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def _drop_torchvision_skip(record: logging.LogRecord) -> bool:
    """Logging filter: False (drop) only for the 'torchvision is not installed. Skipping ...' records."""
    return not str(record.msg).startswith(_TORCHVISION_SKIP)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence exactly the two known messages above during export; every other warning still shows."""
    logger = logging.getLogger(_REGISTRATION_LOGGER)
    logger.addFilter(_drop_torchvision_skip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LEAFSPEC_WARNING, category=FutureWarning)
            yield
    finally:
        logger.removeFilter(_drop_torchvision_skip)


def _qcfs_symbolic(x: torch.Tensor, lam: torch.Tensor, L: int, phi: float) -> torch.Tensor:
    """Stand-in for QCFS.forward during export: one opaque qcfs::QCFS node, λ as its second input."""
    return torch.onnx.ops.symbolic(
        f"{QCFS_DOMAIN}::{QCFS_OP}", (x, lam), {"L": int(L), "shift": float(phi)},
        dtype=x.dtype, shape=x.shape, version=QCFS_VERSION,
    )


def _config(meta: Mapping[str, Any]) -> ModelConfig:
    cfg = meta["config"]
    return cfg if isinstance(cfg, ModelConfig) else ModelConfig(**cfg)


def _metadata(cfg: ModelConfig, meta: Mapping[str, Any], opset: int) -> dict[str, Any]:
    dataset = meta.get("dataset")
    norm = meta.get("normalize")
    if norm is None and dataset in DATASETS:  # training always normalizes with the dataset's statistics
        norm = {"mean": DATASETS[dataset].mean, "std": DATASETS[dataset].std}
    return {
        "qcfs.model": cfg.arch,
        "qcfs.dataset": dataset,
        "qcfs.input_shape": [cfg.in_channels, cfg.image_size, cfg.image_size],
        "qcfs.classes": cfg.num_classes,
        "qcfs.normalize.mean": list(map(float, norm["mean"])) if norm else None,
        "qcfs.normalize.std": list(map(float, norm["std"])) if norm else None,
        "qcfs.L": cfg.L,
        "qcfs.phi": cfg.phi,
        "qcfs.calibrated": "false",
        "qcfs.opset": opset,
    }


def _module_path(node: ir.Node) -> str | None:
    """The QCFS module that produced `node`, from the exporter's name-scope metadata (e.g. 'features.2')."""
    scopes = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if not scopes:
        return None
    import ast

    names = ast.literal_eval(scopes)
    return names[-2] if len(names) >= 2 else None


def _name_lambdas(model_ir: ir.Model, module: nn.Module) -> None:
    """Give every QCFS node its own λ initializer named after its layer (`features.2.lam`).

    Hand-written because the exporter's optimizer merges equal-valued initializers (all λ start at the same
    value), so the node's λ input may carry another layer's name. Values come from the module itself.
    """
    graph = model_ir.graph
    fresh: list[ir.Value] = []
    for i, node in enumerate(n for n in graph if n.domain == QCFS_DOMAIN and n.op_type == QCFS_OP):
        path = _module_path(node)
        sub = module.get_submodule(path) if path is not None else None
        if not isinstance(sub, QCFS):  # should not happen; keep the exported value under a unique name
            path, lam = f"qcfs_{i}", node.inputs[1].const_value.numpy()
        else:
            lam = sub.lam.detach().float().numpy()
        name = f"{path}.lam"
        value = ir.Value(name=name, shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT),
                         const_value=ir.tensor(lam.astype("float32").reshape(()), name=name))
        node.replace_input_with(1, value)
        node.name = path
        fresh.append(value)
    for name in [n for n, v in graph.initializers.items() if not v.uses() and not v.is_graph_output()]:
        del graph.initializers[name]
    for value in fresh:
        graph.register_initializer(value)


def export_proto(model: nn.Module, meta: Mapping[str, Any], opset: int = 20) -> onnx.ModelProto:
    """Export an eval-mode zoo model to a canonical ModelProto (nothing written)."""
    cfg = _config(meta)
    example = torch.zeros(2, cfg.in_channels, cfg.image_size, cfg.image_size)
    return _export(model.eval(), example, _metadata(cfg, meta, opset), opset)


def export_user_module(model: nn.Module, example_input: Any, *, normalize: tuple[Any, Any] | None = None,
                       dataset: str | None = None, opset: int = 20) -> onnx.ModelProto:
    """Export any module built from QCFS activations (not only zoo models) to a canonical ModelProto.

    `example_input` ([N, C, H, W] or one [C, H, W] image) gives the input shape only; the batch axis is
    exported dynamic. `normalize` = (mean, std) per channel when the module expects normalized inputs (the
    simulators then feed images in [0, 1] through it); None: pixels in [0, 1] go in as they are."""
    example = torch.as_tensor(example_input)
    if example.ndim == 3:
        example = example.unsqueeze(0)
    if example.ndim != 4 or not example.is_floating_point():
        raise QCFSError(f"example_input must be float images [N, C, H, W] or [C, H, W], got a {example.dtype} "
                        f"tensor of shape {tuple(example.shape)}")
    acts = [m for m in model.modules() if isinstance(m, QCFS)]
    if not acts:
        raise QCFSError(f"{type(model).__name__}: no QCFS activation in the module; qcfs converts QCFS networks "
                        f"(qcfs.frontend.qcfs_act.QCFS in place of every ReLU)")
    model = model.eval()
    chw = [int(d) for d in example.shape[1:]]
    example = torch.zeros(2, *chw)  # batch 2: a batch of 1 would be specialized, not exported as a dynamic axis
    with torch.no_grad():
        classes = int(model(example).reshape(2, -1).shape[1])
    meta: dict[str, Any] = {
        "qcfs.model": type(model).__name__, "qcfs.dataset": dataset, "qcfs.input_shape": chw,
        "qcfs.classes": classes, "qcfs.L": acts[0].L if all(a.L == acts[0].L for a in acts) else None,
        "qcfs.phi": acts[0].phi, "qcfs.calibrated": "false", "qcfs.opset": opset,
    }
    if normalize is not None:
        meta["qcfs.normalize.mean"] = [float(v) for v in np.atleast_1d(np.asarray(normalize[0], np.float64))]
        meta["qcfs.normalize.std"] = [float(v) for v in np.atleast_1d(np.asarray(normalize[1], np.float64))]
    return _export(model, example, meta, opset)


def _export(model: nn.Module, example: torch.Tensor, metadata: Mapping[str, Any], opset: int) -> onnx.ModelProto:
    if opset not in SUPPORTED_OPSETS:
        raise QCFSError(f"--opset must be in {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}, got {opset}")
    with export_hooks.use_op(_qcfs_symbolic), torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
            optimize=True, verbose=False,
        )
    model_ir = program.model
    _name_lambdas(model_ir, model)
    proto = ir.to_proto(model_ir)
    attach_qcfs_function(proto, opset)
    set_ir_version(proto)
    set_metadata(proto, metadata)
    proto.producer_name = "qcfs"
    return proto


def export_module(model: nn.Module, meta: Mapping[str, Any], out: Path, opset: int = 20) -> Path:
    """Export and save with the weights inside the file. `meta` holds "config" (ModelConfig or its dict) and
    optionally "dataset" and "normalize" {"mean": [...], "std": [...]}, as in a checkpoint."""
    proto = export_proto(model, meta, opset)
    out = Path(out)
    try:
        onnx.save_model(proto, str(out))
    except OSError as err:
        raise QCFSError(f"{out}: cannot write ({err.strerror or err})") from None
    return out


def export_checkpoint(ckpt: Path, out: Path, opset: int = 20) -> Path:
    """qcfs-train checkpoint -> canonical ONNX file."""
    model, meta = load_checkpoint(ckpt)
    return export_module(model, meta, out, opset)
