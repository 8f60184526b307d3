"""KeepSumPool (--pool separate): average pooling stays a stage of its own, a sum of each window of spikes."""

from __future__ import annotations

from qcfs.intnet import SumPool
from qcfs.toolchain.graph import LINEAR_OPS, Graph, Node
from qcfs.toolchain.passes.base import Pass


def readers(graph: Graph, name: str) -> list[Node]:
    return [n for n in graph if name in n.inputs]


def _linear_readers(graph: Graph, name: str) -> list[Node] | None:
    """The linear nodes that read `name` (directly, or a dense through flattens), or None when anything
    else reads it (an add, another pool, the output): such a pool is composed as before."""
    found: list[Node] = []
    if graph.output == name:
        return None
    for node in readers(graph, name):
        if node.op in LINEAR_OPS:
            found.append(node)
        elif node.op == "flatten":
            inner = _linear_readers(graph, node.name)
            if inner is None or any(n.op != "dense" for n in inner):
                return None
            found.extend(inner)
        else:
            return None
    return found or None


class KeepSumPool(Pass):
    """L(AvgPool_k(s)) == (L/(kh·kw))(SumPool_k(s)): an average pool of spikes s read only by linear maps L
    becomes a sum-pool stage (integer window sums) and its 1/(kh·kw) is multiplied into those maps' weights,
    the same products W·(1/(kh·kw)) that composing the pool would form (identical integers when the windows do
    not overlap). Pools of anything but spikes, or read by anything but linear maps, are left to LowerAvgPool."""

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op != "avgpool":
                continue
            a = node.attrs
            if any(a["pads"]) and not a["count_include_pad"]:
                continue  # LowerAvgPool refuses it with the reason
            src = graph[node.inputs[0]]
            lins = _linear_readers(graph, node.name)
            if src.op != "qcfs" or lins is None:
                self.note(f"{node.name}: kept for composition (reads {src.op}, or is read by a non-linear node)")
                continue
            kh, kw = a["kernel"]
            factor = 1.0 / (kh * kw)  # the depthwise weight LowerAvgPool would use
            for lin in lins:
                lin.attrs = dict(lin.attrs, weight=lin.attrs["weight"] * factor)
            pool = SumPool(tuple(int(v) for v in a["kernel"]), tuple(int(v) for v in a["stride"]),
                           tuple(int(v) for v in a["pads"]))
            graph.nodes[node.name] = Node(node.name, "sumpool", node.inputs, node.shape, dict(pool=pool),
                                          node.onnx_name, node.onnx_op)
            self.note(f"{node.name}: {kh}×{kw}/s{a['stride'][0]} pool -> sum-pool stage, 1/{kh * kw} folded into "
                      + ", ".join(n.name for n in lins))
            changed = True
        return changed
