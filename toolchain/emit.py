"""Emit: the finished neuron graph as an IntNet (qcfs.intnet), with depths, delays and provenance."""

from __future__ import annotations

import json

import numpy as np

from qcfs.intnet_validate import float32_exact
from qcfs.intnet import HardwareProfile, InputSpec, IntNet, Layer, Synapse
from qcfs.toolchain.graph import Graph

FLOAT32_EXACT_LIMIT = 1 << 24


def _meta_value(raw: str | None):
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _float32_exact(layer: Layer, input_bits: int) -> bool:
    """Every partial sum of the layer's current is an integer below 2^24, so float32 BLAS is exact."""
    return float32_exact(layer, input_bits)


def emit(graph: Graph, *, mode: str, profile: HardwareProfile, passes: list[str]) -> IntNet:
    """Build the IntNet. Depth: input 0, layer = max(source depth + 1 (+ 1 through a pool stage)); a synapse
    from a shallower source gets the rest as delay, so every branch of a residual block arrives in step."""
    inp = graph["input"]
    integer = mode == "int"
    depth: dict[str, int] = {"input": 0}
    layers: list[Layer] = []
    for node in graph:
        if node.op != "neuron":
            continue
        a = node.attrs
        steps = [1 + (s.pool is not None) for s in a["synapses"]]  # a pool stage is one more pipelined step
        d = max(depth[s.source] + k for s, k in zip(a["synapses"], steps))
        depth[node.name] = d
        cast = (lambda x: np.asarray(x).astype(np.int64)) if integer else (lambda x: np.asarray(x, dtype=np.float64))
        syns = [Synapse(source=s.source, kind=s.kind, weight=cast(s.weight), stride=tuple(int(v) for v in s.stride),
                        padding=tuple(int(v) for v in s.pads), groups=int(s.groups), delay=d - depth[s.source] - k,
                        pool=s.pool)
                for s, k in zip(a["synapses"], steps)]
        is_if = a["kind"] == "if"
        threshold = (int(a["threshold"]) if integer else float(a["threshold"])) if is_if else 0
        v_init = (int(a["v_init"]) if integer else float(a["v_init"])) if is_if else 0
        layer = Layer(name=node.name, kind=a["kind"], shape=tuple(int(v) for v in node.shape), bias=cast(a["bias"]),
                      threshold=threshold, v_init=v_init, synapses=syns, depth=d)
        layer.float32_exact = integer and _float32_exact(layer, inp.attrs.get("bits") or profile.input_bits)
        layers.append(layer)
    readout = layers[-1]
    meta = graph.metadata
    return IntNet(
        mode=mode,  # type: ignore[arg-type]
        input=InputSpec(shape=tuple(int(v) for v in inp.shape), mean=tuple(float(v) for v in inp.attrs["mean"]),
                        std=tuple(float(v) for v in inp.attrs["std"]),
                        scale=float(inp.attrs["scale"]) if integer else None, bits=profile.input_bits),
        layers=layers,
        L=int(graph[graph.output].attrs["L"]),
        phi=float(graph[graph.output].attrs["phi"]),
        profile=profile,
        readout_scale=float(graph[readout.name].attrs.get("scale", 1.0)) if integer else 1.0,
        metadata={
            "source_model": meta.get("qcfs.model", "foreign"),
            "dataset": meta.get("qcfs.dataset"),
            "classes": _meta_value(meta.get("qcfs.classes")),
            "L": int(graph[graph.output].attrs["L"]),
            "calibrated": meta.get("qcfs.calibrated", "false"),
            "passes": passes,
            "onnx_nodes": {n.name: n.onnx_name for n in graph if n.op == "neuron"},
        },
    )
