"""Static SNN calibration after conversion: tune per-channel integer biases and initial membranes, layer by
layer in topological order, on training images, so that each layer's spike rate at one target T matches the
quantized ANN the IntNet encodes (qcfs.toolchain.ann_equivalent). Methods: qcfs.toolchain.snn_calib.methods.

The result is an ordinary IntNet (format version 2: per-channel v_init; version 3 for the per-neuron v_init of
the `neuron` methods), checked against its hardware profile
(bias and v_init must fit their bit widths), so every backend runs it and the integer backends agree on it bit
for bit. Weights and thresholds are never changed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from qcfs.errors import HardwareFitError, QCFSError
from qcfs.intnet import IntNet, Layer
from qcfs.intnet_validate import validate_intnet
from qcfs.semantics import encode_input, membrane_limits
from qcfs.toolchain.ann_equivalent import spike_counts
from qcfs.toolchain.snn_calib.methods import METHODS, LayerProblem, channel_mean
from qcfs.toolchain.snn_calib.trains import LayerCurrent, layer_current, run_if

ANN_CHUNK = 256  # images per quantized-ANN evaluation


@dataclass
class LayerReport:
    """Rate error of one layer at the target T, given its calibrated inputs, before and after its own
    correction: mean over channels of |channel-mean (n/T − c/L)|, and the RMS over neurons."""

    name: str
    mean_abs_before: float
    mean_abs_after: float
    rms_before: float
    rms_after: float
    max_bias_shift: int = 0
    max_v_init_shift: int = 0


@dataclass
class CalibrationReport:
    method: str
    target_T: int
    samples: int
    seconds: float = 0.0
    layers: list[LayerReport] = field(default_factory=list)
    train_accuracy: float | None = None  # of the calibrated SNN at target_T on the calibration images

    def lines(self) -> list[str]:
        acc = "" if self.train_accuracy is None else f", accuracy on them {100 * self.train_accuracy:.2f} %"
        out = [f"snn-calib {self.method} at T={self.target_T} on {self.samples} training images "
               f"({self.seconds:.1f} s{acc}); rate error |mean(n/T - c/L)| per layer, before -> after:"]
        for r in self.layers:
            out.append(f"  {r.name:<24} mean {r.mean_abs_before:.4f} -> {r.mean_abs_after:.4f}   "
                       f"rms {r.rms_before:.4f} -> {r.rms_after:.4f}   "
                       f"max|Δbias| {r.max_bias_shift}  max|Δv_init| {r.max_v_init_shift}")
        return out


def _ann_targets(net: IntNet, images01: np.ndarray, progress: bool) -> dict[str, np.ndarray]:
    """Quantized-ANN counts c ∈ {0..L} per IF layer (uint8, channel-last) and the readout's L·I (float64)."""
    out: dict[str, list[np.ndarray]] = {layer.name: [] for layer in net.layers}
    for a in tqdm(range(0, len(images01), ANN_CHUNK), desc="snn-calib: quantized ANN", disable=not progress,
                  leave=False):
        vals = spike_counts(net, images01[a:a + ANN_CHUNK])
        for layer in net.layers:
            v = vals[layer.name]
            v = v.transpose(0, 2, 3, 1) if v.ndim == 4 else v.reshape(len(v), -1)
            out[layer.name].append(v.astype(np.float64) if layer.kind == "readout" else v.astype(np.uint8))
    return {k: np.concatenate(v) for k, v in out.items()}


def _snn_target(net: IntNet, layer: Layer, cur: LayerCurrent, T: int) -> np.ndarray:
    """c from the layer's SNN inputs: QCFS of L·I with spiking sources at rate n/T (count-equivalent n·L/T)."""
    L = net.L
    zL = np.zeros(cur.constant.shape if cur.spiking is None else cur.spiking.shape[1:], dtype=np.float64)
    if cur.spiking is not None:
        zL += cur.spiking.sum(axis=0, dtype=np.int64) * (L / T)
    if cur.constant is not None:
        zL += L * cur.constant.astype(np.float64)
    zL += L * np.asarray(layer.bias, np.float64) + v_init_channel_last(layer)
    return np.clip(np.floor(zL / float(layer.threshold)), 0, L)


def v_init_channel_last(layer: Layer) -> np.ndarray:
    """v_init broadcastable over channel-last state: per channel [C], or per neuron [H, W, C] / [n]."""
    if layer.per_neuron_v_init:
        full = layer.v_init_full()
        return full.transpose(1, 2, 0) if full.ndim == 3 else full
    return layer.v_init_per_channel()


def _stored_v_init(v_cl: np.ndarray, layer: Layer) -> np.ndarray:
    """Channel-last v_init back to the IntNet's form: [C] per channel, else per neuron as C,H,W flattened."""
    if v_cl.ndim <= 1:
        return v_cl
    return np.ascontiguousarray(v_cl.transpose(2, 0, 1)).reshape(-1)


def _consumers(net: IntNet) -> dict[str, int]:
    """Index of the last layer that reads each source (its trains can be dropped afterwards)."""
    last: dict[str, int] = {}
    for i, layer in enumerate(net.layers):
        for s in layer.synapses:
            last[s.source] = i
    return last


def _check_fit(net: IntNet, layer: Layer) -> None:
    lo_b, hi_b = membrane_limits(net.profile.bias_bits)
    bias = np.asarray(layer.bias)
    if bias.size and (bias.min() < lo_b or bias.max() > hi_b):
        raise HardwareFitError(f"layer {layer.name}: calibrated bias in [{bias.min()}, {bias.max()}] does not fit "
                               f"{net.profile.bias_bits}-bit signed bias of profile {net.profile.name}; calibrate "
                               f"for a longer --target-T or use a method without bias shifts (potential)")
    if layer.kind == "if":
        lo_v, hi_v = membrane_limits(net.profile.membrane_bits)
        v = layer.v_init_full()
        if v.min() < lo_v or v.max() > hi_v:
            raise HardwareFitError(f"layer {layer.name}: calibrated v_init in [{v.min():.0f}, {v.max():.0f}] does "
                                   f"not fit the {net.profile.membrane_bits}-bit membrane of profile "
                                   f"{net.profile.name}; use a method without v_init shifts (bias)")


def calibrate(net: IntNet, images01: np.ndarray, *, T: int, method: str, progress: bool = True,
              correct_readout: bool = True, provenance: dict[str, Any] | None = None,
              labels: np.ndarray | None = None) -> tuple[IntNet, CalibrationReport]:
    """Calibrated copy of an integer IntNet for window T on `images01` ([N, C, H, W] in [0, 1], training split).
    With `labels`, the report also holds the calibrated SNN's accuracy at T on these images (free: the readout
    is computed anyway).

    Deterministic: the result depends only on the network, the images and T (exact integer arithmetic)."""
    if net.mode != "int":
        raise QCFSError("--snn-calib needs an integer-mode network (export with --mode int)")
    if net.max_spikes_per_step != 1:
        raise QCFSError("--snn-calib simulates binary IF neurons; calibrate before --spikes-per-step")
    if method not in METHODS:
        raise QCFSError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if T < 1:
        raise QCFSError(f"--target-T must be a positive integer, got {T}")
    t0 = time.perf_counter()
    solver = METHODS[method]()
    out = copy.deepcopy(net)
    x = encode_input(images01, net.input.mean, net.input.std, net.input.scale, net.input.bits)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    ann = _ann_targets(net, images01, progress)
    last_use = _consumers(net)
    trains: dict[str, np.ndarray] = {}
    report = CalibrationReport(method=method, target_T=T, samples=len(images01))
    bar = tqdm(out.layers, desc=f"snn-calib {method} T={T}", disable=not progress, leave=False)
    for i, layer in enumerate(bar):
        cur = layer_current(out, layer, trains, x_nhwc)
        for src in [s for s, j in last_use.items() if j == i and s in trains]:
            del trains[src]  # no later layer reads it
        if layer.kind == "readout":
            if correct_readout:
                _correct_readout(out, layer, cur, ann[layer.name], T)
            if labels is not None:
                acc = cur.total(T) + T * np.asarray(layer.bias, np.int64)
                report.train_accuracy = float(np.mean(acc.reshape(len(acc), -1).argmax(axis=1) == labels))
            continue
        bias0 = np.asarray(layer.bias, np.int64)
        v0 = v_init_channel_last(layer).astype(np.int64)
        theta = int(layer.threshold)

        def counts_at(d_bias: np.ndarray, d_v: np.ndarray, keep: bool = False):  # noqa: ANN202
            tr, cnt = run_if(cur, T, bias0 + d_bias, v0 + d_v, theta, net.profile.membrane_bits, keep)
            return (tr, cnt) if keep else cnt

        c = ann[layer.name].astype(np.float64) if solver.target == "ann" else _snn_target(out, layer, cur, T)
        target = c * (T / net.L)
        problem = LayerProblem(layer.name, T, theta, target, counts_at, layer.channels)
        zero = np.zeros(layer.channels, np.int64)
        before = counts_at(zero, zero)
        d_bias, d_v = solver.solve(problem)
        layer.bias = bias0 + d_bias
        layer.v_init = _stored_v_init(v0 + d_v, layer)
        _check_fit(out, layer)
        tr, after = counts_at(d_bias, d_v, keep=True)
        trains[layer.name] = tr
        report.layers.append(_layer_report(layer.name, before, after, target, T, d_bias, d_v))
    report.seconds = time.perf_counter() - t0
    out.metadata = dict(out.metadata)
    out.metadata["snn_calibration"] = {
        "method": method, "target_T": T, "samples": len(images01), "readout_corrected": correct_readout,
        "v_init": "per-neuron" if any(lay.per_neuron_v_init for lay in out.layers) else "per-channel",
        "train_accuracy": report.train_accuracy,
        "objective": solver.objective(), **(provenance or {}),
        "rate_error": [vars(r) for r in report.layers],
    }
    validate_intnet(out, "calibrated network")  # the same checks every loaded or converted IntNet passes
    return out, report


def _correct_readout(net: IntNet, layer: Layer, cur: LayerCurrent, ann_zL: np.ndarray, T: int) -> None:
    """Per class, the integer bias shift that makes the mean accumulated readout over T steps closest to the
    ANN's T·I (I = L·I / L): BC applied to the accumulate-only output."""
    acc = cur.total(T).astype(np.float64) + T * np.asarray(layer.bias, np.float64)
    want = ann_zL * (T / net.L)
    shift = np.rint(channel_mean(want - acc) / T).astype(np.int64)
    layer.bias = np.asarray(layer.bias, np.int64) + shift
    _check_fit(net, layer)


def _layer_report(name: str, before: np.ndarray, after: np.ndarray, target: np.ndarray, T: int,
                  d_bias: np.ndarray, d_v: np.ndarray) -> LayerReport:
    def errs(n: np.ndarray) -> tuple[float, float]:
        e = (n.astype(np.float64) - target) / T
        return float(np.abs(channel_mean(e)).mean()), float(np.sqrt(np.mean(e * e)))

    (mb, rb), (ma, ra) = errs(before), errs(after)
    return LayerReport(name, mb, ma, rb, ra, int(np.abs(d_bias).max(initial=0)), int(np.abs(d_v).max(initial=0)))


AUTO_CANDIDATES = ("potential", "potential-snn", "bias-snn", "neuron", "neuron-snn")
HOLD_OUT_EVERY = 4  # `auto` holds out every 4th calibration image to compare the candidates on


def pick_auto(accuracy: dict[str, float]) -> str:
    """The `auto` choice among calibrated candidates: best accuracy on the held-out training images, ties to
    the earlier candidate of AUTO_CANDIDATES (also used by benchmarks/low_latency.py, so both pick the same)."""
    names = [m for m in AUTO_CANDIDATES if m in accuracy]
    return max(names, key=lambda m: (accuracy[m], -AUTO_CANDIDATES.index(m)))


def hold_out_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held-out) index arrays of n calibration images: every HOLD_OUT_EVERY-th is held out (the sample is
    already a seeded uniform draw, so this split is too); fewer than HOLD_OUT_EVERY images: all in both."""
    idx = np.arange(n)
    held = idx % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1
    return (idx[~held], idx[held]) if held.any() else (idx, idx)


def calibrate_auto(net: IntNet, images01: np.ndarray, labels: np.ndarray, *, T: int, progress: bool = True,
                   provenance: dict[str, Any] | None = None) -> tuple[IntNet, CalibrationReport]:
    """`--snn-calib auto`: calibrate *for T* with each of AUTO_CANDIDATES on 3/4 of the calibration (training)
    images and keep the one whose SNN classifies the held-out quarter best at T (ties: the earlier candidate);
    that network, calibrated for the T it is asked for, is the result. Test images are never looked at."""
    from qcfs.runtime.numpy_snn import simulate

    fit, held = hold_out_split(len(images01))
    runs, held_acc = {}, {}
    for name in AUTO_CANDIDATES:
        runs[name] = calibrate(net, images01[fit], T=T, method=name, progress=progress, provenance=provenance,
                               labels=labels[fit])
        res = simulate(runs[name][0], images01[held], [T], progress=False)
        held_acc[name] = float(np.mean(res.predictions(T) == labels[held]))
    chosen = pick_auto(held_acc)
    out, report = runs[chosen]
    out.metadata["snn_calibration"]["auto"] = {
        "candidates": held_acc, "selected_on": "held-out training images", "chosen": chosen, "calibrated_for_T": T,
        "fit_images": int(len(fit)), "held_out_images": int(len(held)) if len(held) != len(fit) else 0}
    report.method = f"auto -> {chosen}"
    return out, report


__all__ = ["calibrate", "calibrate_auto", "pick_auto", "CalibrationReport", "LayerReport"]
