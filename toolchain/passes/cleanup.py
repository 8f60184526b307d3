"""Passes that remove no-ops and merge constant additions into the preceding linear map."""

from __future__ import annotations

import numpy as np

from qcfs.errors import UnsupportedOpError
from qcfs.toolchain.graph import LINEAR_OPS, Graph, describe_node
from qcfs.toolchain.passes.base import Pass
from qcfs.toolchain.passes.linear import affine_node


class DropIdentity(Pass):
    """Dropout (inference) and Identity are the identity map: readers read the node's input instead."""

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op == "identity" or (node.op == "flatten" and graph[node.inputs[0]].shape == node.shape):
                graph.bypass(node.name)
                self.note(f"dropped {node.name} ({node.onnx_op})")
                changed = True
        return changed


class FuseBiasAdd(Pass):
    """Linear(x) + c == Linear'(x) with bias' = bias + c, for c constant per channel (MatMul+Add -> Gemm)."""

    def apply(self, graph: Graph) -> bool:
        changed = False
        for node in graph:
            if node.op != "addconst":
                continue
            full = np.broadcast_to(node.attrs["value"], (1,) + node.shape)[0]
            per_channel = full.reshape(full.shape[0], -1)
            if not np.all(per_channel == per_channel[:, :1]):
                raise UnsupportedOpError(
                    f"{describe_node(node)}: adds a constant that varies over space; only per-channel biases convert")
            c = per_channel[:, 0].astype(np.float64)
            prod = graph[node.inputs[0]]
            if prod.op in LINEAR_OPS and graph.uses(prod.name) == 1:
                prod.attrs["bias"] = prod.attrs["bias"] + c
                graph.bypass(node.name)
                self.note(f"added bias {node.name} into {prod.name}")
            else:  # a bias on a population or shared map: an explicit affine map that ComposeLinear merges
                graph.nodes[node.name] = affine_node(node.name, node.inputs[0], node.shape, np.ones_like(c), c, node)
                self.note(f"{node.name} -> per-channel affine map")
            changed = True
        return changed
