"""Canonical QCFS ONNX graphs built by hand with onnx.helper, small enough to check every pass against
onnxruntime in milliseconds. Weights are random (seeded); λ is set from the data so QCFS levels are used."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qcfs.exporters.canonical import qcfs_function_proto, set_ir_version, set_metadata

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.3, 0.2)


class Builder:
    """Append canonical ONNX nodes; tracks per-tensor shapes (without batch) to size the next layer."""

    def __init__(self, shape: tuple[int, int, int] = (3, 8, 8), L: int = 4, seed: int = 0,
                 normalize: bool = True) -> None:
        self.rng = np.random.default_rng(seed)
        self.in_shape, self.L, self.normalize = shape, L, normalize
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shape: dict[str, tuple[int, ...]] = {"input": shape}
        self.n = 0

    # --- plumbing -----------------------------------------------------------------------------------
    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base: str, arr: np.ndarray) -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], name: str | None = None,
             domain: str = "", **attrs) -> str:
        name = name or self._name(op.lower())
        out = name + ":out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        self.shape[out] = shape
        return out

    # --- layers -------------------------------------------------------------------------------------
    def conv(self, x: str, cout: int, k: int = 3, stride: int = 1, pad: int = 1, group: int = 1,
             bias: bool = False, name: str | None = None) -> str:
        c, h, w = self.shape[x]
        wt = self.rng.normal(0, 1.0 / np.sqrt(c // group * k * k), (cout, c // group, k, k))
        ins = [x, self.init("w", wt)] + ([self.init("b", self.rng.normal(0, 0.1, cout))] if bias else [])
        out = ((h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
        return self.node("Conv", ins, (cout,) + out, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=group)

    def bn(self, x: str, name: str | None = None) -> str:
        c = self.shape[x][0]
        r = self.rng
        ins = [x, self.init("g", r.uniform(0.5, 1.5, c)), self.init("beta", r.normal(0, 0.2, c)),
               self.init("mu", r.normal(0, 0.2, c)), self.init("var", r.uniform(0.5, 1.5, c))]
        return self.node("BatchNormalization", ins, self.shape[x], name, epsilon=1e-5)

    def qcfs(self, x: str, lam: float | None = None, name: str | None = None) -> str:
        lam = float(self.rng.uniform(1.0, 2.0)) if lam is None else lam
        return self.node("QCFS", [x, self.init("lam", np.float32(lam))], self.shape[x], name, domain="qcfs",
                         L=self.L, shift=0.5)

    def avgpool(self, x: str, k: int = 2, stride: int | None = None, pad: int = 0, include_pad: int = 0,
                name: str | None = None) -> str:
        c, h, w = self.shape[x]
        s = stride or k
        out = (c, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)
        return self.node("AveragePool", [x], out, name, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4,
                         count_include_pad=include_pad)

    def gap(self, x: str) -> str:
        return self.node("GlobalAveragePool", [x], (self.shape[x][0], 1, 1))

    def reduce_mean(self, x: str, keepdims: int = 1) -> str:
        c = self.shape[x][0]
        axes = self.init("axes", np.array([2, 3]))
        self.inits[-1] = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), axes)
        return self.node("ReduceMean", [x, axes], (c, 1, 1) if keepdims else (c,), keepdims=keepdims)

    def flatten(self, x: str) -> str:
        return self.node("Flatten", [x], (int(np.prod(self.shape[x])),), axis=1)

    def reshape(self, x: str) -> str:
        shape = self._name("shape")
        self.inits.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), shape))
        return self.node("Reshape", [x, shape], (int(np.prod(self.shape[x])),))

    def gemm(self, x: str, nout: int, name: str | None = None) -> str:
        nin = self.shape[x][0]
        w = self.rng.normal(0, 1.0 / np.sqrt(nin), (nout, nin))
        ins = [x, self.init("W", w), self.init("c", self.rng.normal(0, 0.1, nout))]
        return self.node("Gemm", ins, (nout,), name, transB=1)

    def matmul_add(self, x: str, nout: int, name: str | None = None) -> str:
        nin = self.shape[x][0]
        mm = self.node("MatMul", [x, self.init("W", self.rng.normal(0, 1.0 / np.sqrt(nin), (nin, nout)))],
                       (nout,), name)
        return self.node("Add", [mm, self.init("b", self.rng.normal(0, 0.1, nout))], (nout,))

    def add(self, a: str, b: str, name: str | None = None) -> str:
        return self.node("Add", [a, b], self.shape[a], name)

    def unary(self, op: str, x: str, name: str | None = None, **attrs) -> str:
        return self.node(op, [x], self.shape[x], name, **attrs)

    # --- result -------------------------------------------------------------------------------------
    def model(self, out: str, model_name: str = "by-hand") -> onnx.ModelProto:
        self.nodes[-1].output[0] = "logits" if self.nodes[-1].output[0] == out else self.nodes[-1].output[0]
        assert self.nodes[-1].output[0] == "logits", "the last node must produce the output"
        c, h, w = self.in_shape
        graph = helper.make_graph(
            self.nodes, model_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c, h, w])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", self.shape[out][0]])],
            initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("qcfs", 1)],
                              functions=[qcfs_function_proto(20)])
        set_ir_version(m)
        meta = {"qcfs.model": model_name, "qcfs.dataset": "synthetic", "qcfs.input_shape": list(self.in_shape),
                "qcfs.classes": self.shape[out][0], "qcfs.L": self.L, "qcfs.phi": 0.5, "qcfs.calibrated": "false"}
        if self.normalize:
            meta.update({"qcfs.normalize.mean": list(MEAN[:c]), "qcfs.normalize.std": list(STD[:c])})
        set_metadata(m, meta)
        onnx.checker.check_model(m)
        return m


# --- data and reference -------------------------------------------------------------------------------
def images(model: onnx.ModelProto, n: int = 16, seed: int = 1) -> np.ndarray:
    shape = json.loads({p.key: p.value for p in model.metadata_props}["qcfs.input_shape"])
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape))


def normalized(model: onnx.ModelProto, images01: np.ndarray) -> np.ndarray:
    meta = {p.key: p.value for p in model.metadata_props}
    c = images01.shape[1]
    mean = np.asarray(json.loads(meta.get("qcfs.normalize.mean", "[0]")), dtype=np.float64)
    std = np.asarray(json.loads(meta.get("qcfs.normalize.std", "[1]")), dtype=np.float64)
    return (images01 - np.broadcast_to(mean, (c,)).reshape(1, c, 1, 1)) / np.broadcast_to(std, (c,)).reshape(1, c, 1, 1)


def run_ort(model: onnx.ModelProto, x_normalized: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x_normalized.astype(np.float32)})[0].astype(np.float64)


def calibrate_lambdas(model: onnx.ModelProto, n: int = 32) -> onnx.ModelProto:
    """Set each λ to the 99th percentile of its input on random images, as training would, so levels are used."""
    x = normalized(model, images(model, n, seed=7))
    by_name = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "QCFS":
            continue
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend([helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None)])
        pre = run_ort(probe, x)
        lam = max(float(np.percentile(pre, 99)), 0.05)
        by_name[node.input[1]].CopyFrom(numpy_helper.from_array(np.float32(lam), node.input[1]))
    return model


# --- the zoo ------------------------------------------------------------------------------------------
def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    """conv-BN-QCFS-avgpool-conv-BN-QCFS-flatten-gemm on 3×8×8."""
    b = Builder(seed=seed)
    x = b.qcfs(b.bn(b.conv("input", 8, name="/features/features.0/Conv"), name="/features/features.1/BatchNormalization"),
               name="/features/features.2/QCFS")
    x = b.avgpool(x, 2, name="/features/features.3/AveragePool")
    x = b.qcfs(b.bn(b.conv(x, 8, name="/features/features.4/Conv")), name="/features/features.6/QCFS")
    x = b.gemm(b.flatten(x), 10, name="/classifier/classifier.1/Gemm")
    return calibrate_lambdas(b.model(x, "tiny_cnn"))


def vgg_block(seed: int = 1) -> onnx.ModelProto:
    """Two conv blocks with AvgPool folding, a hidden Gemm+QCFS+Dropout and a Gemm readout."""
    b = Builder(seed=seed)
    x = b.qcfs(b.bn(b.conv("input", 8, name="conv1")))
    x = b.qcfs(b.bn(b.conv(x, 8, name="conv2")))
    x = b.avgpool(x, 2)
    x = b.qcfs(b.bn(b.conv(x, 16, name="conv3")))
    x = b.avgpool(x, 2)
    x = b.qcfs(b.gemm(b.flatten(x), 32, name="fc1"))
    x = b.unary("Dropout", x)
    x = b.gemm(x, 10, name="fc2")
    return calibrate_lambdas(b.model(x, "vgg_block"))


def resnet_block(seed: int = 2) -> onnx.ModelProto:
    """Stem, a basic block with identity shortcut, a stride-2 block with conv1×1+BN shortcut, GAP, fc."""
    b = Builder(seed=seed)
    stem = b.qcfs(b.bn(b.conv("input", 8, name="/stem/stem.0/Conv")), name="/stem/stem.2/QCFS")
    h = b.qcfs(b.bn(b.conv(stem, 8, name="/layer1/layer1.0/conv1/Conv")), name="/layer1/layer1.0/act1/QCFS")
    h = b.bn(b.conv(h, 8, name="/layer1/layer1.0/conv2/Conv"))
    x = b.qcfs(b.add(h, stem), name="/layer1/layer1.0/act2/QCFS")
    h = b.qcfs(b.bn(b.conv(x, 16, stride=2, name="/layer2/layer2.0/conv1/Conv")), name="/layer2/layer2.0/act1/QCFS")
    h = b.bn(b.conv(h, 16, name="/layer2/layer2.0/conv2/Conv"))
    sc = b.bn(b.conv(x, 16, k=1, stride=2, pad=0, name="/layer2/layer2.0/shortcut/shortcut.0/Conv"))
    x = b.qcfs(b.add(h, sc), name="/layer2/layer2.0/act2/QCFS")
    x = b.gemm(b.flatten(b.gap(x)), 10, name="/fc/Gemm")
    return calibrate_lambdas(b.model(x, "resnet_block"))


def gap_classifier(seed: int = 3, reduce: str = "gap") -> onnx.ModelProto:
    """conv-QCFS-(GlobalAveragePool | ReduceMean keepdims 1 / 0)-(Flatten|Reshape)-Gemm."""
    b = Builder(seed=seed)
    x = b.qcfs(b.conv("input", 8, bias=True, name="conv"))
    if reduce == "gap":
        x = b.flatten(b.gap(x))
    elif reduce == "mean_keep":
        x = b.reshape(b.reduce_mean(x, keepdims=1))
    else:
        x = b.reduce_mean(x, keepdims=0)
    return calibrate_lambdas(b.model(b.gemm(x, 5, name="fc"), f"gap_{reduce}"))


def matmul_mlp(seed: int = 4) -> onnx.ModelProto:
    """Flatten-MatMul+Add-BN1d-QCFS-Identity-MatMul+Add on 1×6×6 without normalization metadata."""
    b = Builder(shape=(1, 6, 6), seed=seed, normalize=False)
    x = b.qcfs(b.bn(b.matmul_add(b.flatten("input"), 24, name="fc1")))
    x = b.unary("Identity", x)
    return calibrate_lambdas(b.model(b.matmul_add(x, 4, name="fc2"), "mlp"))


def grouped_strided(seed: int = 5) -> onnx.ModelProto:
    """Stride-2 conv, grouped conv (g=2), depthwise conv, avgpool into a grouped conv, Gemm."""
    b = Builder(seed=seed)
    x = b.qcfs(b.conv("input", 8, stride=2, name="down"))            # 8×4×4
    x = b.qcfs(b.conv(x, 8, group=2, bias=True, name="grouped"))
    x = b.qcfs(b.bn(b.conv(x, 8, group=8, name="depthwise")))
    x = b.avgpool(x, 2)                                              # 8×2×2
    x = b.qcfs(b.conv(x, 8, group=4, name="grouped_after_pool"))
    return calibrate_lambdas(b.model(b.gemm(b.flatten(x), 6, name="fc"), "grouped"))


ZOO = {"tiny_cnn": tiny_cnn, "vgg_block": vgg_block, "resnet_block": resnet_block, "gap": gap_classifier,
       "mlp": matmul_mlp, "grouped": grouped_strided}
