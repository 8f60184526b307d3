"""LowerAvgPool: average pooling is a depthwise convolution with constant weights 1/(kh·kw)."""

from __future__ import annotations

import numpy as np

from qcfs.errors import UnsupportedOpError
from qcfs.toolchain.graph import Graph, Node, describe_node
from qcfs.toolchain.passes.base import Pass


class LowerAvgPool(Pass):
    """AvgPool_k,s,p(x) == DepthwiseConv(x; W = 1/(kh·kw), stride s, zero pads p) when padding counts in the
    divisor (count_include_pad=1 or no padding); ComposeLinear then folds it into the next synapse."""

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op != "avgpool":
                continue
            a = node.attrs
            if any(a["pads"]) and not a["count_include_pad"]:
                raise UnsupportedOpError(
                    f"{describe_node(node)}: padded average pooling with count_include_pad=0 divides border windows "
                    "by fewer elements and is not linear-shift-invariant; use count_include_pad=1 or no padding")
            c = node.shape[0]
            kh, kw = a["kernel"]
            w = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
            attrs = dict(weight=w, bias=np.zeros(c), stride=tuple(a["stride"]), pads=tuple(a["pads"]), groups=c)
            graph.nodes[node.name] = Node(node.name, "conv", node.inputs, node.shape, attrs, node.onnx_name, node.onnx_op)
            self.note(f"{node.name}: {kh}×{kw}/s{a['stride'][0]} pool -> depthwise conv")
            changed = True
        return changed
