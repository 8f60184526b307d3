"""ComposeLinear: two linear maps with no activation between them are one map (how pooling is folded)."""

from __future__ import annotations

from qcfs.errors import UnsupportedOpError
from qcfs.toolchain.graph import LINEAR_OPS, Graph, describe_node
from qcfs.toolchain.passes.base import Pass
from qcfs.toolchain.passes.linear import compose_conv, conv_as_dense, dense_as_conv


class ComposeLinear(Pass):
    """L2(L1(x)) == L(x): conv∘conv is one conv (composed kernel, stride s1·s2, padding b2·s1 + b1), dense∘conv
    and dense∘dense are one dense; exact with zero padding (checked, else UnsupportedOpError)."""

    fixpoint = True

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op not in LINEAR_OPS:
                continue
            src = node.inputs[0]
            while graph[src].op == "flatten":  # a dense reads its input flattened anyway
                src = graph[src].inputs[0]
            prod = graph[src]
            if prod.op not in LINEAR_OPS:
                continue
            in_shape = graph[prod.inputs[0]].shape
            if node.op == "dense" and prod.op == "dense":
                w2 = node.attrs["weight"]
                attrs = dict(weight=w2 @ prod.attrs["weight"], bias=w2 @ prod.attrs["bias"] + node.attrs["bias"])
            else:
                second = node.attrs if node.op == "conv" else dense_as_conv(node.attrs, prod.shape)
                attrs = compose_conv(prod.attrs, in_shape, second)
                if isinstance(attrs, str):
                    raise UnsupportedOpError(
                        f"{describe_node(prod)} then {describe_node(node)}: no activation between them and they "
                        f"are not one convolution: {attrs}; change sizes/padding or put a QCFS between them")
                if node.op == "dense":
                    attrs = conv_as_dense(attrs, in_shape)
            node.attrs = attrs
            node.inputs = [prod.inputs[0]]
            self.note(f"merged {prod.name} ({prod.onnx_op}) into {node.name} ({node.onnx_op})")
            changed = True
        graph.prune()
        return changed
