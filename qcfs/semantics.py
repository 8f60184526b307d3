"""The meaning of a converted network, written once; every backend and test cites this module.

QCFS activation (Bu et al., ICLR 2022):
    h(x) = λ · clip(floor(x·L/λ + φ) / L, 0, 1),   φ = 0.5, λ > 0 per layer, L ∈ ℕ⁺ per model.

Integrate-and-fire neuron (per channel/unit), discrete time t = 1..T, no leak:
    v(0)  = v_init                      (= φ·θ; integer mode: θ is even, so v_init = θ/2 exactly)
    v     ← sat(v + I(t))               (integer mode: saturate to the profile's membrane range, as Loihi
                                         and Lava's fixed-point models do; float mode: no saturation)
    s(t)  = [v ≥ θ]
    v     ← v − θ·s(t)                  (reset by subtraction)
Graded spikes (multi-spike IF, IntNet `max_spikes_per_step` = m ≥ 1; m = 1 is the binary neuron above):
    s(t)  = clip(floor(v/θ), 0, m)      (one message per neuron and step carrying the integer s ∈ 1..m,
    v     ← v − θ·s(t)                   Loihi 2's graded spike; the synapse delivers w·s)
A graded layer fires as the binary one would over m sub-steps of the same current, so a graded network with
every per-step current scaled by m (qcfs.toolchain.graded.make_graded) at T steps approximates the binary
network at m·T steps; at T = 1 with m = L it is exact: s = clip(floor((L·I + θ/2)/θ), 0, L), the QCFS count.
A QCFS layer with clip level λ becomes θ = λ and each spike of the previous layer carries the value λ_prev;
the passes fold λ into integer weights so every backend sees only integer θ, weights and biases.
Consequence (Theorem 1 of the paper): with constant input x and T = L, the spike count equals
L·h(x)/λ = clip(floor(x·T/λ + φ), 0, T).

Input: direct encoding. The normalized image x = (p − mean)/std is fed as a constant current to the first
layer at every step. In integer mode it is first quantized to `bits`-bit signed integers,
x_int = clip(rint(x·scale), −2^(bits−1), 2^(bits−1)−1); `scale` is part of the IntNet header.

Readout: the last layer has no neuron. Its current I(t) is accumulated over the T steps; prediction =
argmax of the accumulated current (ties resolve to the lowest class index, as numpy.argmax).

Two-phase inference (COS-style offset correction, Hao et al., ICLR 2023; `qcfs-run --pre-steps ρ`): run ρ
steps as above, then every IF neuron restarts its window from v ← sat(v_init + θ·floor(v(ρ)/θ)): a residual
v(ρ) < 0 means the neuron emitted floor(v/θ) < 0 spikes more than its input supports (v ≥ θ: fewer), and the
same offset is taken off its next window. Readout accumulators and spike counts restart at 0; accuracy and
counts refer to the T steps after the ρ pre-steps, and the latency is ρ + T (+ depth when pipelined).

Timing disciplines (both produce identical counts over each layer's own T-step window):
  * layer-synchronous: at step t every layer, in topological order, integrates the spikes its sources
    emitted at the same step t.
  * pipelined (Lava, Loihi): every synapse stage adds one step of delay (plus its `delay` field). A layer at
    depth d (the input is depth 0, d = depth(source) + 1 + delay for every incoming synapse) sees sample n's
    input during global steps n·T + d + 1 … n·T + d + T and resets v ← v_init when that window starts, so N
    samples run back to back in N·T + depth(readout) steps.
  A synapse with a separate pooling stage (IntNet Synapse.pool) sums each window of its source's spikes of
  the same step and multiplies the sum by its weights: identical currents to the composed (pool folded into
  the weights) synapse. Pipelined, the pooling stage is one more step: d = depth(source) + 2 + delay.
"""

from __future__ import annotations

import numpy as np

PHI_DEFAULT = 0.5


def qcfs_activation(x: np.ndarray, lam: float, L: int, phi: float = PHI_DEFAULT) -> np.ndarray:
    """The QCFS activation h(x), in float64, for tests and the float reference."""
    x = np.asarray(x, dtype=np.float64)
    return lam * np.clip(np.floor(x * L / lam + phi) / L, 0.0, 1.0)


def membrane_limits(bits: int) -> tuple[int, int]:
    """Signed range of a `bits`-bit membrane register: [-2^(bits-1), 2^(bits-1) - 1]."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def fire(v: np.ndarray, theta: float | int, v_limits: tuple[int, int] | None, spikes: np.ndarray,
         max_spikes: int = 1) -> None:
    """The IF step after integration, in place: saturate (when `v_limits`), spike into `spikes` (v's shape;
    bool when max_spikes = 1, else an integer array receiving clip(floor(v/θ), 0, max_spikes)), subtract θ
    per spike. Backends call this with preallocated buffers on their hot path."""
    if v_limits is not None:
        np.clip(v, v_limits[0], v_limits[1], out=v)
    if max_spikes == 1:
        np.greater_equal(v, theta, out=spikes)
        # v -= θ·s, not np.subtract(..., where=spikes): NumPy's masked ufunc loop costs ~5 ns per element
        # (measured, NumPy 1.26), the product and a plain subtraction ~0.3 ns; the integers are the same.
        v -= np.multiply(spikes, v.dtype.type(theta), dtype=v.dtype)  # v's dtype under any NumPy's casting
        return
    n = np.clip(np.floor_divide(v, v.dtype.type(theta)), 0, max_spikes)  # floor: exact for int64 and float64
    spikes[...] = n
    v -= n * v.dtype.type(theta)


def saturation_free(v_init_max: float, current_bound: float, steps: int, v_limits: tuple[int, int] | None) -> bool:
    """True when `steps` IF steps cannot reach the saturation limits, so the clip may be skipped.

    Why it holds: with |current| ≤ B per step, integration raises v by at most B and firing only lowers a
    v ≥ θ > 0 to v − n·θ ≥ 0, so v_t ≤ v_0 + t·B; v falls only by integration, so
    v_t ≥ min(v_0, 0) − t·B.
    Hence |v| ≤ |v_0| + steps·B throughout (before and after firing)."""
    if v_limits is None:
        return True
    reach = float(v_init_max) + float(steps) * float(current_bound)
    return reach <= v_limits[1] and -reach >= v_limits[0]


def payload_bits(max_spikes: int) -> int:
    """Bits of one graded spike's payload s ∈ 1..m (unsigned, so m needs ⌈log2(m+1)⌉); 0 for binary spikes,
    whose event carries no payload."""
    return 0 if max_spikes <= 1 else int(max_spikes).bit_length()


def spike_dtype(max_spikes: int) -> type:
    """Smallest dtype of a spike map: bool for binary spikes, else an unsigned integer holding m."""
    return bool if max_spikes <= 1 else (np.uint8 if max_spikes < 256 else np.uint16)


def offset_restart(v: np.ndarray, v_init: np.ndarray | float | int, theta: float | int,
                   v_limits: tuple[int, int] | None) -> None:
    """Two-phase inference, in place: v ← sat(v_init + θ·floor(v/θ)) (see the module docstring)."""
    offset = np.floor_divide(v, v.dtype.type(theta))
    v[...] = v_init
    v += offset * v.dtype.type(theta)
    if v_limits is not None:
        np.clip(v, v_limits[0], v_limits[1], out=v)


def if_step(
    v: np.ndarray,
    current: np.ndarray,
    theta: float | int,
    v_limits: tuple[int, int] | None = None,
    max_spikes: int = 1,
) -> np.ndarray:
    """One IF step in place on `v`: integrate (saturating when `v_limits`), spike, subtract. Returns spikes.

    `v` and `current` must share a dtype that holds the values exactly (int64 or float64).
    """
    v += current
    spikes = np.empty(v.shape, dtype=spike_dtype(max_spikes))
    fire(v, theta, v_limits, spikes, max_spikes)
    return spikes


def constant_input_spike_count(x: float, theta: float, T: int, phi: float = PHI_DEFAULT) -> int:
    """Run one IF neuron for T steps on constant current x (float64); the reference for Theorem 1 tests."""
    v = np.array([phi * theta], dtype=np.float64)
    cur = np.array([x], dtype=np.float64)
    count = 0
    for _ in range(T):
        count += int(if_step(v, cur, theta)[0])
    return count


def encode_input(
    images: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    scale: float | None,
    bits: int = 8,
) -> np.ndarray:
    """Normalize images in [0, 1] (N, C, H, W) per channel; quantize to signed `bits` integers when
    `scale` is given (integer mode, int64 result), else return float64 (float mode)."""
    images = np.asarray(images, dtype=np.float64)
    c = images.shape[1]
    m = np.broadcast_to(np.asarray(mean, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    x = (images - m) / s
    if scale is None:
        return x
    lo, hi = membrane_limits(bits)
    return np.clip(np.rint(x * scale), lo, hi).astype(np.int64)
