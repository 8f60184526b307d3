"""A tiny layer-graph IR (NIR-style) that the conversion passes rewrite.

Why not rewrite ONNX in place: every pass here reasons about *linear maps between populations* (conv, dense,
their composition, λ folding, scales). A dict of small dataclass nodes, one output each, with numpy
parameters and a per-node output shape (without batch) keeps every pass a few lines and easy to test.

Node ops and their attrs (`params` hold numpy float64 arrays):
  input                                  the normalized image, shape (C, H, W)
  conv     weight [O, I/g, kh, kw], bias [O], stride (sh, sw), pads (t, l, b, r), groups
  dense    weight [O, I], bias [O]      reads its input flattened (C, H, W order)
  flatten                                (C, H, W) -> (C·H·W,)
  bn       scale, bias, mean, var, eps  (inference BatchNormalization, per channel)
  avgpool  kernel, stride, pads, count_include_pad
  sumpool  pool (qcfs.intnet.SumPool)   --pool separate: window sums of spikes, read only by linear nodes
  addconst value                         x + constant (broadcast as ONNX does)
  add                                    residual sum of two tensors
  identity                               Dropout / Identity
  qcfs     lam, L, phi                   the QCFS activation
  neuron   (after FormSynapses) kind "if"|"readout", synapses [SynapseIR], bias, lam, threshold, v_init
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

LINEAR_OPS = ("conv", "dense")


@dataclass
class Node:
    """One operation with a single output value named like the node."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    onnx_name: str = ""  # where it came from, for error messages
    onnx_op: str = ""


@dataclass
class SynapseIR:
    """One synapse stage into a neuron node: a conv or dense map from a source population."""

    source: str
    kind: str  # "conv" | "dense"
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    origin: str = ""  # name of the linear node it came from ("" for an identity shortcut)
    pool: Any = None  # qcfs.intnet.SumPool: the weights read window sums of the source (--pool separate)

    def read_shape(self, source_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of what the weights read: the source's, or its window sums' when pooled."""
        return self.pool.out_shape(source_shape) if self.pool is not None else tuple(source_shape)

    @property
    def read_max(self) -> int:
        """Largest value one spike-source element delivers: 1, or kh·kw through a pool."""
        return self.pool.size if self.pool is not None else 1


@dataclass
class Graph:
    """Nodes in topological order (dict insertion order is kept by every edit) and the output node name."""

    nodes: dict[str, Node]
    output: str
    metadata: dict[str, str] = field(default_factory=dict)

    # --- queries ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes.values()))

    def uses(self, name: str) -> int:
        """How many places read `name` (node inputs and the graph output)."""
        return sum(n.inputs.count(name) for n in self.nodes.values()) + (name == self.output)

    def ops(self) -> list[str]:
        return [n.op for n in self.nodes.values()]

    def count(self, op: str) -> int:
        return sum(n.op == op for n in self.nodes.values())

    # --- edits -----------------------------------------------------------------------------------
    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of `old` read `new` instead."""
        for n in self.nodes.values():
            n.inputs = [new if i == old else i for i in n.inputs]
        if self.output == old:
            self.output = new

    def remove(self, name: str) -> None:
        del self.nodes[name]

    def bypass(self, name: str) -> None:
        """Remove a single-input node, wiring its readers to its input."""
        node = self.nodes[name]
        self.replace_uses(name, node.inputs[0])
        self.remove(name)

    def fresh_name(self, base: str) -> str:
        if base not in self.nodes:
            return base
        k = 1
        while f"{base}_{k}" in self.nodes:
            k += 1
        return f"{base}_{k}"

    def prune(self) -> bool:
        """Drop nodes nothing reads (the output counts as a reader); True when something was dropped."""
        live: set[str] = set()
        stack = [self.output]
        while stack:
            name = stack.pop()
            if name in live:
                continue
            live.add(name)
            node = self.nodes[name]
            stack.extend(node.inputs)
            for syn in node.attrs.get("synapses", []):
                stack.append(syn.source)
        dead = [k for k in self.nodes if k not in live]
        for k in dead:
            del self.nodes[k]
        return bool(dead)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes.values():
            counts[n.op] = counts.get(n.op, 0) + 1
        return ", ".join(f"{k}×{v}" for k, v in counts.items())


def conv_out_len(n: int, k: int, s: int, pad_begin: int, pad_end: int) -> int:
    """Output length of a conv/pool along one axis (floor mode, dilation 1)."""
    return (n + pad_begin + pad_end - k) // s + 1


def conv_out_shape(
    in_shape: tuple[int, ...], out_channels: int, kernel: tuple[int, int], stride: tuple[int, int],
    pads: tuple[int, int, int, int]
) -> tuple[int, int, int]:
    _, h, w = in_shape
    return (
        out_channels,
        conv_out_len(h, kernel[0], stride[0], pads[0], pads[2]),
        conv_out_len(w, kernel[1], stride[1], pads[1], pads[3]),
    )


def describe_node(node: Node) -> str:
    """'node "name" (OnnxOp)' for one-line error messages."""
    name = node.onnx_name or node.name
    op = node.onnx_op or node.op
    return f"node {name!r} ({op})"
