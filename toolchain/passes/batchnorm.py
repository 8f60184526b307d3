"""FoldBatchNorm: inference BatchNormalization is a per-channel affine map, merged into the map before it."""

from __future__ import annotations

import numpy as np

from qcfs.toolchain.graph import LINEAR_OPS, Graph
from qcfs.toolchain.passes.base import Pass
from qcfs.toolchain.passes.linear import affine_node


class FoldBatchNorm(Pass):
    """BN(Wx + b) == (γ/σ·W)x + (γ/σ·(b − μ) + β), σ = sqrt(var + ε); a BN elsewhere becomes that affine map."""

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op != "bn":
                continue
            a = node.attrs
            inv = a["scale"] / np.sqrt(a["var"] + a["eps"])
            shift = a["bias"] - a["mean"] * inv
            prod = graph[node.inputs[0]]
            if prod.op in LINEAR_OPS and graph.uses(prod.name) == 1:
                w = prod.attrs["weight"]
                prod.attrs["weight"] = w * inv.reshape((-1,) + (1,) * (w.ndim - 1))
                prod.attrs["bias"] = prod.attrs["bias"] * inv + shift
                graph.bypass(node.name)
                self.note(f"folded {node.name} into {prod.name}")
            else:  # not after a private linear map: keep it as an explicit affine map for ComposeLinear
                graph.nodes[node.name] = affine_node(node.name, node.inputs[0], node.shape, inv, shift, node)
                self.note(f"{node.name} -> per-channel affine map (after {prod.op})")
            changed = True
        return changed
