"""Layer-synchronous IF simulation of an IntNet in torch, for GPUs (full test sets at T up to 64).

Why a second implementation: the NumPy runtime is the reference and runs anywhere; evaluating VGG-16 on
10,000 images × 64 steps needs an accelerator. Exactness in integer mode, per layer (`layer_dtypes`):
  * float32 where it is proved exact: the layer's float32_exact flag and the same bound as the NumPy
    runtime (numpy_synapse.exact_bound: every partial sum of spikes × weights plus the input-driven part
    and the bias < 2^24, so any summation order gives the exact integer); the membrane is float32 too when
    additionally |v| + |current| < 2^24 (|v| ≤ 2^(membrane_bits−1) after saturation), else float64.
    TF32 is switched off while simulating, and on CUDA the float32 convolutions bypass cuDNN (whose
    Winograd/FFT algorithms are not sums of the exact products) for the native im2col + cuBLAS GEMM.
  * float64 elsewhere: currents are rounded to the nearest integer, so any convolution algorithm gives
    the same integers (partial sums stay far below 2^53).
Membranes saturate to the profile's range exactly as qcfs.semantics says; the readout accumulates in
float64. Tensors are channels_last (NHWC in memory), the layout GPU convolution kernels prefer. Tests check
that counts and logits equal the NumPy runtime's bit for bit, with the float32 path exercised on CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from qcfs.intnet import IntNet, Layer, SumPool, Synapse
from qcfs.runtime.numpy_synapse import FLOAT32_EXACT_LIMIT, exact_bound
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input, membrane_limits

PRECISIONS = ("auto", "float64")


@dataclass(frozen=True)
class LayerDtypes:
    current: torch.dtype  # synaptic current (weights, spikes read, GEMM)
    membrane: torch.dtype


def layer_dtypes(net: IntNet, layer: Layer, precision: str = "auto") -> LayerDtypes:
    """float32 for the current (and the membrane) only where the 2^24 bound proves it exact."""
    f64 = LayerDtypes(torch.float64, torch.float64)
    if net.mode != "int" or precision == "float64":
        return f64
    x_in = float(1 << (net.input.bits - 1))
    m = float(net.max_spikes_per_step)  # a graded spike carries up to m; a pool stage sums up to kh·kw of them
    bound = sum(exact_bound(s.weight, x_in if s.source == "input" else m * (s.pool.size if s.pool else 1.0))
                for s in layer.synapses)
    bound += float(np.abs(np.asarray(layer.bias, dtype=np.float64)).max(initial=0.0))
    if not layer.float32_exact or bound >= FLOAT32_EXACT_LIMIT:
        return f64
    v_max = bound + 2 ** (net.profile.membrane_bits - 1)
    membrane = torch.float32 if layer.kind == "if" and v_max < FLOAT32_EXACT_LIMIT else torch.float64
    return LayerDtypes(torch.float32, membrane)


@contextlib.contextmanager
def _exact_float32():  # type: ignore[no-untyped-def]
    """No TF32 (10-bit mantissa products) while simulating; restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def window_sums(src: torch.Tensor, pool: SumPool) -> torch.Tensor:
    """The separate sum-pooling stage (IntNet Synapse.pool): zero-pad, then sum each window (exact: at most
    kh·kw spikes, far below 2^24)."""
    top, left, bottom, right = pool.padding
    if any(pool.padding):
        src = F.pad(src, (left, right, top, bottom))
    return F.avg_pool2d(src, tuple(pool.kernel), tuple(pool.stride), divisor_override=1)


def _synapse_current(syn: Synapse, w: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    if src.dtype != w.dtype:
        src = src.to(w.dtype)
    if syn.pool is not None:
        src = window_sums(src, syn.pool)
    if syn.kind == "dense":
        return src.reshape(src.shape[0], -1) @ w.T
    top, left, bottom, right = syn.padding
    if any(syn.padding):
        src = F.pad(src, (left, right, top, bottom))
    if w.dtype == torch.float32 and w.is_cuda:  # cuDNN may pick Winograd/FFT: not exact sums
        with torch.backends.cudnn.flags(enabled=False):
            return F.conv2d(src, w, stride=tuple(syn.stride), groups=syn.groups)
    return F.conv2d(src, w, stride=tuple(syn.stride), groups=syn.groups)


def simulate_torch(net: IntNet, images01: np.ndarray, Ts: list[int], *, batch_size: int = 256,
                   device: str | torch.device = "cpu", progress: bool = True,
                   precision: str = "auto", pre_steps: int = 0) -> SimResult:
    """Same contract as qcfs.runtime.numpy_snn.simulate with timing="sync" (pre_steps: two-phase inference).

    precision="float64" disables the float32 path (for tests and the speed ratio)."""
    Ts = sorted(set(int(t) for t in Ts))
    if not Ts or Ts[0] < 1:
        raise ValueError("every T must be a positive integer")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    integer = net.mode == "int"
    lim = membrane_limits(net.profile.membrane_bits) if integer else None
    dtypes = {layer.name: layer_dtypes(net, layer, precision) for layer in net.layers}
    weights = {}
    for layer in net.layers:
        for j, s in enumerate(layer.synapses):
            w = torch.as_tensor(np.asarray(s.weight, dtype=np.float64), device=dev).to(dtypes[layer.name].current)
            weights[(layer.name, j)] = w.contiguous(memory_format=torch.channels_last) if w.dim() == 4 else w
    biases = {layer.name: torch.as_tensor(np.asarray(layer.bias, dtype=np.float64), device=dev)
              .to(dtypes[layer.name].current) for layer in net.layers}
    x_all = encode_input(images01, net.input.mean, net.input.std, net.input.scale if integer else None,
                         net.input.bits)
    n = len(x_all)
    logits = {t: np.zeros((n, net.num_classes), dtype=np.int64 if integer else np.float64) for t in Ts}
    spikes = {t: {l.name: np.zeros(n, dtype=np.int64) for l in net.if_layers} for t in Ts}
    m = int(net.max_spikes_per_step)
    values = {t: {l.name: np.zeros(n, dtype=np.int64) for l in net.if_layers} for t in Ts} if m > 1 else {}
    pre = {l.name: np.zeros(n, dtype=np.int64) for l in net.if_layers} if pre_steps else {}
    batches = range(0, n, batch_size)
    with _exact_float32():
        for start in tqdm(batches, desc="torch SNN", disable=not progress, leave=False):
            x = torch.as_tensor(np.asarray(x_all[start : start + batch_size], dtype=np.float64), device=dev)
            x = x.contiguous(memory_format=torch.channels_last)
            b = len(x)
            out = _run_batch(net, x, Ts, weights, biases, dtypes, lim, integer, pre_steps)
            for t in Ts:
                acc, counts, vals = out[t]
                logits[t][start : start + b] = acc
                for name, c in counts.items():
                    spikes[t][name][start : start + b] = c
                    if m > 1:
                        values[t][name][start : start + b] = vals[name]
            for name, c in out.get(0, (None, {}, None))[1].items():  # the ρ pre-steps' spikes
                pre[name][start : start + b] = c
    return SimResult(Ts=Ts, logits=logits, spikes=spikes, backend="torch", timing="sync", pre_steps=pre_steps,
                     values=values, max_spikes=m, pre_spikes=pre)


def _current(layer: Layer, state: dict[str, torch.Tensor], weights, biases, integer: bool,  # type: ignore[no-untyped-def]
             dt: LayerDtypes) -> torch.Tensor:
    cur = None
    for j, syn in enumerate(layer.synapses):
        c = _synapse_current(syn, weights[(layer.name, j)], state[syn.source])
        cur = c if cur is None else cur + c
    assert cur is not None
    bias = biases[layer.name]
    cur = cur + (bias.view(1, -1, 1, 1) if cur.dim() == 4 else bias.view(1, -1))
    if integer and dt.current == torch.float64:
        cur = torch.round(cur)  # float32 currents are proved exact; float64 ones are rounded
    return cur if cur.dtype == dt.membrane else cur.to(dt.membrane)


@torch.no_grad()
def _run_batch(net: IntNet, x: torch.Tensor, Ts: list[int], weights, biases, dtypes, lim, integer: bool,  # type: ignore[no-untyped-def]
               pre_steps: int = 0):
    state: dict[str, torch.Tensor] = {"input": x}
    v: dict[str, torch.Tensor] = {}
    counts = {l.name: torch.zeros(len(x), dtype=torch.int64, device=x.device) for l in net.if_layers}
    vals = {l.name: torch.zeros(len(x), dtype=torch.int64, device=x.device) for l in net.if_layers}
    max_spikes = int(net.max_spikes_per_step)
    acc = None
    # layers fed only by the (constant) input get a constant current: compute it once
    constant = {l.name: _current(l, state, weights, biases, integer, dtypes[l.name])
                for l in net.layers if all(s.source == "input" for s in l.synapses)}
    results = {}
    v_init: dict[str, torch.Tensor] = {}
    for step in range(1, pre_steps + max(Ts) + 1):
        t = step - pre_steps  # <= 0 during the pre-steps of two-phase inference
        for layer in net.layers:
            cur = constant.get(layer.name)
            if cur is None:
                cur = _current(layer, state, weights, biases, integer, dtypes[layer.name])
            if layer.kind == "readout":
                cur = cur.to(torch.float64)
                acc = cur.clone() if acc is None else acc + cur
                continue
            if layer.name not in v:
                if layer.per_neuron_v_init:  # one per neuron: the layer's (C, H, W)
                    v0 = torch.as_tensor(layer.v_init_full(), dtype=cur.dtype, device=cur.device)
                    v_init[layer.name] = v0.unsqueeze(0)
                else:
                    v0 = torch.as_tensor(layer.v_init_per_channel(), dtype=cur.dtype, device=cur.device)
                    v_init[layer.name] = v0.view(1, -1, 1, 1) if cur.dim() == 4 else v0.view(1, -1)
                m = torch.empty_like(cur)  # keeps cur's channels_last layout
                m.copy_(v_init[layer.name].expand_as(cur))
                v[layer.name] = m
            mem = v[layer.name]
            mem += cur
            if lim is not None:
                mem.clamp_(lim[0], lim[1])
            if max_spikes == 1:
                s = mem >= layer.threshold
                sf = s.to(mem.dtype)
            else:  # graded: clip(floor(v/θ), 0, m), exact in float32/64 for integers below 2^24 / 2^53
                sf = torch.clamp(torch.div(mem, float(layer.threshold), rounding_mode="floor"), 0, max_spikes)
                s = sf > 0
                vals[layer.name] += sf.reshape(len(x), -1).sum(1).to(torch.int64)
            mem -= sf * float(layer.threshold)
            state[layer.name] = sf
            counts[layer.name] += s.reshape(len(x), -1).sum(1)
        if pre_steps and t == 0:  # qcfs.semantics.offset_restart, in torch
            results[0] = (None, {k: c.cpu().numpy().copy() for k, c in counts.items()}, None)
            for layer in net.if_layers:
                mem = v[layer.name]  # θ·floor(v/θ) = v − (v mod θ): exact in float32/64 (fmod is exact)
                mem.sub_(torch.remainder(mem, float(layer.threshold))).add_(v_init[layer.name])
                if lim is not None:
                    v[layer.name].clamp_(lim[0], lim[1])
                counts[layer.name].zero_()
                vals[layer.name].zero_()
            acc = None
        if t in Ts:
            assert acc is not None
            a = acc.cpu().numpy()
            results[t] = (np.rint(a).astype(np.int64) if integer else a.copy(),
                          {k: c.cpu().numpy().copy() for k, c in counts.items()},
                          {k: c.cpu().numpy().copy() for k, c in vals.items()})
    return results
