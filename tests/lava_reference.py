"""Brute-force integer reference of qcfs.semantics (layer-synchronous), independent of the Lava code path.

Used only until/unless qcfs.runtime.numpy_snn is importable; kept deliberately naive (per-offset conv
accumulation in int64, one sample at a time).
"""

from __future__ import annotations

import numpy as np

from qcfs.intnet import IntNet, Synapse
from qcfs.semantics import encode_input, if_step, membrane_limits
from snn_reference import _chw  # noqa: E402


def conv_chw(x: np.ndarray, syn: Synapse, out_shape: tuple[int, int, int]) -> np.ndarray:
    """torch-style grouped cross-correlation, int64."""
    w = np.asarray(syn.weight, dtype=np.int64)
    co, cig, kh, kw = w.shape
    pt, pl, pb, pr = syn.padding
    sh, sw = syn.stride
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    _, ho, wo = out_shape
    out = np.zeros((co, ho, wo), dtype=np.int64)
    cog = co // syn.groups
    for g in range(syn.groups):
        xg = xp[g * cig:(g + 1) * cig]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, i:i + sh * ho:sh, j:j + sw * wo:sw]  # (cig, ho, wo)
                out[g * cog:(g + 1) * cog] += np.einsum("oc,chw->ohw", w[g * cog:(g + 1) * cog, :, i, j], patch)
    return out


def simulate_reference(net: IntNet, images01: np.ndarray, Ts: list[int]) -> dict:
    """{'counts': {layer: (N, T_max) cumulative}, 'logits': (N, T_max, classes)} in integer mode."""
    x_all = encode_input(images01, net.input.mean, net.input.std, net.input.scale, net.input.bits)
    T = max(Ts)
    lims = membrane_limits(net.profile.membrane_bits)
    N = x_all.shape[0]
    counts = {layer.name: np.zeros((N, T), dtype=np.int64) for layer in net.if_layers}
    logits = np.zeros((N, T, net.num_classes), dtype=np.int64)
    for n in range(N):
        v = {layer.name: _chw(layer.v_init_per_channel(), layer.shape).astype(np.int64) for layer in net.if_layers}
        acc = np.zeros(net.readout.shape, dtype=np.int64)
        run = {layer.name: 0 for layer in net.if_layers}
        for t in range(T):
            outs = {"input": x_all[n]}
            for layer in net.layers:
                cur = np.zeros(layer.shape, dtype=np.int64)
                for syn in layer.synapses:
                    src = outs[syn.source]
                    if syn.kind == "conv":
                        cur += conv_chw(src, syn, tuple(layer.shape))
                    else:
                        cur += (np.asarray(syn.weight, dtype=np.int64).reshape(-1, src.size) @ src.reshape(-1)
                                ).reshape(layer.shape)
                bias = np.asarray(layer.bias, dtype=np.int64)
                cur += bias.reshape((-1,) + (1,) * (len(layer.shape) - 1)) if bias.ndim == 1 else bias
                if layer.kind == "readout":
                    acc += cur
                    logits[n, t] = acc.reshape(-1)
                else:
                    s = if_step(v[layer.name], cur, int(layer.threshold), lims)
                    run[layer.name] += int(s.sum())
                    counts[layer.name][n, t] = run[layer.name]
                    outs[layer.name] = s.astype(np.int64)
    return {"counts": counts, "logits": logits}
