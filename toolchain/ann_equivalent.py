"""The quantized ANN an IntNet encodes, evaluated directly (no time steps).

Each IF layer outputs spike counts c = clip(floor((L·I + v_init)/θ), 0, L) (rate c/L; v_init = φ·θ before
calibration), the count a T = L run gives for constant input (qcfs.semantics, Theorem 1). Integer mode computes
it in exact integer arithmetic, so it is the reference the integer runtimes are compared to; float mode must reproduce
onnxruntime on the canonical ONNX. The readout returns (per-step current) / readout_scale ≈ the ANN logits.
"""

from __future__ import annotations

import numpy as np

from qcfs.intnet import IntNet, Synapse
from qcfs.runtime.numpy_synapse import FLOAT32_EXACT_LIMIT, SynapsePlan, exact_bound
from qcfs.semantics import encode_input
from qcfs.toolchain.numeric import add_bias


def _synapse(syn: Synapse, x: np.ndarray, src_shape: tuple[int, ...], integer: bool) -> np.ndarray:
    """The runtime's im2col GEMM (numpy_synapse), float32 where every partial sum is an exact integer below 2^24
    (integer mode), else float64; about twice as fast as a tensordot over sliding windows."""
    x_max = float(np.abs(x).max(initial=0.0)) * (syn.pool.size if syn.pool is not None else 1)  # window sums
    exact32 = integer and exact_bound(syn.weight, x_max) < FLOAT32_EXACT_LIMIT
    plan = SynapsePlan(syn, src_shape, np.dtype(np.float32 if exact32 else np.float64))
    if x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    out = plan(np.asarray(x, dtype=plan.dtype)).astype(np.float64)
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) per-channel vector shaped to broadcast over (N, C, H, W) or (N, C)."""
    return v.reshape((1, -1, 1, 1) if ndim == 4 else (1, -1))


def spike_counts(net: IntNet, images01: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer: spike counts (IF layers) or L × per-step current (readout); plus "input" (encoded image).
    Defined for binary networks (a graded one is compared with the binary network it was made from)."""
    if net.max_spikes_per_step != 1:
        raise ValueError("the quantized-ANN equivalent is defined for binary-IF networks (max_spikes_per_step 1)")
    x = encode_input(images01, net.input.mean, net.input.std, net.input.scale, net.input.bits).astype(np.float64)
    L, integer = net.L, net.mode == "int"
    values: dict[str, np.ndarray] = {"input": x}
    shapes = {"input": tuple(net.input.shape), **{lay.name: tuple(lay.shape) for lay in net.layers}}
    for layer in net.layers:
        # L·I: a spiking source contributes its count (= L · rate), the image its value L times.
        zL = sum(_synapse(s, values[s.source], shapes[s.source], integer) * (L if s.source == "input" else 1)
                 for s in layer.synapses)
        zL = add_bias(zL, L * np.asarray(layer.bias, dtype=np.float64))
        if layer.kind == "readout":
            values[layer.name] = zL
        else:
            v0 = layer.v_init_full()[None] if layer.per_neuron_v_init else \
                _per_channel(layer.v_init_per_channel(), zL.ndim)
            if integer:
                num = np.rint(zL).astype(np.int64) + v0.astype(np.int64)
                values[layer.name] = np.clip(np.floor_divide(num, int(layer.threshold)), 0, L).astype(np.float64)
            else:  # uncalibrated: φ itself, as onnxruntime computes QCFS (v_init/θ may round differently)
                phase = v0 / float(layer.threshold) if layer.per_channel_v_init else net.phi
                values[layer.name] = np.clip(np.floor(zL / float(layer.threshold) + phase), 0, L)
    return values


def ann_equivalent(net: IntNet, images01: np.ndarray) -> np.ndarray:
    """Logits [N, classes] of the quantized ANN the IntNet encodes, for images in [0, 1] (N, C, H, W)."""
    readout = spike_counts(net, images01)[net.readout.name]
    return readout.reshape(readout.shape[0], -1) / (net.L * net.readout_scale)
