"""Turn a plain ReLU network into a QCFS network by data calibration (`--calibrate relu`).

Each ReLU becomes qcfs::QCFS with the user's L, φ = 0.5 and λ = the p-th percentile of that layer's positive
ReLU outputs on training samples (the "robust normalization" of Rueckauer et al. 2017: zeros are excluded, as
they say nothing about the activation's range). All layers are measured in one pass of the original ReLU
network, so every λ describes the activations the layer was trained to produce.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from qcfs.data import dataset_info, load_split
from qcfs.errors import QCFSError
from qcfs.exporters.canonical import QCFS_DOMAIN

CALIB_SAMPLES = 2000  # "a few thousand": enough for a stable 99.9th percentile of millions of activations
MAX_VALUES_PER_LAYER = 4_000_000  # above this, positives are subsampled uniformly (memory bound)
BATCH = 128


def relu_nodes(model: ir.Model) -> list[ir.Node]:
    return [n for n in model.graph if n.op_type == "Relu" and n.domain in ("", "ai.onnx")]


def calibration_images(dataset: str, data_dir, mean, std, input_shape, samples: int = CALIB_SAMPLES) -> np.ndarray:
    """Evenly spaced training images (covers every class even if the files are sorted), normalized."""
    images, _ = load_split(dataset, "train", data_dir)
    if input_shape is not None and list(images.shape[1:]) != list(input_shape):
        raise QCFSError(f"--dataset {dataset} has images {list(images.shape[1:])}, but the model expects "
                        f"{list(input_shape)}")
    idx = np.unique(np.linspace(0, len(images) - 1, min(samples, len(images))).round().astype(np.int64))
    x = images[idx]
    c = x.shape[1]
    m = np.broadcast_to(np.asarray(mean, np.float32), (c,)).reshape(1, c, 1, 1)
    s = np.broadcast_to(np.asarray(std, np.float32), (c,)).reshape(1, c, 1, 1)
    return ((x - m) / s).astype(np.float32)


def measure_percentiles(model: ir.Model, relus: list[ir.Node], images: np.ndarray, percentile: float) -> list[float]:
    """p-th percentile of each ReLU's positive outputs, from onnxruntime on a copy exposing them as outputs."""
    proto = ir.to_proto(model)
    names = [r.outputs[0].name for r in relus]
    existing = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in existing)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    kept: list[list[np.ndarray]] = [[] for _ in names]
    rates: list[float] | None = None
    for start in range(0, len(images), BATCH):
        outs = sess.run(names, {input_name: images[start:start + BATCH]})
        if rates is None:
            per_sample = [o[0].size for o in outs]
            rates = [min(1.0, MAX_VALUES_PER_LAYER / (n * len(images))) for n in per_sample]
        for i, act in enumerate(outs):
            pos = act[act > 0]
            if rates[i] < 1.0:
                pos = pos[rng.random(pos.size) < rates[i]]
            kept[i].append(pos.astype(np.float32))
    result = []
    for values in kept:
        allv = np.concatenate(values) if values else np.empty(0, np.float32)
        # a layer that never fires outputs 0 under any λ (x ≤ 0 -> level 0); λ = 1 keeps it valid
        result.append(float(np.percentile(allv, percentile)) if allv.size else 1.0)
    return result


def replace_relus(model: ir.Model, relus: list[ir.Node], lambdas: list[float], L: int) -> None:
    """Swap each Relu for QCFS(x, λ) in place; hand-written: a rewrite rule cannot carry per-node data."""
    graph = model.graph
    for i, (relu, lam) in enumerate(zip(relus, lambdas)):
        name = relu.name or f"relu_{i}"
        lam_v = ir.Value(name=f"{name}.lam", shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT),
                         const_value=ir.tensor(np.array(lam, np.float32), name=f"{name}.lam"))
        graph.register_initializer(lam_v)
        node = ir.Node(QCFS_DOMAIN, "QCFS", [relu.inputs[0], lam_v],
                       attributes=[ir.AttrInt64("L", L), ir.AttrFloat32("shift", 0.5)], name=name, num_outputs=1)
        graph.insert_after(relu, node)
        relu.outputs[0].replace_all_uses_with(node.outputs[0], replace_graph_outputs=True)
        graph.remove(relu, safe=True)
    model.opset_imports.setdefault(QCFS_DOMAIN, 1)


def calibrate_relu(model: ir.Model, *, dataset: str, data_dir, L: int, percentile: float, normalize,
                   input_shape) -> tuple[int, list[float]]:
    """Replace every ReLU; returns (number replaced, λ per layer). `normalize` = (mean, std) or None (dataset's)."""
    if not 0 < percentile <= 100:
        raise QCFSError(f"--percentile must be in (0, 100], got {percentile}")
    relus = relu_nodes(model)
    if not relus:
        return 0, []
    info = dataset_info(dataset)
    mean, std = normalize if normalize is not None else (info.mean, info.std)
    images = calibration_images(dataset, data_dir, mean, std, input_shape)
    lambdas = measure_percentiles(model, relus, images, percentile)
    replace_relus(model, relus, lambdas, L)
    return len(relus), lambdas
