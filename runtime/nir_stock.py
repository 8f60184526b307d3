"""Interpret a NIR graph in NumPy, with stock NIR semantics (what snnTorch/Norse/… readers run) or with the
qcfs semantics its metadata states.

Stock (the NIR spec, dt = 1): IF v ← v + r·I, spike when v > v_threshold, v ← v_reset; v(0) = 0 (NIR has no
initial state); the readout I node accumulates r·I. Only the graph's nodes are read, so a graph with its
qcfs metadata stripped runs the same. qcfs: v(0) = qcfs_v_init, spike on v ≥ θ, subtract θ — the same walk
and currents, so "qcfs" reproducing qcfs.runtime.numpy_snn bit for bit is what makes the stock numbers
trustworthy (tests/test_formats_nir.py).
Input: the qcfs integer encoding (qcfs.semantics.encode_input) of the graph's own header, or `input_spec`
for a graph without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.exporters.nir_import import _text, graph_layers, read_nir
from qcfs.intnet import InputSpec, IntNet, Layer
from qcfs.runtime.result import SimResult
from qcfs.runtime.stock_snn import NirIFRule, QcfsRule, channel_last, simulate_rules
from qcfs.semantics import membrane_limits

SEMANTICS = ("stock", "qcfs")


def strip_qcfs_metadata(graph):  # type: ignore[no-untyped-def]
    """The graph as a stock reader sees it: every qcfs_* metadata key removed (in place; returned)."""
    for node in [graph, *graph.nodes.values()]:
        if node.metadata:
            node.metadata = {k: v for k, v in node.metadata.items() if not k.startswith("qcfs_")}
    return graph


def _header(graph) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    raw = (graph.metadata or {}).get("qcfs_header")
    return None if raw is None else json.loads(_text(raw))


def structure(graph, input_spec: InputSpec | None = None) -> tuple[IntNet, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The graph as an IntNet-shaped chain/DAG (layer names = node names) and its neuron nodes."""
    in_shape, glayers = graph_layers(graph)
    hdr = _header(graph)
    if input_spec is None:
        if hdr is None:
            raise ModelFileError("NIR graph without qcfs_header metadata: pass the input encoding (input_spec)")
        i = hdr["input"]
        input_spec = InputSpec(shape=tuple(i["shape"]), mean=tuple(i["mean"]), std=tuple(i["std"]),
                               scale=i["scale"], bits=int(i["bits"]))
    if tuple(input_spec.shape) != tuple(in_shape):
        raise ModelFileError(f"node input: shape {in_shape}, the input encoding says {tuple(input_spec.shape)}")
    layers = [Layer(name=gl.name, kind=gl.kind, shape=gl.shape, bias=gl.bias, threshold=0, v_init=0,
                    synapses=gl.synapses) for gl in glayers]
    net = IntNet(mode="int", input=input_spec, layers=layers, L=int(hdr["L"]) if hdr else 1)
    return net, {gl.name: gl.node for gl in glayers}


def rules_for(net: IntNet, nodes: dict[str, Any], semantics: str, membrane_bits: int = 24) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for layer in net.layers:
        node, shape = nodes[layer.name], tuple(layer.shape)
        readout = layer.kind == "readout"
        if semantics == "stock":
            # an Output node standing for the readout (profile "readers") passes the current on as it is: r = 1
            r = channel_last(np.asarray(getattr(node, "r", np.ones(shape)), np.float64), shape)
            if readout:
                rules[layer.name] = NirIFRule(r=r, v_threshold=np.zeros(1), v_reset=np.zeros(1), integrator=True)
            else:
                rules[layer.name] = NirIFRule(r=r, v_threshold=channel_last(np.asarray(node.v_threshold, np.float64), shape),
                                              v_reset=channel_last(np.asarray(node.v_reset, np.float64), shape))
        elif semantics == "qcfs":
            if readout:
                rules[layer.name] = QcfsRule(threshold=0, v_init=np.zeros(1, np.int64), limits=None, integrator=True)
                continue
            th = np.unique(np.asarray(node.v_threshold))
            v0 = (node.metadata or {}).get("qcfs_v_init")
            if th.size != 1 or v0 is None:
                raise ModelFileError(f"node {layer.name}: qcfs semantics need one v_threshold and qcfs_v_init metadata")
            rules[layer.name] = QcfsRule(threshold=int(th[0]), v_init=channel_last(np.asarray(v0, np.int64), shape),
                                         limits=membrane_limits(membrane_bits))
        else:
            raise ValueError(f"NIR semantics must be one of {SEMANTICS}, got {semantics!r}")
    return rules


def simulate_nir(graph_or_path, images01: np.ndarray, Ts: list[int], *, semantics: str = "stock",  # type: ignore[no-untyped-def]
                 input_spec: InputSpec | None = None, batch_size: int = 256, progress: bool = True) -> SimResult:
    """Simulate a NIR graph (or .nir file); logits = the readout I node's state after T steps."""
    graph = read_nir(graph_or_path) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    net, nodes = structure(graph, input_spec)
    hdr = _header(graph)
    bits = int(hdr["profile"]["membrane_bits"]) if hdr else 24
    return simulate_rules(net, rules_for(net, nodes, semantics, bits), images01, Ts, add_bias=True,
                          batch_size=batch_size, progress=progress, backend=f"nir-{semantics}-numpy")
