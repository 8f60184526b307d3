"""Quantize (mode="int"): integer weights, biases and even thresholds that fit the hardware profile."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from qcfs.errors import HardwareFitError, QCFSError
from qcfs.intnet import HardwareProfile
from qcfs.semantics import membrane_limits
from qcfs.toolchain.graph import Graph, Node, SynapseIR
from qcfs.toolchain.passes.base import Pass
from qcfs.toolchain.passes.linear import BLOCK_BYTES, expand_groups


def theta_step(phi: float) -> int:
    """Smallest even θ with θ·φ integral (2 for φ = 0.5): thresholds are multiples of it so v_init is exact."""
    frac = Fraction(phi).limit_denominator(1 << 16)
    if abs(float(frac) - phi) > 1e-12:
        raise QCFSError(f"shift φ={phi} is not a simple fraction; integer mode needs θ·φ integral")
    return 2 * frac.denominator // math.gcd(2, frac.denominator)


def input_scale(mean: np.ndarray, std: np.ndarray, bits: int) -> float:
    """(2^(bits−1) − 1) / max |normalized pixel| over pixels in [0, 1]: the full input range is used."""
    peak = float(np.max(np.maximum(np.abs(0.0 - mean) / std, np.abs(1.0 - mean) / std)))
    return ((1 << (bits - 1)) - 1) / peak


def input_bounds(mean: np.ndarray, std: np.ndarray, scale: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel range of the quantized input x_int over pixels in [0, 1]."""
    lo_lim, hi_lim = membrane_limits(bits)
    ends = np.clip(np.rint(np.stack([(0.0 - mean) / std, (1.0 - mean) / std]) * scale), lo_lim, hi_lim)
    return ends.min(axis=0), ends.max(axis=0)




def abs_max(w: np.ndarray) -> float:
    """max |w| (0 for an empty array) without the full-size copy np.abs would make."""
    return float(max(w.max(initial=0.0), -w.min(initial=0.0)))


def scaled_rint(w: np.ndarray, scale: float) -> np.ndarray:
    """np.rint(w * scale) with one full-size array instead of two."""
    out = np.multiply(w, scale)
    return np.rint(out, out=out)


def max_current(syn: SynapseIR, lo: np.ndarray, hi: np.ndarray, src_shape: tuple[int, ...]) -> np.ndarray:
    """Per output channel/unit: the largest current the synapse can deliver in one step, given per-channel
    source bounds lo..hi (spikes: 0..1). Computed in blocks of output rows: each row's sum is the same
    reduction as over the whole matrix, so the result is identical, without three weight-sized temporaries."""
    if syn.kind == "conv":
        w = expand_groups(syn.weight, syn.groups)
        shape = (1, -1, 1, 1)
    else:
        w = syn.weight
        per = int(np.prod(src_shape[1:])) if len(src_shape) == 3 else 1
        lo, hi = np.repeat(lo, per), np.repeat(hi, per)
        shape = (1, -1)
    lo_b, hi_b = lo.reshape(shape), hi.reshape(shape)
    rows = w.shape[0]
    per_row = max(1, int(np.prod(w.shape[1:])) * 8 * 3)
    step = max(1, BLOCK_BYTES // per_row)
    out = np.empty(rows, dtype=np.result_type(w, lo, hi))
    for r in range(0, rows, step):
        blk = w[r : r + step]
        best = np.maximum(blk * hi_b, blk * lo_b)
        out[r : r + step] = best.reshape(len(blk), -1).sum(axis=1)
    return out


class Quantize(Pass):
    """floor(z·L + φ) == floor((θ·z)·L/θ + φ): one even integer θ per IF layer scales its weights, bias and
    threshold (rounding θ·z's parts to integers is the only approximation; θ is the largest that fits)."""

    def __init__(self, profile: HardwareProfile) -> None:
        super().__init__()
        self.profile = profile

    # --- helpers -------------------------------------------------------------------------------------
    def _source_bounds(self, graph: Graph, source: str) -> tuple[np.ndarray, np.ndarray]:
        if source == "input":
            a = graph["input"].attrs
            return a["qlo"], a["qhi"]
        c = graph[source].shape[0]
        return np.zeros(c), np.ones(c)

    def _scaled(self, graph: Graph, node: Node) -> list[np.ndarray]:
        """Synapse weights in units of integer source values (the image path divides by the input scale)."""
        in_scale = graph["input"].attrs["scale"]
        return [s.weight / in_scale if s.source == "input" else s.weight for s in node.attrs["synapses"]]

    def _peak_current(self, graph: Graph, node: Node, wq: list[np.ndarray], bq: np.ndarray) -> float:
        total = bq.astype(np.float64).copy()
        for syn, w in zip(node.attrs["synapses"], wq):
            lo, hi = self._source_bounds(graph, syn.source)
            q = SynapseIR(syn.source, syn.kind, w, syn.stride, syn.pads, syn.groups)
            # a pooled synapse reads window sums of 0..kh·kw spikes
            total = total + max_current(q, lo, hi * syn.read_max, syn.read_shape(graph[syn.source].shape))
        return float(total.max())

    # --- layers --------------------------------------------------------------------------------------
    def _if_layer(self, graph: Graph, node: Node, step: int) -> None:
        p = self.profile
        qmax, bmax = (1 << (p.weight_bits - 1)) - 1, (1 << (p.bias_bits - 1)) - 1
        tmax, vmax = (1 << (p.threshold_bits - 1)) - 1, (1 << (p.membrane_bits - 1)) - 1
        ws, b = self._scaled(graph, node), node.attrs["bias"]
        wmax = max(abs_max(w) for w in ws)
        theta = tmax if wmax == 0 else min(tmax, math.floor((qmax + 0.5) / wmax))
        theta -= theta % step
        reason = (f"weight {wmax:.6g} (in threshold units) needs |w·θ| ≤ {qmax} ({p.weight_bits}-bit) "
                  f"with an even θ ≥ {step}")
        while theta >= step:
            wq = []  # the previous θ's weights go before the next are made
            wq = [scaled_rint(w, theta) for w in ws]
            bq = np.rint(b * theta)
            peak_w = max(abs_max(w) for w in wq)
            if peak_w > qmax:
                reason = f"weight {peak_w:.0f} at θ={theta} exceeds {qmax} ({p.weight_bits}-bit)"
                theta -= step
                continue
            peak_b = float(np.abs(bq).max(initial=0.0))
            if peak_b > bmax:
                reason = f"bias {peak_b:.0f} at θ={theta} exceeds {bmax} ({p.bias_bits}-bit)"
                theta = min(theta - step, math.floor(theta * bmax / peak_b))
                theta -= theta % step
                continue
            bound = theta - 1 + self._peak_current(graph, node, wq, bq)
            if bound > vmax:
                reason = (f"membrane bound θ−1+max current = {bound:.0f} at θ={theta} exceeds {vmax} "
                          f"({p.membrane_bits}-bit)")
                theta = min(theta - step, math.floor(theta * (vmax + 1) / (bound + 1)))
                theta -= theta % step
                continue
            break
        else:
            raise HardwareFitError(f"layer {node.name!r} does not fit profile {p.name!r}: {reason}")
        for syn, w in zip(node.attrs["synapses"], wq):
            syn.weight = w
        a = node.attrs
        a.update(bias=bq, threshold=int(theta), v_init=int(round(theta * a["phi"])), carries=1.0)
        self.note(f"{node.name}: θ={theta}, max|w|={peak_w:.0f}, max current bound {bound:.0f}")

    def _readout(self, graph: Graph, node: Node) -> None:
        p = self.profile
        qmax, bmax = (1 << (p.weight_bits - 1)) - 1, (1 << (p.bias_bits - 1)) - 1
        ws, b = self._scaled(graph, node), node.attrs["bias"]
        wmax = max(abs_max(w) for w in ws)
        scale = qmax / wmax if wmax > 0 else 1.0
        if np.abs(b).max(initial=0.0) * scale > bmax:
            scale = bmax / float(np.abs(b).max())
        wq = [scaled_rint(w, scale) for w in ws]
        if max(abs_max(w) for w in wq) > qmax:  # pragma: no cover - guarded by scale
            raise HardwareFitError(f"layer {node.name!r}: readout weights do not fit {p.weight_bits} bits")
        for syn, w in zip(node.attrs["synapses"], wq):
            syn.weight = w
        node.attrs.update(bias=np.rint(b * scale), scale=float(scale))
        self.note(f"{node.name}: readout scale {scale:.6g}")

    def apply(self, graph: Graph) -> bool:
        inp = graph["input"]
        if inp.attrs.get("scale") is not None:
            return False
        bits = self.profile.input_bits
        mean, std = inp.attrs["mean"], inp.attrs["std"]
        scale = input_scale(mean, std, bits)
        lo, hi = input_bounds(mean, std, scale, bits)
        inp.attrs.update(scale=scale, bits=bits, qlo=lo, qhi=hi)
        self.note(f"input: {bits}-bit, scale {scale:.6g}")
        neurons = [n for n in graph if n.op == "neuron"]
        step = theta_step(neurons[-1].attrs["phi"]) if neurons else 2
        for node in neurons:
            if node.attrs["kind"] == "if":
                self._if_layer(graph, node, step)
            else:
                self._readout(graph, node)
        return True
