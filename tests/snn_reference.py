"""Test helpers: small random IntNets and a slow per-neuron simulation written directly from qcfs.semantics.

The brute force deliberately shares nothing with the runtime: C,H,W layout, explicit window loops, exact
int64 (or float64) scalar sums and one qcfs.semantics.if_step call per neuron per step.
"""

from __future__ import annotations

import numpy as np

from qcfs.intnet import HardwareProfile, InputSpec, IntNet, Layer, Synapse
from qcfs.semantics import encode_input, if_step, membrane_limits


def random_net(seed: int = 0, mode: str = "int", membrane_bits: int = 24, float32_exact: bool = True) -> IntNet:
    """Input 2×8×8 -> conv3×3 -> pool-composed conv4×4/s2 (asym. pads) -> grouped conv + 1×1/s2 residual
    (delay 1) -> conv3×3/s2 -> dense -> readout (dense + skip with delay 1). Depths are consistent."""
    rng = np.random.default_rng(seed)
    integer = mode == "int"

    def w(*shape: int, hi: int = 4) -> np.ndarray:
        a = rng.integers(-hi, hi + 1, size=shape)
        return a.astype(np.int64) if integer else a + rng.uniform(-0.5, 0.5, size=shape)

    def theta(t: int) -> float:
        return float(t) if integer else t * rng.uniform(0.8, 1.2)

    def layer(name, kind, shape, syns, th, depth, bias_hi=2):  # type: ignore[no-untyped-def]
        th = theta(th)
        return Layer(name=name, kind=kind, shape=shape, bias=w(shape[0], hi=bias_hi), threshold=th,
                     v_init=th / 2, synapses=syns, depth=depth, float32_exact=float32_exact)

    small = w(4, 4, 2, 2, hi=3)
    pooled = np.repeat(np.repeat(small, 2, axis=2), 2, axis=3)  # what composing a 2×2 avg pool yields
    layers = [
        layer("c1", "if", (4, 8, 8), [Synapse("input", "conv", w(4, 2, 3, 3, hi=3), padding=(1, 1, 1, 1))],
              200, 1, bias_hi=40),
        layer("c2", "if", (4, 4, 4), [Synapse("c1", "conv", pooled, stride=(2, 2), padding=(2, 0, 0, 2))], 8, 2),
        layer("c3", "if", (6, 4, 4), [
            Synapse("c2", "conv", w(6, 2, 3, 3), padding=(0, 1, 2, 1), groups=2),
            Synapse("c1", "conv", w(6, 4, 1, 1), stride=(2, 2), delay=1),
        ], 6, 3),
        layer("c4", "if", (4, 2, 2), [Synapse("c3", "conv", w(4, 6, 3, 3), stride=(2, 2), padding=(1, 1, 0, 0))],
              8, 4),
        layer("d1", "if", (10,), [Synapse("c4", "dense", w(10, 16))], 6, 5),
        layer("out", "readout", (5,), [Synapse("d1", "dense", w(5, 10)), Synapse("c4", "dense", w(5, 16), delay=1)],
              1, 6),
    ]
    return IntNet(
        mode=mode,  # type: ignore[arg-type]
        input=InputSpec(shape=(2, 8, 8), mean=(0.5, 0.4), std=(0.25, 0.3), scale=32.0 if integer else None),
        layers=layers,
        L=4,
        profile=HardwareProfile(membrane_bits=membrane_bits),
    )


def _neuron_input(syn: Synapse, src: np.ndarray, idx: tuple[int, ...], zero):  # type: ignore[no-untyped-def]
    """Σ w·x over one neuron's receptive field, as scalar sums (C,H,W source, torch conv conventions)."""
    wt = np.asarray(syn.weight)
    total = zero
    if syn.kind == "dense":
        flat = src.reshape(-1)
        for i in range(flat.shape[0]):
            total += wt[idx[0], i] * flat[i]
        return total
    o, y, x = idx
    og = wt.shape[0] // syn.groups
    cg = wt.shape[1]
    top, left = syn.padding[0], syn.padding[1]
    for ci in range(cg):
        c = (o // og) * cg + ci
        for ky in range(wt.shape[2]):
            for kx in range(wt.shape[3]):
                yy, xx = y * syn.stride[0] - top + ky, x * syn.stride[1] - left + kx
                if 0 <= yy < src.shape[1] and 0 <= xx < src.shape[2]:
                    total += wt[o, ci, ky, kx] * src[c, yy, xx]
    return total


def brute_force(net: IntNet, images01: np.ndarray, T: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Layer-synchronous reference: (logits [N, classes], spike counts per IF layer [N]) after T steps."""
    integer = net.mode == "int"
    dtype = np.int64 if integer else np.float64
    zero = dtype(0)
    lim = membrane_limits(net.profile.membrane_bits) if integer else None
    x = encode_input(images01, net.input.mean, net.input.std, net.input.scale if integer else None, net.input.bits)
    logits = np.zeros((len(x), net.num_classes), dtype=dtype)
    counts = {layer.name: np.zeros(len(x), dtype=np.int64) for layer in net.if_layers}
    for n in range(len(x)):
        v = {layer.name: _chw(layer.v_init_per_channel(), layer.shape).astype(dtype) for layer in net.if_layers}
        out: dict[str, np.ndarray] = {"input": x[n]}
        for _ in range(T):
            for layer in net.layers:
                bias = np.asarray(layer.bias, dtype=dtype)
                cur = np.zeros(layer.shape, dtype=dtype)
                for idx in np.ndindex(*layer.shape):
                    c = bias[idx[0]]
                    for syn in layer.synapses:
                        c += _neuron_input(syn, out[syn.source], idx, zero)
                    cur[idx] = c
                if layer.kind == "readout":
                    logits[n] += cur.reshape(-1)
                    continue
                spikes = np.zeros(layer.shape, dtype=dtype)
                vf, cf, sf = v[layer.name].reshape(-1), cur.reshape(-1), spikes.reshape(-1)
                for i in range(vf.shape[0]):
                    sf[i] = if_step(vf[i : i + 1], cf[i : i + 1], layer.threshold, lim)[0]
                out[layer.name] = spikes
                counts[layer.name][n] += int(spikes.sum())
    return logits, counts


def _chw(per_channel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel vector expanded to a C,H,W (or (n,)) state array."""
    return np.broadcast_to(per_channel.reshape((-1, 1, 1) if len(shape) == 3 else (-1,)), shape).copy()
