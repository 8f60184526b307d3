"""FoldLambda: move every λ into the weights so each IF layer fires at θ = 1 and a spike carries 1."""

from __future__ import annotations

import numpy as np

from qcfs.toolchain.graph import Graph, SynapseIR
from qcfs.toolchain.passes.base import Pass


def _vec(value: object) -> np.ndarray:
    """A λ (one float, or one per channel/unit in broadcasting shape) as a flat vector (size 1 or C)."""
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _row_factor(own: np.ndarray, rows: int) -> np.ndarray:
    """One factor per output row (conv: output channel; dense: output unit, C·H·W order for a [C,H,W] layer)."""
    if own.size == 1:
        return np.full(rows, own[0])
    return own if own.size == rows else np.repeat(own, rows // own.size)


def _column_factor(syn: SynapseIR, carries: np.ndarray, src_shape: tuple[int, ...]) -> np.ndarray | float:
    """What one unit of each weight column's source carries: per input channel (conv, grouped) or per flattened
    source element (dense, C·H·W order)."""
    if carries.size == 1:
        return float(carries[0])
    w = syn.weight
    if syn.kind == "conv":
        o, ig = w.shape[:2]
        og = o // syn.groups
        chan = (np.arange(o)[:, None] // og) * ig + np.arange(ig)[None, :]  # input channel of weight [o, i]
        return carries[chan][:, :, None, None]
    per = int(np.prod(src_shape[1:])) if len(src_shape) == 3 else 1
    return np.repeat(carries, per)[None, :]


def _fmt(lam: object) -> str:
    v = _vec(lam)
    return f"{v[0]:.4g}" if v.size == 1 else f"per channel [{v.min():.4g}, {v.max():.4g}] ({v.size})"


class FoldLambda(Pass):
    """λ_k·clip(floor(z·L/λ_k + φ)/L, 0, 1) with z = Σ_j W_j·(λ_j·a_j) + b equals λ_k·a_k where
    a_k = clip(floor(z'·L + φ), 0, L)/L and z' = Σ_j (W_j·λ_j/λ_k)·a_j + b/λ_k: θ = 1, spikes carry 1; the
    input (λ = 1) folds nothing and the readout divides by nothing (its output is unchanged). Per-channel λ
    (one per output channel or unit) folds the same way, row by row and column by column."""

    def apply(self, graph: Graph) -> bool:
        carries = {n.name: _vec(n.attrs["carries"]) for n in graph if n.op == "neuron"}
        if all(np.all(c == 1.0) for c in carries.values()) and all(
                np.all(_vec(n.attrs["threshold"]) == 1.0) for n in graph
                if n.op == "neuron" and n.attrs["kind"] == "if"):
            return False
        for node in graph:
            if node.op != "neuron":
                continue
            a = node.attrs
            own = _vec(a["threshold"]) if a["kind"] == "if" else np.ones(1)
            for syn in a["synapses"]:
                rows = _row_factor(own, syn.weight.shape[0])
                cols = _column_factor(syn, carries.get(syn.source, np.ones(1)), syn.read_shape(graph[syn.source].shape))
                w = syn.weight * cols  # then divided in place: one weight-sized temporary, the same floats
                w /= rows.reshape((-1,) + (1,) * (syn.weight.ndim - 1))
                syn.weight = w
            a["bias"] = a["bias"] / _row_factor(own, np.asarray(a["bias"]).shape[0])
            if a["kind"] == "if":
                self.note(f"{node.name}: λ={_fmt(a['lam'])} folded, θ = 1")
                a["threshold"], a["carries"] = 1.0, 1.0
                a["v_init"] = a["phi"]
        return True
