"""FoldLambda: move every λ into the weights so each IF layer fires at θ = 1 and a spike carries 1."""

from __future__ import annotations

from qcfs.toolchain.graph import Graph
from qcfs.toolchain.passes.base import Pass


class FoldLambda(Pass):
    """λ_k·clip(floor(z·L/λ_k + φ)/L, 0, 1) with z = Σ_j W_j·(λ_j·a_j) + b equals λ_k·a_k where
    a_k = clip(floor(z'·L + φ), 0, L)/L and z' = Σ_j (W_j·λ_j/λ_k)·a_j + b/λ_k: θ = 1, spikes carry 1; the
    input (λ = 1) folds nothing and the readout divides by nothing (its output is unchanged)."""

    def apply(self, graph: Graph) -> bool:
        carries = {n.name: n.attrs["carries"] for n in graph if n.op == "neuron"}
        if all(c == 1.0 for c in carries.values()) and all(
                n.attrs["threshold"] == 1.0 for n in graph if n.op == "neuron" and n.attrs["kind"] == "if"):
            return False
        for node in graph:
            if node.op != "neuron":
                continue
            a = node.attrs
            own = a["threshold"] if a["kind"] == "if" else 1.0
            for syn in a["synapses"]:
                syn.weight = syn.weight * (carries.get(syn.source, 1.0) / own)
            a["bias"] = a["bias"] / own
            if a["kind"] == "if":
                a["threshold"], a["carries"] = 1.0, 1.0
                a["v_init"] = a["phi"]
                self.note(f"{node.name}: λ={a['lam']:.4g} folded, θ = 1")
        return True
