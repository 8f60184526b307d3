"""FormSynapses: every QCFS becomes a population of IF neurons fed by synapse stages; the output a readout."""

from __future__ import annotations

import numpy as np

from qcfs.errors import QCFSError, UnsupportedOpError
from qcfs.toolchain.graph import LINEAR_OPS, Graph, Node, SynapseIR, describe_node
from qcfs.toolchain.passes.base import Pass


def _identity_synapse(source: Node, shape: tuple[int, ...]) -> SynapseIR:
    """A shortcut that passes a population on unchanged: a 1×1 conv with diagonal weights (or a dense eye)."""
    c = shape[0]
    if len(shape) == 3 and source.shape == shape:
        return SynapseIR(source.name, "conv", np.eye(c).reshape(c, c, 1, 1))
    n = int(np.prod(source.shape))
    return SynapseIR(source.name, "dense", np.eye(n))


class FormSynapses(Pass):
    """Σ_branches Linear_j(source_j) + Σ bias_j feeding a QCFS (or the output) == one neuron node with one synapse
    stage per branch; an identity shortcut becomes a diagonal 1×1 synapse; a linear map of a sum-pool stage
    becomes a synapse with that pool in front."""

    def _terms(self, graph: Graph, name: str) -> list[tuple[str, Node | None]]:
        node = graph[name]
        if node.op == "add":
            return self._terms(graph, node.inputs[0]) + self._terms(graph, node.inputs[1])
        if node.op in ("input", "qcfs"):
            return [(name, None)]
        if node.op == "flatten":
            inner = self._terms(graph, node.inputs[0])
            if all(lin is None for _, lin in inner):
                return inner
        if node.op in LINEAR_OPS:
            src = node.inputs[0]
            while graph[src].op == "flatten":
                src = graph[src].inputs[0]
            if graph[src].op == "sumpool":  # KeepSumPool: the synapse reads the window sums of the spikes
                self._pools[node.name] = graph[src].attrs["pool"]
                src = graph[src].inputs[0]
            if graph[src].op in ("input", "qcfs"):
                return [(src, node)]
            raise UnsupportedOpError(
                f"{describe_node(node)}: reads {describe_node(graph[src])} with no QCFS between them; "
                "one synapse holds one linear map; put a QCFS between them")
        raise UnsupportedOpError(f"{describe_node(node)}: cannot be part of a synapse (op {node.op} left after folding)")

    def _neuron(self, graph: Graph, target: Node, kind: str) -> Node:
        terms = self._terms(graph, target.inputs[0] if kind == "if" else target.name)
        synapses, bias = [], np.zeros(target.shape[0])
        for src, lin in terms:
            if lin is None:
                synapses.append(_identity_synapse(graph[src], target.shape))
                continue
            a = lin.attrs
            pool = self._pools.get(lin.name)
            if lin.op == "conv":
                synapses.append(SynapseIR(src, "conv", a["weight"], tuple(a["stride"]), tuple(a["pads"]), a["groups"],
                                          origin=lin.name, pool=pool))
            else:
                synapses.append(SynapseIR(src, "dense", a["weight"], origin=lin.name, pool=pool))
            bias = bias + a["bias"]
        t = target.attrs
        attrs = dict(kind=kind, synapses=synapses, bias=bias, lam=t.get("lam", 1.0), L=t.get("L"),
                     phi=t.get("phi"), threshold=t.get("lam", 1.0), carries=t.get("lam", 1.0), scale=1.0,
                     v_init=t.get("phi", 0.5) * t.get("lam", 1.0),
                     origin=target.name)
        return Node(target.name, "neuron", [s.source for s in synapses], target.shape, attrs,
                    target.onnx_name, target.onnx_op)

    def apply(self, graph: Graph) -> bool:
        if graph.count("neuron"):
            return False
        self._pools: dict[str, object] = {}  # linear node -> the SumPool it reads (KeepSumPool)
        qcfs = [n for n in graph if n.op == "qcfs"]
        if len({(n.attrs["L"], n.attrs["phi"]) for n in qcfs}) > 1:
            raise QCFSError("all QCFS layers must share L and shift φ (an IF network has one T window); got "
                            + ", ".join(f"{n.name}: L={n.attrs['L']} φ={n.attrs['phi']}" for n in qcfs))
        out = graph[graph.output]
        if out.op in ("qcfs", "input"):
            raise UnsupportedOpError(f"{describe_node(out)}: the network must end in a linear layer "
                                     "(Gemm/MatMul/Conv) after the last QCFS")
        L, phi = (qcfs[0].attrs["L"], qcfs[0].attrs["phi"]) if qcfs else (1, 0.5)
        new: dict[str, Node] = {"input": graph["input"]}
        for n in qcfs:
            new[n.name] = self._neuron(graph, n, "if")
        readout = self._neuron(graph, out, "readout")
        readout.attrs.update(L=L, phi=phi)
        new[out.name] = readout
        graph.nodes = new  # qcfs nodes were in topological order, so the neurons are too
        self._rename(graph)
        for node in graph:
            if node.op == "neuron":
                srcs = ", ".join(s.source + ("" if s.origin else " (identity)") for s in node.attrs["synapses"])
                self.note(f"{node.name}: {node.attrs['kind']} layer (from {node.onnx_name or node.name}) <- {srcs}")
        return True

    @staticmethod
    def _rename(graph: Graph) -> None:
        """Name each layer after the linear node of its first synapse ('layer1.0.conv2'), unique and stable."""
        rename, used = {"input": "input"}, {"input"}
        for node in graph:
            if node.op != "neuron":
                continue
            origins = [s.origin for s in node.attrs["synapses"] if s.origin]
            base = origins[0] if origins else node.name
            name, k = base, 1
            while name in used:
                name, k = f"{base}_{k}", k + 1
            used.add(name)
            rename[node.name] = name
        nodes = {}
        for node in graph:
            node.name = rename[node.name]
            node.inputs = [rename[i] for i in node.inputs]
            for syn in node.attrs.get("synapses", []):
                syn.source = rename[syn.source]
            nodes[node.name] = node
        graph.nodes, graph.output = nodes, rename[graph.output]
