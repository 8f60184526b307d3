"""Helpers for the ONNX export/import tests: realistic random QCFS models, hand-built decomposed graphs in
every accepted spelling, and a structural comparison of canonical graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from qcfs.exporters.canonical import QCFS_DOMAIN, attach_qcfs_function, qcfs_nodes
from qcfs.frontend.qcfs_act import QCFS


def realistic(model: nn.Module, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """Perturb BN statistics/affine and set each λ to the 99th percentile of its input, so that every QCFS
    layer uses its whole range of levels (a fresh model has λ = 8 and nearly all levels 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)

    def set_lam(mod, inp):  # type: ignore[no-untyped-def]
        x = inp[0].detach().flatten()
        pos = x[x > 0]
        mod.lam.data.fill_(float(torch.quantile(pos[:1_000_000], 0.99)) if pos.numel() else 1.0)

    model.eval()
    hooks = [m.register_forward_pre_hook(set_lam) for m in model.modules() if isinstance(m, QCFS)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return model


# ---------------------------------------------------------------------------------------------- structure


def _const_inputs(model: onnx.ModelProto, node: onnx.NodeProto) -> list[np.ndarray]:
    inits = {i.name: i for i in model.graph.initializer}
    return [numpy_helper.to_array(inits[n]) for n in node.input if n in inits]


def structure(model: onnx.ModelProto) -> list[tuple]:
    """(domain, op, attrs for QCFS) per node, in graph order."""
    out = []
    for n in model.graph.node:
        attrs = tuple(sorted((a.name, round(helper.get_attribute_value(a), 6)) for a in n.attribute)) \
            if n.domain == QCFS_DOMAIN else ()
        out.append((n.domain, n.op_type, attrs))
    return out


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def assert_same_canonical(a: onnx.ModelProto, b: onnx.ModelProto, x: np.ndarray, atol: float = 1e-5) -> None:
    """Same op sequence, same QCFS attributes and λ, weights allclose, same onnxruntime outputs."""
    assert structure(a) == structure(b)
    for na, nb in zip(a.graph.node, b.graph.node):
        ca, cb = _const_inputs(a, na), _const_inputs(b, nb)
        assert len(ca) == len(cb), (na.name, nb.name)
        for ta, tb in zip(ca, cb):
            np.testing.assert_allclose(ta.reshape(tb.shape) if ta.size == tb.size else ta, tb, rtol=1e-5, atol=1e-6)
    assert [o.name for o in a.graph.input] == [o.name for o in b.graph.input] == ["input"]
    assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output] == ["logits"]
    np.testing.assert_allclose(run(a, x), run(b, x), rtol=1e-5, atol=atol)


def lambdas(model: onnx.ModelProto) -> list[float]:
    inits = {i.name: i for i in model.graph.initializer}
    return [float(numpy_helper.to_array(inits[n.input[1]])) for n in qcfs_nodes(model.graph.node)]


# ------------------------------------------------------------------------------------- hand-built graphs

class GraphBuilder:
    """Tiny net Conv -> act -> Conv -> act -> Flatten -> Gemm on [N,1,6,6], with the activation spelled out."""

    def __init__(self, spelling: dict, opset: int = 20, seed: int = 0, bn: bool = False) -> None:
        self.sp = spelling
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.bn = bn

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value, base: str = "c") -> str:  # type: ignore[no-untyped-def]
        """A constant in the spelling's style: initializer, Constant node, or initializer behind Identity."""
        arr = np.asarray(value, dtype=np.float32)
        name = self.name(base)
        style = self.sp.get("consts", "init")
        if style == "constant":
            self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr)))
            return name
        self.inits.append(numpy_helper.from_array(arr, name))
        if style == "identity":
            out = self.name(base + "_id")
            self.nodes.append(helper.make_node("Identity", [name], [out]))
            return out
        return name

    def op(self, op_type: str, a: str, b: str, commute: bool = False) -> str:
        out = self.name(op_type.lower())
        ins = [b, a] if commute and self.sp.get("commute") else [a, b]
        self.nodes.append(helper.make_node(op_type, ins, [out]))
        return out

    def clip(self, x: str) -> str:
        kind = self.sp.get("clip", "clip")
        out = self.name("clip")
        if kind == "clip":
            self.nodes.append(helper.make_node("Clip", [x, self.const(0.0), self.const(1.0)], [out]))
        elif kind == "minmax":  # Min(Max(x, 0), 1)
            mid = self.name("max")
            self.nodes.append(helper.make_node("Max", [x, self.const(0.0)], [mid]))
            self.nodes.append(helper.make_node("Min", [mid, self.const(1.0)], [out]))
        else:  # Max(Min(x, 1), 0)
            mid = self.name("min")
            self.nodes.append(helper.make_node("Min", [x, self.const(1.0)], [mid]))
            self.nodes.append(helper.make_node("Max", [mid, self.const(0.0)], [out]))
        return out

    def floor(self, a: str) -> str:
        if self.sp.get("floor", "plain") == "plain":
            out = self.name("floor")
            self.nodes.append(helper.make_node("Floor", [a], [out]))
            return out
        fl = self.name("floor")
        self.nodes.append(helper.make_node("Floor", [a], [fl]))
        diff = self.op("Sub", fl, a)
        out = self.name("ste")
        ins = [diff, a] if self.sp["floor"] == "ste_commuted" else [a, diff]
        self.nodes.append(helper.make_node("Add", ins, [out]))
        return out

    def down(self, level: str, L: int) -> str:
        if self.sp.get("down", "div") == "div":
            return self.op("Div", level, self.const(float(L)))
        return self.op("Mul", level, self.const(1.0 / L), commute=True)

    def qcfs(self, x: str, lam: float, L: int, phi: float = 0.5) -> str:
        sp = self.sp
        if sp.get("order") == "canonical":
            out = self.name("qcfs")
            self.inits.append(numpy_helper.from_array(np.array(lam, np.float32), out + ".lam"))
            self.nodes.append(helper.make_node("QCFS", [x, out + ".lam"], [out], domain=QCFS_DOMAIN, L=L, shift=phi,
                                               name=out))
            return out
        lam_a = self.const(lam, "lam")
        lam_b = lam_a if sp.get("shared_lambda", True) else self.const(lam, "lam")
        if sp.get("order", "clip") == "clip":
            y = self.clip(self.op("Div", x, lam_a))
            level = self.floor(self.op("Add", self.op("Mul", y, self.const(float(L)), commute=True), self.const(phi),
                                       commute=True))
            return self.op("Mul", self.down(level, L), lam_b, commute=True)
        if sp.get("up", "mul_div") == "mul_div":
            scaled = self.op("Div", self.op("Mul", x, self.const(float(L)), commute=True), lam_a)
        else:
            scaled = self.op("Mul", self.op("Div", x, lam_a), self.const(float(L)), commute=True)
        level = self.floor(self.op("Add", scaled, self.const(phi), commute=True))
        return self.op("Mul", self.clip(self.down(level, L)), lam_b, commute=True)

    def batchnorm(self, x: str, n: int) -> str:
        out = self.name("bn")
        ins = [x] + [self.const(v, "bn") for v in (self.rng.uniform(0.5, 1.5, n), self.rng.normal(0, 0.1, n),
                                                   self.rng.normal(0, 0.1, n), self.rng.uniform(0.5, 2, n))]
        self.nodes.append(helper.make_node("BatchNormalization", ins, [out], epsilon=1e-5))
        return out

    def conv(self, x: str, cin: int, cout: int, bias: bool = True) -> str:
        w = self.name("conv.weight")
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, 0.5, (cout, cin, 3, 3)).astype(np.float32), w))
        ins = [x, w]
        if bias:
            b = self.name("conv.bias")
            self.inits.append(numpy_helper.from_array(self.rng.normal(0, 0.1, cout).astype(np.float32), b))
            ins.append(b)
        out = self.name("conv")
        self.nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name=out))
        return out

    def gemm(self, x: str, cin: int, cout: int) -> str:
        w, b, out = self.name("fc.weight"), self.name("fc.bias"), self.name("fc")
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, 0.2, (cout, cin)).astype(np.float32), w))
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, 0.1, cout).astype(np.float32), b))
        self.nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1, name=out))
        return out

    def build(self, lams=(1.5, 2.5, 3.0), L: int = 4, extra=None) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
        """`extra(builder, x) -> x` may insert nodes (e.g. an unsupported op) after the first activation."""
        x = self.conv("x", 1, 4, bias=not self.bn)
        if self.bn:
            x = self.batchnorm(x, 4)
        x = self.qcfs(x, lams[0], L)
        if extra is not None:
            x = extra(self, x)
        x = self.qcfs(self.conv(x, 4, 4), lams[1], L)
        flat = self.name("flat")
        self.nodes.append(helper.make_node("Flatten", [x], [flat], axis=1))
        x = self.gemm(flat, 4 * 36, 8)
        if self.bn:
            x = self.batchnorm(x, 8)
        x = self.qcfs(x, lams[2], L)
        y = self.gemm(x, 8, 3)
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 3])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        if self.sp.get("order") == "canonical":
            attach_qcfs_function(model, self.opset)
        model.ir_version = 8
        return model
