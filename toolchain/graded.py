"""Graded spikes: turn a binary-IF IntNet into one whose neurons emit up to m spikes per step.

Identity served (qcfs.semantics, graded spikes): a graded layer whose per-step current is m times the binary
layer's fires about as the binary layer does over m steps, so every current is scaled by m:
  * a layer fed by spikes already receives m-fold spike values; its bias is multiplied by m (θ, v_init and
    the spike-fed weights stay);
  * a layer fed by the constant input: its input weights and bias are multiplied by m/k and θ, v_init
    divided by k, k = gcd(θ/2, m, v_init) (the "θ' = θ/m" of the real-valued picture, kept in integers: the
    largest divisor of m that leaves θ' even and θ', v_init' integral);
  * the readout: input weights and bias × m, readout_scale × m.
Exact case (tests/test_graded.py): m = L, T = 1 gives every layer s = clip(floor((W·c + L·b + v_init)/θ),
0, L), the integer quantized ANN's count (qcfs.toolchain.ann_equivalent), so the logits equal its L·I.
The result is checked against the hardware profile (scaled weights and biases must fit their bit widths, the
payload ⌈log2(m+1)⌉ bits must fit spike_payload_bits); a violation is one HardwareFitError naming the layer.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from qcfs.errors import HardwareFitError, ModelFileError, QCFSError
from qcfs.intnet import IntNet, Layer
from qcfs.intnet_validate import float32_exact, validate_intnet


def _first_layer_divisor(layer: Layer, m: int, integer: bool) -> int:
    """k = gcd(θ/2, m, v_init…): divides θ and v_init exactly with θ/k still even (integer mode); float: m."""
    if not integer:
        return m
    k = math.gcd(int(layer.threshold) // 2, m)
    v0 = np.unique(np.asarray(layer.v_init, dtype=np.int64).reshape(-1))
    for v in v0:
        k = math.gcd(k, int(v))
    return max(1, k)


def make_graded(net: IntNet, m: int, scale: bool = True) -> IntNet:
    """A copy of `net` (binary IF, m = 1) with max_spikes_per_step = m and every current scaled by m
    (scale=False: currents unchanged, m only lets a neuron emit the spikes its membrane holds at once)."""
    if not isinstance(m, int) or m < 1:
        raise QCFSError(f"--spikes-per-step must be a positive integer, got {m!r}")
    if net.max_spikes_per_step != 1:
        raise QCFSError(f"the network already has graded spikes (max_spikes_per_step = {net.max_spikes_per_step})")
    if m == 1:
        return net
    integer = net.mode == "int"
    out = copy.deepcopy(net)
    scaled: dict[str, dict[str, int]] = {}
    for layer in out.layers if scale else []:
        spike_fed = any(s.source != "input" for s in layer.synapses)
        if layer.kind == "if" and not spike_fed:
            k = _first_layer_divisor(layer, m, integer)
            mult = m // k
            if integer:
                layer.threshold = int(layer.threshold) // k
                layer.v_init = (np.asarray(layer.v_init, np.int64) // k if layer.per_channel_v_init
                                else int(layer.v_init) // k)
            else:
                layer.threshold = float(layer.threshold) / k
                layer.v_init = np.asarray(layer.v_init, np.float64) / k if layer.per_channel_v_init \
                    else float(layer.v_init) / k
        else:
            k, mult = 1, m
        for syn in layer.synapses:
            if syn.source == "input":
                syn.weight = np.asarray(syn.weight) * mult
        layer.bias = np.asarray(layer.bias) * mult
        scaled[layer.name] = {"current_factor": mult, "threshold_divisor": k}
    out.max_spikes_per_step = m
    out.readout_scale = float(net.readout_scale) * (m if scale else 1)
    out.metadata = dict(out.metadata)
    out.metadata["graded"] = {"max_spikes_per_step": m, "current_scale": m if scale else 1, "layers": scaled,
                              "identity": "per-step currents × m (qcfs.toolchain.graded)" if scale else
                              "currents unchanged"}
    for layer in out.layers:
        layer.float32_exact = integer and float32_exact(layer, net.profile.input_bits, m)
    try:
        validate_intnet(out, "graded network")
    except ModelFileError as err:
        raise HardwareFitError(f"{err} (after scaling the currents by --spikes-per-step {m}; "
                               f"use a smaller m or a profile with wider fields)") from None
    return out
