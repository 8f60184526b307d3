"""Layer-major, exact spike trains of an integer IntNet on a calibration set (layer-synchronous timing).

Why layer-major: calibration tunes one layer at a time in topological order, so every layer's T-step input
current is one batched GEMM over the stored spike trains of its (already calibrated) sources — each layer is
simulated once, and the cost grows with the number of layers, not its square. The IF recurrence itself is
qcfs.semantics.fire, the same step every backend runs, so the trains are exactly what a runtime produces.

Layout: channel-last like the NumPy runtime ([N, H, W, C] or [N, n]); trains are bool [T, N, ...]. Synaptic
currents exclude the layer's bias (calibration changes it) and are exact integers (the GEMM dtype is chosen by
the same 2^24 / 2^53 bounds as qcfs.runtime.numpy_snn).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qcfs.intnet import IntNet, Layer
from qcfs.runtime.numpy_synapse import (
    FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT, SynapsePlan, channel_last, exact_bound,
)
from qcfs.semantics import fire, membrane_limits

CHUNK_ELEMENTS = 1 << 24  # output elements per GEMM call (bounds the float scratch to ~128 MB)


@dataclass
class LayerCurrent:
    """A layer's bias-free input current over T steps: `spiking` [T, N, ...] (or None) + `constant` [N, ...]."""

    spiking: np.ndarray | None
    constant: np.ndarray | None

    @cached_property
    def max_abs(self) -> int:
        """Bound on |I(t)| (bias excluded) over all steps and neurons (computed once: the search reuses it)."""
        m = 0
        if self.spiking is not None:
            m += int(max(self.spiking.max(initial=0), -self.spiking.min(initial=0)))
        if self.constant is not None:
            m += int(max(self.constant.max(initial=0), -self.constant.min(initial=0)))
        return m

    def total(self, T: int) -> np.ndarray:
        """Σ_t I(t) over T steps (int64), bias excluded."""
        tot = 0 if self.spiking is None else self.spiking.sum(axis=0, dtype=np.int64)
        if self.constant is not None:
            tot = tot + T * self.constant.astype(np.int64)
        return np.asarray(tot, dtype=np.int64)


def _spike_max(syn) -> float:  # type: ignore[no-untyped-def]
    """Largest value a spike source delivers to the weights: 1, or kh·kw through a sum-pool stage."""
    return float(syn.pool.size) if syn.pool is not None else 1.0


def _gemm_dtype(layer: Layer, spiking: bool, x_max: float) -> np.dtype:
    bound = sum(exact_bound(s.weight, _spike_max(s) if spiking else x_max) for s in layer.synapses
                if (s.source != "input") == spiking)
    if bound >= FLOAT64_EXACT_LIMIT:
        raise ValueError(f"layer {layer.name}: partial sums up to {bound:.3g} are not exact in float64")
    return np.dtype(np.float32 if bound < FLOAT32_EXACT_LIMIT else np.float64)


def _store_dtype(layer: Layer, x_max: float) -> np.dtype:
    bound = sum(exact_bound(s.weight, _spike_max(s) if s.source != "input" else x_max) for s in layer.synapses)
    return np.dtype(np.int32 if bound < 2**31 else np.int64)


def layer_current(net: IntNet, layer: Layer, trains: dict[str, np.ndarray], x_nhwc: np.ndarray) -> LayerCurrent:
    """Exact synaptic current of `layer` at every step, from its sources' stored trains (and the input)."""
    shapes = {"input": tuple(net.input.shape), **{lay.name: tuple(lay.shape) for lay in net.layers}}
    x_max = float(1 << (net.input.bits - 1))
    store = _store_dtype(layer, x_max)
    out_shape = channel_last(tuple(layer.shape))
    n = len(x_nhwc)
    spiking = constant = None
    spk = [s for s in layer.synapses if s.source != "input"]
    if spk:
        T = next(iter(trains[s.source] for s in spk)).shape[0]
        dtype = _gemm_dtype(layer, True, x_max)
        plans = [(SynapsePlan(s, shapes[s.source], dtype), s.source) for s in spk]
        spiking = np.empty((T, n, *out_shape), dtype=store)
        per_image = int(np.prod(out_shape))
        chunk = max(1, CHUNK_ELEMENTS // max(1, per_image * T))
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            acc = None
            for plan, src in plans:
                src_tr = trains[src][:, a:b]
                c = plan(np.ascontiguousarray(src_tr.reshape(-1, *src_tr.shape[2:]), dtype=dtype))
                acc = c.astype(np.float64) if acc is None else acc + c
            spiking[:, a:b] = np.rint(acc).reshape(T, b - a, *out_shape).astype(store)
    inp = [s for s in layer.synapses if s.source == "input"]
    if inp:
        plans_in = [SynapsePlan(s, shapes["input"], np.dtype(np.float64)) for s in inp]
        constant = np.empty((n, *out_shape), dtype=store)
        chunk = max(1, CHUNK_ELEMENTS // max(1, int(np.prod(out_shape))))
        for a in range(0, n, chunk):
            xs = np.ascontiguousarray(x_nhwc[a:a + chunk], dtype=np.float64)
            constant[a:a + chunk] = np.rint(sum(p(xs) for p in plans_in)).astype(store)
    return LayerCurrent(spiking, constant)


def run_if(current: LayerCurrent, T: int, bias: np.ndarray, v_init: np.ndarray, theta: int, membrane_bits: int,
           keep_trains: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """IF layer for T steps (qcfs.semantics): bias and v_init per channel (broadcast over channel-last).
    Returns (trains bool [T, N, ...] or None, counts int32 [N, ...])."""
    ref = current.spiking[0] if current.spiking is not None else current.constant
    assert ref is not None
    limits = membrane_limits(membrane_bits)
    # int32 membranes halve the memory traffic of the search's many runs where no sum can leave int32
    reach = (1 << (membrane_bits - 1)) + current.max_abs + int(np.abs(bias).max(initial=0))
    v = np.empty(ref.shape, dtype=np.int32 if reach < 2**31 and membrane_bits <= 31 else np.int64)
    v[...] = v_init
    counts = np.zeros(ref.shape, dtype=np.int16 if T < 2**15 else np.int32)
    trains = np.empty((T, *ref.shape), dtype=bool) if keep_trains else None
    s = np.empty(ref.shape, dtype=bool)
    for t in range(T):
        if current.spiking is not None:
            v += current.spiking[t]
        if current.constant is not None:
            v += current.constant
        v += bias
        fire(v, theta, limits, s)
        counts += s
        if trains is not None:
            trains[t] = s
    return trains, counts
