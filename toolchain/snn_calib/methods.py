"""Post-conversion calibration methods: one small class each, stating what it minimises.

Every method tunes, for one IF layer at a time (inputs already calibrated), per-channel *integer* shifts of
the layer's bias and/or initial membrane v_init (the `neuron` methods: one v_init shift per neuron). Weights and θ never change, so the result is the same
integer hardware network with different constants (Li et al., "A Free Lunch From ANN: Towards Efficient,
Accurate Spiking Neural Networks Calibration", ICML 2021: bias correction BC and potential correction PC).

Notation (per neuron k, target window T): n_k = SNN spike count in T steps; the quantized ANN's count at
T = L is c_k ∈ {0..L}, so its rate at any T is c_k / L and the count it asks for at T is T·c_k/L.
  target "ann"   c_k from the ANN's own inputs (the network the IntNet encodes; Li et al.'s BC/PC)
  target "snn"   c_k from the layer's *SNN* inputs: the QCFS function of the calibrated sources' rates
                 (Li et al.'s "advanced" variants); it asks the layer to be right given what it receives.
The mean of n_k − T·c_k/L over a channel (samples × positions) is monotone in either shift, so the shift that
makes it closest to 0 is found by per-channel bisection over integers (`match_mean`, to θ/64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np


RESOLUTION = 64  # shifts are searched to θ/64 (v_init) or θ/(64·T) (bias): ~1/64 spike per neuron


def channel_mean(x: np.ndarray) -> np.ndarray:
    """Mean over every axis but the last (channel-last layout): [N, H, W, C] or [N, n] -> [C]."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.dtype.kind in "iub":  # integer sums are exact and avoid a float64 copy of the whole array
        return flat.sum(axis=0, dtype=np.int64) / len(flat)
    return flat.mean(axis=0, dtype=np.float64)


def match_mean(mean_at: Callable[[np.ndarray], np.ndarray], target: np.ndarray, lo: int, hi: int,
               resolution: int = 1) -> np.ndarray:
    """Per channel, the integer shift δ ∈ [lo, hi] whose mean count is closest to `target`, to `resolution`.

    `mean_at(δ)` (δ: int64 [C]) returns the per-channel mean count, non-decreasing in δ. Bisection keeps a
    bracket mean(a) < target ≤ mean(b) until b − a ≤ resolution, then the closer end wins; δ = 0 (no change)
    is a candidate too, so the result is never worse than leaving the channel as it was. A resolution of θ/64
    moves a channel's mean count by about 1/64 spike: finer is not worth the simulations it costs."""
    c = len(target)
    a, b = np.full(c, lo, np.int64), np.full(c, hi, np.int64)
    res = max(1, int(resolution))
    while np.any(b - a > res):
        open_ = b - a > res
        mid = (a + b) // 2
        ok = mean_at(mid) >= target
        b = np.where(open_ & ok, mid, b)
        a = np.where(open_ & ~ok, mid, a)
    zero = np.zeros(c, np.int64)
    cands = [zero, a, b]  # ties keep the earlier candidate: no change first
    errs = [np.abs(mean_at(d) - target) for d in cands]
    best, best_err = cands[0], errs[0]
    for d, e in zip(cands[1:], errs[1:]):
        better = e < best_err
        best, best_err = np.where(better, d, best), np.where(better, e, best_err)
    return best


def neuron_mean(x: np.ndarray) -> np.ndarray:
    """Mean over the samples only, flattened: [N, H, W, C] or [N, n] -> [H·W·C] / [n] (channel-last order)."""
    flat = x.reshape(len(x), -1)
    if flat.dtype.kind in "iub":
        return flat.sum(axis=0, dtype=np.int64) / len(flat)
    return flat.mean(axis=0, dtype=np.float64)


@dataclass
class LayerProblem:
    """What a method sees for one layer: `counts_at(d_bias, d_v)` runs the layer's T steps on the stored
    calibrated inputs with shifts (d_bias per channel; d_v per channel [C] or per neuron, channel-last
    `neuron_shape`) and returns counts [N, ..., C]; `target` is T·c/L per neuron."""

    name: str
    T: int
    theta: int
    target: np.ndarray
    counts_at: Callable[[np.ndarray, np.ndarray], np.ndarray]
    channels: int

    @property
    def neuron_shape(self) -> tuple[int, ...]:
        """One sample's channel-last shape ([H, W, C] or [n])."""
        return tuple(self.target.shape[1:])


class CalibrationMethod:
    """(base) Subclasses state in the first docstring paragraph what they minimise."""

    name: ClassVar[str] = ""
    target: ClassVar[str] = "ann"  # "ann" | "snn" (see module docstring)

    @classmethod
    def objective(cls) -> str:
        para = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in para.splitlines())

    def solve(self, p: LayerProblem) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        """Per-channel (Δbias, Δv_init), int64 [C] each."""
        raise NotImplementedError


def _zero(p: LayerProblem) -> np.ndarray:
    return np.zeros(p.channels, np.int64)


class BiasCorrection(CalibrationMethod):
    """Per channel, the integer bias shift (added every step) that makes the channel's mean spike count at the
    target T closest to the quantized ANN's T·c/L (Li et al. 2021, BC)."""

    name = "bias"

    def solve(self, p: LayerProblem) -> tuple[np.ndarray, np.ndarray]:
        tgt = channel_mean(p.target)
        zero = _zero(p)
        db = match_mean(lambda d: channel_mean(p.counts_at(d, zero)), tgt, -p.theta, p.theta,
                        p.theta // (RESOLUTION * p.T))
        return db, zero


class PotentialCorrection(CalibrationMethod):
    """Per channel, the integer shift of the initial membrane v(0) that makes the channel's mean spike count at
    the target T closest to the quantized ANN's T·c/L (Li et al. 2021, PC): a one-time offset, so unlike a
    bias it fades at longer T."""

    name = "potential"

    def solve(self, p: LayerProblem) -> tuple[np.ndarray, np.ndarray]:
        tgt = channel_mean(p.target)
        zero = _zero(p)
        dv = match_mean(lambda d: channel_mean(p.counts_at(zero, d)), tgt, -p.T * p.theta, p.T * p.theta,
                        p.theta // RESOLUTION)
        return zero, dv


class AdvancedBiasCorrection(BiasCorrection):
    """As BiasCorrection, but the target is the QCFS function of the layer's SNN inputs (the calibrated
    sources' rates), so each layer is made right for what it actually receives (Li et al.'s advanced BC)."""

    name = "bias-snn"
    target = "snn"


class AdvancedPotentialCorrection(PotentialCorrection):
    """As PotentialCorrection, with the target computed from the layer's SNN inputs (advanced PC)."""

    name = "potential-snn"
    target = "snn"


class NeuronPotentialCorrection(CalibrationMethod):
    """Per neuron, the integer shift of the initial membrane v(0) that makes the neuron's mean spike count over
    the calibration images at the target T closest to the quantized ANN's T·c/L: the per-channel shift of
    PotentialCorrection cannot remove an error that differs between positions of one channel (borders,
    padding, the image prior), one v_init per neuron can (stored as a per-neuron array, IntNet version 3)."""

    name = "neuron"

    def solve(self, p: LayerProblem) -> tuple[np.ndarray, np.ndarray]:
        shape = p.neuron_shape
        zero_b, zero_v = _zero(p), np.zeros(shape, np.int64)
        dv = match_mean(lambda d: neuron_mean(p.counts_at(zero_b, d.reshape(shape))), neuron_mean(p.target),
                        -p.T * p.theta, p.T * p.theta, p.theta // RESOLUTION)
        return zero_b, dv.reshape(shape) if dv.size != p.channels else dv


class AdvancedNeuronPotentialCorrection(NeuronPotentialCorrection):
    """As NeuronPotentialCorrection, with the target computed from the layer's SNN inputs (advanced PC)."""

    name = "neuron-snn"
    target = "snn"


METHODS: dict[str, type[CalibrationMethod]] = {
    m.name: m for m in (BiasCorrection, PotentialCorrection, AdvancedBiasCorrection, AdvancedPotentialCorrection,
                        NeuronPotentialCorrection, AdvancedNeuronPotentialCorrection)
}
