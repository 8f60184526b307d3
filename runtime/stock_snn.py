"""NumPy models of the neuron semantics *other* tools give our exported files: stock lava-dl netx (Lava's
CUBA/LIF, bit-accurate fixed point) and stock NIR (IF: v += r·I, spike on v > v_thr, v ← v_reset).

Why: QCFS's exactness rests on reset by subtraction and v(0) = θ/2; netx and NIR cannot say either. These
models put a number on what a user of the stock tools gets (BENCHMARKS.md "Formats") and are the references
the Lava stock run (qcfs.runtime.lava.netx_network) is checked against bit for bit.

Structure: any IntNet-shaped network (layers, synapses, biases) simulated layer-synchronously and batched; the
neuron update is a `NeuronRule` per layer. Synaptic currents are the NumPy runtime's exact GEMMs
(qcfs.runtime.numpy_synapse: float32 where every partial sum stays below 2^24, else float64 below 2^53). Layer-synchronous equals Lava's pipelined
stream here for the same reason as in qcfs.semantics: every layer (Lava's LIFReset too) resets at the start
of its own window and sees its source's spikes of the same window step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from qcfs.intnet import IntNet
from qcfs.runtime.numpy_synapse import FLOAT32_EXACT_LIMIT, SynapsePlan, exact_bound
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input

LIF_UV_MAX = 1 << 23  # Lava LIF: 24-bit u and v
LIF_SHIFT = 6  # Lava LIF: activation, bias (bias_exp 6 in netx) and threshold are MSB-aligned by 6 bits
DECAY_SHIFT = 12


class NeuronRule(Protocol):
    def init(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]: ...

    def step(self, state: dict[str, np.ndarray], current: np.ndarray) -> np.ndarray | None: ...

    def value(self, state: dict[str, np.ndarray]) -> np.ndarray: ...


def _decay(x: np.ndarray, keep: int) -> np.ndarray:
    """Lava's fixed-point decay: sign(x·keep) · (|x·keep| >> 12), int64."""
    p = x * keep
    return np.sign(p) * np.right_shift(np.abs(p), DECAY_SHIFT)


@dataclass
class LavaCubaRule:
    """Lava's PyLifResetModelBitAcc / PyLifModelBitAcc as netx builds it from a CUBA neuron group
    (du = iDecay − 1, dv = vDecay, bias_exp = 6, vth = vThMant). State in Lava's units (2^6 per unit)."""

    vth_mant: int
    du: int
    dv: int
    bias_mant: np.ndarray  # channel-last broadcastable
    spikes: bool = True  # False: report the membrane only (readout); it still resets if it ever exceeds vth

    def init(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"u": np.zeros(shape, np.int64), "v": np.zeros(shape, np.int64)}

    def step(self, state: dict[str, np.ndarray], current: np.ndarray) -> np.ndarray | None:
        m = LIF_UV_MAX
        u = np.left_shift(current, LIF_SHIFT)
        keep_u = (1 << DECAY_SHIFT) - (self.du + 1)
        if keep_u:  # iDecay 4096 (what qcfs exports): the current keeps nothing of the last step
            u += _decay(state["u"], keep_u)
        if u.size and (u.max() > m or u.min() <= -m):
            wrapped = np.where(u > m, u - 2 * m, u)
            u = np.where(wrapped <= -m, u + 2 * m, wrapped)  # as Lava writes it (second test on u)
        state["u"] = u
        v = state["v"]
        if self.dv:  # vDecay 0: sign(v·4096)·(|v·4096| >> 12) = v exactly
            v = _decay(v, (1 << DECAY_SHIFT) - self.dv)
        v += u
        v += np.left_shift(self.bias_mant, LIF_SHIFT)
        np.clip(v, -m + 1, m - 1, out=v)
        s = v > (self.vth_mant << LIF_SHIFT)
        v[s] = 0
        state["v"] = v
        return s if self.spikes else None

    def value(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["v"]


@dataclass
class NirIFRule:
    """NIR IF discretised with dt = 1 as stock readers do: v ← v + r·I; z = v > v_thr; v ← v_reset where z;
    v(0) = 0 (NIR has no initial state). `integrator=True` is NIR's I (no spikes): the readout."""

    r: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    integrator: bool = False

    def init(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.zeros(shape, np.float64)}

    def step(self, state: dict[str, np.ndarray], current: np.ndarray) -> np.ndarray | None:
        v = state["v"]
        v += self.r * current
        if self.integrator:
            return None
        s = v > self.v_threshold
        v[s] = np.broadcast_to(self.v_reset, v.shape)[s]
        return s

    def value(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["v"]


@dataclass
class QcfsRule:
    """qcfs.semantics itself (for checking an interpreter against the NumPy runtime): v(0) = v_init,
    v += I, saturate, spike on v ≥ θ, subtract θ."""

    threshold: int | float
    v_init: np.ndarray
    limits: tuple[int, int] | None
    integrator: bool = False

    def init(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        dtype = np.int64 if self.limits is not None else np.float64
        return {"v": np.broadcast_to(np.asarray(self.v_init, dtype=dtype), shape).copy()}

    def step(self, state: dict[str, np.ndarray], current: np.ndarray) -> np.ndarray | None:
        v = state["v"]
        v += current.astype(v.dtype)
        if self.integrator:
            return None
        if self.limits is not None:
            np.clip(v, self.limits[0], self.limits[1], out=v)
        s = v >= self.threshold
        v[s] -= v.dtype.type(self.threshold)
        return s

    def value(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["v"]


def channel_last(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel (C,) or full (C, H, W) array as something that broadcasts over [B, H, W, C] state."""
    a = np.asarray(a)
    if len(shape) == 3 and a.size == int(np.prod(shape)):
        return a.reshape(shape).transpose(1, 2, 0)
    return a.reshape(-1) if len(shape) == 3 else a.reshape(shape)


def simulate_rules(net: IntNet, rules: dict[str, NeuronRule], images01: np.ndarray, Ts: list[int], *,
                   integer_input: bool = True, add_bias: bool = True, batch_size: int = 256,
                   progress: bool = True, backend: str = "numpy-stock") -> SimResult:
    """Simulate `net`'s structure with `rules[layer]` as the neuron of every layer. `add_bias`: add each
    layer's bias to its current (NIR: the synapse node's bias); False when the rule holds it (Lava's LIF).
    logits[T] = the readout rule's value after T steps; spikes[T][layer] = per-sample counts."""
    Ts = sorted({int(t) for t in Ts})
    images01 = np.asarray(images01)
    if images01.ndim == 3:
        images01 = images01[:, None]
    x_all = encode_input(images01, net.input.mean, net.input.std, net.input.scale if integer_input else None,
                         net.input.bits)
    shapes = {"input": tuple(net.input.shape)}
    plans, biases = [], []
    for layer in net.layers:
        lp = []
        for s in layer.synapses:  # float32 GEMMs where every partial sum is an exact integer (spike sources)
            exact32 = integer_input and s.source != "input" and exact_bound(s.weight, s.pool.size if s.pool else 1.0) \
                < FLOAT32_EXACT_LIMIT
            lp.append((SynapsePlan(s, shapes[s.source], np.dtype(np.float32 if exact32 else np.float64)), s.source))
        plans.append(lp)
        b = channel_last(np.asarray(layer.bias, np.float64), tuple(layer.shape))
        biases.append(np.rint(b).astype(np.int64) if integer_input else b)
        shapes[layer.name] = tuple(layer.shape)
    n = len(x_all)
    if_names = [layer.name for layer in net.layers[:-1]]
    logits = {t: np.zeros((n, net.num_classes), dtype=np.int64 if integer_input else np.float64) for t in Ts}
    spikes = {t: {name: np.zeros(n, dtype=np.int64) for name in if_names} for t in Ts}
    for start in tqdm(range(0, n, batch_size), desc=backend, disable=not progress, leave=False):
        x = np.ascontiguousarray(x_all[start:start + batch_size].transpose(0, 2, 3, 1))
        b = len(x)
        state = {}
        for layer in net.layers:
            cl = (layer.shape[1], layer.shape[2], layer.shape[0]) if len(layer.shape) == 3 else tuple(layer.shape)
            state[layer.name] = rules[layer.name].init((b, *cl))
        out: dict[str, np.ndarray] = {"input": x}
        counts = {name: np.zeros(b, dtype=np.int64) for name in if_names}
        const = {}
        for t in range(1, Ts[-1] + 1):
            for layer, lplans, bias in zip(net.layers, plans, biases):
                cur = None
                for plan, src in lplans:
                    if src == "input":
                        if layer.name not in const:
                            c0 = plan(out["input"])
                            const[layer.name] = np.rint(c0).astype(np.int64) if integer_input else c0.copy()
                        c = const[layer.name]
                    else:
                        c = plan(out[src])
                    c = c.astype(np.int64) if integer_input else np.array(c, dtype=np.float64)
                    cur = c if cur is None else cur + c
                if add_bias:
                    cur = cur + bias
                s = rules[layer.name].step(state[layer.name], cur)
                if layer.kind != "readout":
                    s = np.zeros(cur.shape, bool) if s is None else s
                    out[layer.name] = s
                    counts[layer.name] += np.count_nonzero(s.reshape(b, -1), axis=1)
            if t in Ts:
                ro = net.readout
                val = rules[ro.name].value(state[ro.name])
                if len(ro.shape) == 3:
                    val = val.transpose(0, 3, 1, 2)
                logits[t][start:start + b] = val.reshape(b, -1)
                for name in if_names:
                    spikes[t][name][start:start + b] = counts[name]
    return SimResult(Ts=Ts, logits=logits, spikes=spikes, backend=backend, timing="sync")
