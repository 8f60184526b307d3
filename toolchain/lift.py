"""Lift a canonical QCFS ONNX model (docs/canonical_onnx.md) into the layer-graph IR (toolchain.graph).

Only the canonical op subset is accepted; anything else raises UnsupportedOpError naming the node, its op
and what to do, before any pass runs. Shapes are tracked per node without the batch dimension.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import onnx
from onnx import numpy_helper

from qcfs.errors import QCFSError, UnsupportedOpError
from qcfs.toolchain.graph import Graph, Node, conv_out_shape

QCFS_DOMAIN = "qcfs"

_HINTS = {
    "MaxPool": "replace MaxPool with AveragePool (as the qcfs model zoo does) and retrain",
    "Relu": "a ReLU network needs calibration first: qcfs-export --calibrate relu --dataset ...",
    "LeakyRelu": "only QCFS activations become IF neurons; retrain with QCFS",
    "Sigmoid": "only QCFS activations become IF neurons; retrain with QCFS",
    "Tanh": "only QCFS activations become IF neurons; retrain with QCFS",
    "Softmax": "remove the final Softmax before export (the argmax is unchanged)",
    "LogSoftmax": "remove the final LogSoftmax before export (the argmax is unchanged)",
}


def unsupported(onnx_node: onnx.NodeProto, why: str = "") -> UnsupportedOpError:
    hint = _HINTS.get(onnx_node.op_type, "it is outside the canonical QCFS ONNX subset (docs/canonical_onnx.md)")
    what = f"{why}; " if why else "cannot be converted to an IF network; "
    return UnsupportedOpError(f"node {onnx_node.name or '<unnamed>'!r} ({onnx_node.op_type}): {what}{hint}")


def short_name(onnx_name: str, op_type: str) -> str:
    """'/layer1/layer1.0/conv2/Conv' -> 'layer1.0.conv2' (torch scope path); other names are sanitised."""
    segs = [s for s in onnx_name.split("/") if s]
    if len(segs) > 1 and re.split(r"[_.]", segs[-1])[0] == op_type:
        segs = segs[:-1]
    path = ""
    for seg in segs:
        path = seg if (not path or seg.startswith(path + ".")) else f"{path}.{seg}"
    path = re.sub(r"[^A-Za-z0-9_.\-]", "_", path).strip("._")
    return path or op_type.lower()


def node_label(node: onnx.NodeProto) -> str:
    """Stable short name: the node name ('/layer1/layer1.0/conv2/Conv' -> 'layer1.0.conv2'); for names the
    torch dynamo exporter generates ('node_Conv_12') the torch module path from its name-scope metadata."""
    if node.name and not re.fullmatch(r"node_\w+?_\d+|node_\w+", node.name):
        return short_name(node.name, node.op_type)
    scopes = next((m.value for m in node.metadata_props if m.key == "pkg.torch.onnx.name_scopes"), None)
    if scopes:
        try:
            names = [n for n in json.loads(scopes.replace("'", '"')) if n]
        except json.JSONDecodeError:
            names = []
        if len(names) >= 2:
            return short_name(names[-2], node.op_type)
    return short_name(node.name, node.op_type) if node.name else node.op_type.lower()


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _resolve_pads(
    attrs: dict, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], node: onnx.NodeProto
) -> tuple[int, int, int, int]:
    """ONNX pads [h_begin, w_begin, h_end, w_end] (or auto_pad) -> (top, left, bottom, right)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise unsupported(node, f"pads {p} are not 2-D")
        return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
    if auto == "VALID":
        return (0, 0, 0, 0)
    total = []
    for n, k, s in zip(in_hw, kernel, stride):
        out = math.ceil(n / s)
        total.append(max(0, (out - 1) * s + k - n))
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    begin, end = (small, big) if auto == "SAME_UPPER" else (big, small)
    return (begin[0], begin[1], end[0], end[1])


def _check_dilation(attrs: dict, node: onnx.NodeProto) -> None:
    if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
        raise unsupported(node, "dilated convolution/pooling is not supported; use dilation 1")


def per_channel_lambda(lam: np.ndarray, shape: tuple[int, ...], node: onnx.NodeProto) -> float | np.ndarray:
    """λ as ONNX broadcasting applies it to the [batch, *shape] activation: one float, or — when it differs per
    channel (conv) / unit (dense) — an array shaped to broadcast over `shape` ((C, 1, 1) or (U,)). A λ that
    varies over space (e.g. shape [W] on a [C, H, W] tensor) is not a per-channel clip level: refused."""
    if lam.size == 1:
        return float(lam.reshape(-1)[0])
    if lam.ndim > len(shape) + 1 or (lam.ndim == len(shape) + 1 and lam.shape[0] != 1):
        raise unsupported(node, f"λ of shape {list(lam.shape)} varies over the batch")
    try:
        full = np.broadcast_to(lam, (1, *shape))[0]
    except ValueError:
        raise unsupported(node, f"λ of shape {list(lam.shape)} does not broadcast to the {list(shape)} activation") \
            from None
    per = full.reshape(shape[0], -1)
    if not np.all(per == per[:, :1]):
        raise unsupported(node, f"λ of shape {list(lam.shape)} varies over space; only one λ per channel (shape "
                                f"[C, 1, 1] or [1, C, 1, 1]) or per unit converts")
    vec = per[:, 0].astype(np.float64)
    if np.all(vec == vec[0]):
        return float(vec[0])
    return vec.reshape((-1, 1, 1) if len(shape) == 3 else (-1,))


def parse_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def input_shape(model: onnx.ModelProto, meta: dict[str, str], init_names: set[str]) -> tuple[str, tuple[int, int, int]]:
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise QCFSError(f"canonical QCFS ONNX has exactly one graph input, this model has {len(inputs)}")
    inp = inputs[0]
    if "qcfs.input_shape" in meta:
        shape = tuple(int(v) for v in json.loads(meta["qcfs.input_shape"]))
    else:
        dims = inp.type.tensor_type.shape.dim
        shape = tuple(int(d.dim_value) for d in dims[1:])
        if len(shape) != 3 or min(shape) <= 0:
            raise QCFSError(f"input {inp.name!r}: needs a concrete [C,H,W] shape (or metadata qcfs.input_shape)")
    if len(shape) != 3:
        raise QCFSError(f"input shape {list(shape)} is not [C,H,W]")
    return inp.name, shape  # type: ignore[return-value]


def normalization(meta: dict[str, str], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std from qcfs.normalize.* metadata (absent: pixels in [0, 1] are fed as is)."""
    try:
        mean = np.asarray(json.loads(meta.get("qcfs.normalize.mean", "[0.0]")), dtype=np.float64).reshape(-1)
        std = np.asarray(json.loads(meta.get("qcfs.normalize.std", "[1.0]")), dtype=np.float64).reshape(-1)
        mean, std = np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy()
    except (ValueError, json.JSONDecodeError) as err:
        raise QCFSError(f"metadata qcfs.normalize.mean/std do not describe {channels} channels: {err}") from None
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise QCFSError(f"metadata qcfs.normalize.std must be positive, got {std.tolist()}")
    return mean, std


def lift(model: onnx.ModelProto) -> Graph:
    """ONNX ModelProto -> Graph with one IR node per ONNX node (Constant nodes become parameters)."""
    meta = parse_metadata(model)
    inits: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    in_name, in_shape = input_shape(model, meta, set(inits))
    g = Graph(nodes={}, output="", metadata=meta)
    mean, std = normalization(meta, in_shape[0])
    g.nodes["input"] = Node("input", "input", [], in_shape, dict(mean=mean, std=std, scale=None), in_name, "input")
    value: dict[str, str] = {in_name: "input"}  # ONNX tensor -> IR node

    def new_node(onnx_node: onnx.NodeProto, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        name = g.fresh_name(node_label(onnx_node))
        g.nodes[name] = Node(name, op, inputs, tuple(shape), attrs, onnx_node.name or name, onnx_node.op_type)
        return name

    for node in model.graph.node:
        op, a = node.op_type, _attrs(node)
        if node.domain not in ("", "ai.onnx", QCFS_DOMAIN) or (node.domain == QCFS_DOMAIN and op != "QCFS"):
            raise unsupported(node, f"custom op of domain {node.domain!r}")
        if op == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(a["value"]).astype(np.float64) if "value" in a else (
                np.asarray(next(iter(a.values())), dtype=np.float64))
            continue

        def src(i: int = 0) -> str:
            t = node.input[i]
            if t not in value:
                raise unsupported(node, f"input {t!r} must be an activation, not a constant")
            return value[t]

        def param(i: int, what: str) -> np.ndarray:
            if len(node.input) <= i or not node.input[i]:
                raise unsupported(node, f"missing {what}")
            if node.input[i] not in inits:
                raise unsupported(node, f"{what} must be an initializer")
            return inits[node.input[i]]

        if op == "Conv":
            x = src()
            w = param(1, "weights")
            if w.ndim != 4:
                raise unsupported(node, "only 2-D convolution is supported")
            _check_dilation(a, node)
            groups = int(a.get("group", 1))
            stride = tuple(int(s) for s in a.get("strides", [1, 1]))
            kernel = (w.shape[2], w.shape[3])
            pads = _resolve_pads(a, g[x].shape[1:], kernel, stride, node)
            b = param(2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
            if g[x].shape[0] != w.shape[1] * groups:
                raise unsupported(node, f"weights {list(w.shape)} do not match input channels {g[x].shape[0]}")
            shape = conv_out_shape(g[x].shape, w.shape[0], kernel, stride, pads)
            name = new_node(node, "conv", [x], shape, weight=w, bias=b.reshape(-1), stride=stride, pads=pads,
                            groups=groups)
        elif op == "BatchNormalization":
            x = src()
            if int(a.get("training_mode", 0)) != 0 or any(o for o in node.output[1:]):
                raise unsupported(node, "training-mode BatchNormalization; export the model in eval mode")
            name = new_node(node, "bn", [x], g[x].shape, scale=param(1, "scale"), bias=param(2, "bias"),
                            mean=param(3, "mean"), var=param(4, "var"), eps=float(a.get("epsilon", 1e-5)))
        elif op in ("Gemm", "MatMul"):
            x = src()
            if len(g[x].shape) != 1:
                raise unsupported(node, f"{op} on a {len(g[x].shape) + 1}-D tensor; Flatten before it")
            if op == "Gemm":
                if int(a.get("transA", 0)):
                    raise unsupported(node, "transA=1 is not supported")
                bmat = param(1, "weights")
                w = float(a.get("alpha", 1.0)) * (bmat if int(a.get("transB", 0)) else bmat.T)
                c = param(2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros(1)
                b = float(a.get("beta", 1.0)) * np.broadcast_to(c, (1, w.shape[0])).reshape(-1)
            else:
                bmat = param(1, "weights")
                if bmat.ndim != 2:
                    raise unsupported(node, "MatMul weights must be a 2-D initializer")
                w, b = bmat.T, np.zeros(bmat.shape[1])
            if w.shape[1] != g[x].shape[0]:
                raise unsupported(node, f"weights {list(w.shape)} do not match {g[x].shape[0]} inputs")
            name = new_node(node, "dense", [x], (w.shape[0],), weight=np.array(w), bias=np.array(b))
        elif op == "Add":
            const = [i for i, t in enumerate(node.input) if t in inits]
            if len(const) == 2:
                raise unsupported(node, "adds two constants")
            if const:
                x = src(1 - const[0])
                c = inits[node.input[const[0]]]
                try:
                    np.broadcast_to(c, (1,) + g[x].shape)
                except ValueError:
                    raise unsupported(node, f"constant of shape {list(c.shape)} does not broadcast") from None
                name = new_node(node, "addconst", [x], g[x].shape, value=c)
            else:
                x, y = src(0), src(1)
                if g[x].shape != g[y].shape:
                    raise unsupported(node, f"residual Add of shapes {g[x].shape} and {g[y].shape} (no broadcasting)")
                name = new_node(node, "add", [x, y], g[x].shape)
        elif op in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
            x = src()
            if len(g[x].shape) != 3:
                raise unsupported(node, "pooling needs a [C,H,W] input")
            c, h, w_ = g[x].shape
            flatten_after = False
            if op == "AveragePool":
                _check_dilation(a, node)
                kernel = tuple(int(k) for k in a["kernel_shape"])
                stride = tuple(int(s) for s in a.get("strides", [1, 1]))
                pads = _resolve_pads(a, (h, w_), kernel, stride, node)
                include_pad = bool(int(a.get("count_include_pad", 0)))
                if int(a.get("ceil_mode", 0)):
                    ceil = tuple((n + pb + pe - k + s - 1) // s + 1
                                 for n, k, s, pb, pe in zip((h, w_), kernel, stride, pads[:2], pads[2:]))
                    if ceil != conv_out_shape(g[x].shape, c, kernel, stride, pads)[1:]:
                        raise unsupported(node, "ceil_mode=1 with partial windows; use ceil_mode=0")
            else:
                kernel, stride, pads, include_pad = (h, w_), (1, 1), (0, 0, 0, 0), True
                if op == "ReduceMean":
                    axes = a.get("axes")
                    if axes is None and len(node.input) > 1 and node.input[1]:
                        axes = param(1, "axes").astype(int).tolist()
                    if axes is None or sorted(int(ax) % 4 for ax in axes) != [2, 3]:
                        raise unsupported(node, f"ReduceMean over axes {axes}; only the spatial axes (2, 3) are supported")
                    flatten_after = not int(a.get("keepdims", 1))
            shape = conv_out_shape(g[x].shape, c, kernel, stride, pads)
            name = new_node(node, "avgpool", [x], shape, kernel=kernel, stride=stride, pads=pads,
                            count_include_pad=include_pad)
            if flatten_after:
                fname = g.fresh_name(name + ".flatten")
                g.nodes[fname] = Node(fname, "flatten", [name], (int(np.prod(shape)),), {}, node.name, op)
                name = fname
        elif op in ("Flatten", "Reshape"):
            x = src()
            size = int(np.prod(g[x].shape))
            if op == "Flatten":
                if int(a.get("axis", 1)) not in (1, 1 - len(g[x].shape) - 1):
                    raise unsupported(node, f"Flatten axis {a.get('axis')}; only axis=1 (keep the batch) is supported")
            else:
                target = param(1, "shape").astype(int).tolist()
                keep_batch = int(a.get("allowzero", 0)) == 0  # 0 copies the batch dimension only without allowzero
                # a flatten keeps the batch and puts everything else in one row: [0, -1], [0, n] or [-1, n]
                ok = len(target) == 2 and ((target[0] == 0 and keep_batch and target[1] in (-1, size))
                                           or (target[0] == -1 and target[1] == size))
                if not ok:
                    raise unsupported(node, f"Reshape to {target} is not a flatten of the {list(g[x].shape)} "
                                            f"input; only [0, -1], [0, {size}] or [-1, {size}] are supported")
            name = new_node(node, "flatten", [x], (size,))
        elif op in ("Dropout", "Identity"):
            x = src()
            if any(o for o in node.output[1:]):
                raise unsupported(node, "Dropout mask output is used")
            name = new_node(node, "identity", [x], g[x].shape)
        elif op == "QCFS":
            x = src()
            lam = param(1, "lambda")
            if lam.size == 0 or not np.isfinite(lam).all() or float(lam.min()) <= 0:
                raise QCFSError(f"node {node.name!r} (QCFS): λ must be finite positive, got {lam.reshape(-1)[:4].tolist()}")
            lam_value = per_channel_lambda(lam, g[x].shape, node)
            L = int(a.get("L", 0))
            if L < 1:
                raise QCFSError(f"node {node.name!r} (QCFS): L must be an integer ≥ 1, got {a.get('L')}")
            phi = float(a.get("shift", 0.5))
            if not (0.0 <= phi <= 1.0):
                raise QCFSError(f"node {node.name!r} (QCFS): shift φ must be in [0, 1], got {phi}")
            name = new_node(node, "qcfs", [x], g[x].shape, lam=lam_value, L=L, phi=phi)
        else:
            raise unsupported(node)
        value[node.output[0]] = name

    outs = [o.name for o in model.graph.output]
    if len(outs) != 1 or outs[0] not in value:
        raise QCFSError(f"canonical QCFS ONNX has one output computed from the input; got outputs {outs}")
    g.output = value[outs[0]]
    g.prune()
    return g
