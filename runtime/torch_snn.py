"""Layer-synchronous IF simulation of an IntNet in torch, for GPUs (full test sets at T up to 64).

Why a second implementation: the NumPy runtime is the reference and runs anywhere; evaluating VGG-16 on
10,000 images × 64 steps needs an accelerator. Exactness: currents are computed in float64 (exact for the
integer values of an IntNet, whose partial sums stay far below 2^53) and, in integer mode, rounded to the
nearest integer, so any convolution algorithm the library picks gives the same integers; membranes are
float64 holding integers and saturate to the profile's range exactly as qcfs.semantics says. Tests check
that counts and logits equal the NumPy runtime's bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from qcfs.intnet import IntNet, Layer, Synapse
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input, membrane_limits


def _synapse_current(syn: Synapse, w: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    if syn.kind == "dense":
        return src.reshape(src.shape[0], -1) @ w.T
    top, left, bottom, right = syn.padding
    if any(syn.padding):
        src = F.pad(src, (left, right, top, bottom))
    return F.conv2d(src, w, stride=tuple(syn.stride), groups=syn.groups)


def simulate_torch(net: IntNet, images01: np.ndarray, Ts: list[int], *, batch_size: int = 256,
                   device: str | torch.device = "cpu", progress: bool = True, pre_steps: int = 0) -> SimResult:
    """Same contract as qcfs.runtime.numpy_snn.simulate with timing="sync" (pre_steps: two-phase inference)."""
    Ts = sorted(set(int(t) for t in Ts))
    if not Ts or Ts[0] < 1:
        raise ValueError("every T must be a positive integer")
    dev = torch.device(device)
    integer = net.mode == "int"
    lim = membrane_limits(net.profile.membrane_bits) if integer else None
    weights = {
        (layer.name, j): torch.as_tensor(np.asarray(s.weight, dtype=np.float64), device=dev)
        for layer in net.layers for j, s in enumerate(layer.synapses)
    }
    biases = {layer.name: torch.as_tensor(np.asarray(layer.bias, dtype=np.float64), device=dev)
              for layer in net.layers}
    x_all = encode_input(images01, net.input.mean, net.input.std, net.input.scale if integer else None,
                         net.input.bits)
    n = len(x_all)
    logits = {t: np.zeros((n, net.num_classes), dtype=np.int64 if integer else np.float64) for t in Ts}
    spikes = {t: {l.name: np.zeros(n, dtype=np.int64) for l in net.if_layers} for t in Ts}
    batches = range(0, n, batch_size)
    for start in tqdm(batches, desc="torch SNN", disable=not progress, leave=False):
        x = torch.as_tensor(np.asarray(x_all[start : start + batch_size], dtype=np.float64), device=dev)
        b = len(x)
        out = _run_batch(net, x, Ts, weights, biases, lim, integer, pre_steps)
        for t in Ts:
            acc, counts = out[t]
            logits[t][start : start + b] = acc
            for name, c in counts.items():
                spikes[t][name][start : start + b] = c
    return SimResult(Ts=Ts, logits=logits, spikes=spikes, backend="torch", timing="sync", pre_steps=pre_steps)


def _current(layer: Layer, state: dict[str, torch.Tensor], weights, biases, integer: bool) -> torch.Tensor:
    cur = None
    for j, syn in enumerate(layer.synapses):
        c = _synapse_current(syn, weights[(layer.name, j)], state[syn.source])
        cur = c if cur is None else cur + c
    assert cur is not None
    bias = biases[layer.name]
    cur = cur + (bias.view(1, -1, 1, 1) if cur.dim() == 4 else bias.view(1, -1))
    return torch.round(cur) if integer else cur


@torch.no_grad()
def _run_batch(net: IntNet, x: torch.Tensor, Ts: list[int], weights, biases, lim, integer: bool,  # type: ignore[no-untyped-def]
               pre_steps: int = 0):
    state: dict[str, torch.Tensor] = {"input": x}
    v: dict[str, torch.Tensor] = {}
    counts = {l.name: torch.zeros(len(x), dtype=torch.int64, device=x.device) for l in net.if_layers}
    acc = None
    # layers fed only by the (constant) input get a constant current: compute it once
    constant = {l.name: _current(l, state, weights, biases, integer)
                for l in net.layers if all(s.source == "input" for s in l.synapses)}
    results = {}
    v_init: dict[str, torch.Tensor] = {}
    for step in range(1, pre_steps + max(Ts) + 1):
        t = step - pre_steps  # <= 0 during the pre-steps of two-phase inference
        for layer in net.layers:
            cur = constant.get(layer.name)
            if cur is None:
                cur = _current(layer, state, weights, biases, integer)
            if layer.kind == "readout":
                acc = cur.clone() if acc is None else acc + cur
                continue
            if layer.name not in v:
                v0 = torch.as_tensor(layer.v_init_per_channel(), dtype=cur.dtype, device=cur.device)
                v_init[layer.name] = v0.view(1, -1, 1, 1) if cur.dim() == 4 else v0.view(1, -1)
                v[layer.name] = v_init[layer.name].expand_as(cur).clone()
            mem = v[layer.name]
            mem += cur
            if lim is not None:
                mem.clamp_(lim[0], lim[1])
            s = mem >= layer.threshold
            sf = s.to(mem.dtype)
            mem -= sf * float(layer.threshold)
            state[layer.name] = sf
            counts[layer.name] += s.reshape(len(x), -1).sum(1)
        if pre_steps and t == 0:  # qcfs.semantics.offset_restart, in torch
            for layer in net.if_layers:
                th = float(layer.threshold)
                v[layer.name] = v_init[layer.name] + th * torch.floor(v[layer.name] / th)
                if lim is not None:
                    v[layer.name].clamp_(lim[0], lim[1])
                counts[layer.name].zero_()
            acc = None
        if t in Ts:
            assert acc is not None
            a = acc.cpu().numpy()
            results[t] = (np.rint(a).astype(np.int64) if integer else a.copy(),
                          {k: c.cpu().numpy().copy() for k, c in counts.items()})
    return results
