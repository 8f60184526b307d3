"""Evaluate an IR graph in float64 at any stage of the pipeline.

Why: every pass claims to preserve the network function; running this interpreter before and after a pass
(and against onnxruntime on the original ONNX) is how the tests check that claim numerically.

Neuron nodes (after FormSynapses) output `carries · clip(floor(z·L/θ + φ), 0, L) / L` with
z = Σ synapses + bias: before FoldLambda θ = carries = λ (exactly the QCFS activation), after it θ = 1 and
a spike carries 1 (rate units). Readout neurons output z / scale.
"""

from __future__ import annotations

import numpy as np

from qcfs.semantics import qcfs_activation
from qcfs.toolchain.graph import Graph, Node, SynapseIR
from qcfs.toolchain.numeric import add_bias, conv2d, dense


def sum_pool(x: np.ndarray, pool) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Window sums of a (N, C, H, W) map (qcfs.intnet.SumPool, zero padding)."""
    c = x.shape[1]
    return conv2d(x, np.ones((c, 1, *pool.kernel)), pool.stride, pool.padding, groups=c)


def apply_synapse(syn: SynapseIR, x: np.ndarray) -> np.ndarray:
    if syn.pool is not None:
        x = sum_pool(x, syn.pool)
    if syn.kind == "conv":
        return conv2d(x, syn.weight, syn.stride, syn.pads, syn.groups)
    return dense(x, syn.weight)


def _avgpool(node: Node, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    c = x.shape[1]
    kh, kw = a["kernel"]
    w = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
    y = conv2d(x, w, a["stride"], a["pads"], groups=c)
    if not a["count_include_pad"] and any(a["pads"]):
        ones = np.ones((1, 1) + x.shape[2:])
        y = y / conv2d(ones, w[:1], a["stride"], a["pads"])
    return y


def eval_node(node: Node, args: list[np.ndarray]) -> np.ndarray:
    a, op = node.attrs, node.op
    x = args[0] if args else None
    if op == "conv":
        return add_bias(conv2d(x, a["weight"], a["stride"], a["pads"], a["groups"]), a["bias"])
    if op == "dense":
        return add_bias(dense(x, a["weight"]), a["bias"])
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "bn":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = a["scale"] / np.sqrt(a["var"] + a["eps"])
        return (x - a["mean"].reshape(shape)) * inv.reshape(shape) + a["bias"].reshape(shape)
    if op == "avgpool":
        return _avgpool(node, x)
    if op == "sumpool":
        return sum_pool(x, a["pool"])
    if op == "addconst":
        return x + a["value"]
    if op == "add":
        return args[0] + args[1]
    if op == "identity":
        return x
    if op == "qcfs":
        return qcfs_activation(x, a["lam"], a["L"], a["phi"])
    raise ValueError(f"cannot evaluate op {op!r}")


def eval_neuron(node: Node, values: dict[str, np.ndarray]) -> np.ndarray:
    a = node.attrs
    z = sum(apply_synapse(s, values[s.source]) for s in a["synapses"])
    z = add_bias(z, a["bias"])
    if a["kind"] == "readout":
        return z / a.get("scale", 1.0)
    L = a["L"]
    return a["carries"] * np.clip(np.floor(z * L / a["threshold"] + a["phi"]), 0, L) / L


def interpret(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run the graph on normalized float inputs x [N,C,H,W]; returns the output node's value (float64)."""
    values: dict[str, np.ndarray] = {}
    for node in graph:
        if node.op == "input":
            values[node.name] = np.asarray(x, dtype=np.float64)
        elif node.op == "neuron":
            values[node.name] = eval_neuron(node, values)
        else:
            values[node.name] = eval_node(node, [values[i] for i in node.inputs])
    return values[graph.output]
