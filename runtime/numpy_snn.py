"""NumPy reference runtime: exact IF simulation of an IntNet, batched, in both timing disciplines.

Semantics are qcfs.semantics' (input encoding via encode_input; the neuron update below is if_step's formula
done in place on preallocated buffers, and tests compare it with if_step neuron by neuron). This module must
not import torch: it is the reference that runs anywhere.

Exactness in integer mode: readout accumulators are int64, membranes int64 in the step-major and pipelined
loops and, in the layer-major loop, the current's float dtype where membrane_dtype proves every membrane value
an exact float integer (else int64); membranes saturate to the profile's range. Synaptic currents come from
float32 BLAS only where the layer's `float32_exact` flag AND our own bound (numpy_synapse.exact_bound: every
partial sum < 2^24) allow it, else float64 BLAS with the bound < 2^53 checked here (ValueError otherwise);
the spike-driven (sparse) path sums a subset of the same products in the same dtype, so the same bound makes
it exact too (`synapse`). Float mode: float64 everywhere, no saturation, no quantization.

Timing:
  * "sync": every layer integrates its sources' spikes of the same step; one run of T_max steps, counts and
    logits are snapshotted at every requested T. The input-driven part of a current (the first layer's) is
    constant, so it is computed once per batch. Nothing flows backwards in time, so by default the run is
    layer-major (order="layer"): a layer's steps are GEMMs over blocks of T_b·B spike maps of its sources
    (T_b as large as keeps the output near the cache), and only the elementwise IF recurrence loops over
    t. order="step" is the literal loop (every layer, then the next step), kept as the check of the
    layer-major one.

Speed without leaving NumPy (resnet20, B = 32, T = 8, 2-core AMD EPYC, 2026-12-06: 4.06× → 1.89× the fp32 ANN):
  * threads: the layer-major loop splits a chunk's samples into one contiguous share per usable core, each run
    by a worker thread with one BLAS thread (runtime/workers.py says why); OpenBLAS's own 2-thread GEMMs on
    these shapes were slower than one thread (its idle threads spin between calls);
  * scratch: every worker's membranes, spike trains, padded maps, im2col rows and GEMM outputs live in reused
    buffers (runtime/scratch.py), kept between calls: fresh arrays cost ~38,000 page faults per call;
  * the IF step subtracts θ·s instead of a masked subtraction (qcfs.semantics.fire), and the layer-major loop
    skips the saturating clip where T steps provably cannot reach the register limits
    (qcfs.semantics.saturation_free); the step-major loop, which tests compare with it, always clips.

Memory (what is alive at once; the weights' GEMM copies are made once by compile_net):
  * layer-major: for the layer being run, the T·B spike trains (bool) of its sources that later layers
    still read (a train is freed after its last reader: a chain holds one input and one output train, a
    residual block one more), its membrane and scratch (B maps), its constant current (input layer only),
    one time block of GEMM output (≤ LAYER_MAJOR_BLOCK_BYTES, or one step) and one im2col chunk
    (≤ CHUNK_BYTES) per worker. The batch is split so that T spike maps of *every* layer plus three maps of
    the largest fit in LAYER_MAJOR_BYTES (layer_major_batch), a bound above the live set, so a chunk never
    exceeds it (the workers share a chunk's samples). Up to scratch.KEEP_BYTES of scratch stays allocated
    between calls.
  * step-major: membranes and spikes of every layer (each step reads them all); one shared scratch.
  * pipelined: one sample's state per layer, a ring of max_delay + 2 spike maps per layer.
  * "pipelined": the samples of a batch run back to back as one stream (as on Lava/Loihi): a layer of depth d
    works on sample n during global steps n·T+d+1 … n·T+d+T, reading what its sources emitted 1+delay steps
    earlier, and resets v ← v_init at its window start; N samples take N·T + depth(readout) steps. Slow (one
    sample per layer per step) but literal, so it checks the Lava backend's timing.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from qcfs.intnet import IntNet, Layer
from qcfs.runtime.numpy_synapse import (FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT, SynapsePlan, channel_last,
                                         exact_bound, input_current_bound, summed)
from qcfs.runtime.numpy_neuron import if_block
from qcfs.runtime.synapse_choice import MODES as SYNAPSE_MODES
from qcfs.runtime.result import SimResult
from qcfs.runtime.scratch import SHARED, Buffers, TagPool
from qcfs.runtime.workers import Workers, usable_cores
from qcfs.semantics import encode_input, fire, membrane_limits, offset_restart, saturation_free, spike_dtype

TIMINGS = ("sync", "pipelined")
PRECISIONS = ("auto", "float64")
ORDERS = ("layer", "step")
DEFAULT_SYNAPSE = "dense"  # "auto" lost to dense on vgg16 (BENCHMARKS.md, 2026-12-05): opt-in until it does not
LAYER_MAJOR_BYTES = 256 << 20  # memory budget of one layer-major chunk (spike maps, currents)
LAYER_MAJOR_BLOCK_BYTES = 8 << 20  # GEMM output of one block of steps


@dataclass
class LayerPlan:
    """A layer compiled for the runtime: spike-driven synapses (per step) and input-driven ones (per batch)."""

    layer: Layer
    shape: tuple[int, ...]  # channel-last: (H, W, C) or (n,)
    dtype: np.dtype  # GEMM dtype of the spike-driven current
    spiking: list[tuple[SynapsePlan, str, int]] = field(default_factory=list)  # (plan, source, delay + pool step)
    constant: list[tuple[SynapsePlan, int]] = field(default_factory=list)  # input synapses (plan, delay)
    bias_in_gemm: np.ndarray | None = None  # bias added to the spike current (float, exact) when no input syn
    bias_const: np.ndarray | None = None  # bias added to the constant current otherwise
    threshold: int | float = 1
    v_init: int | float | np.ndarray = 0  # per channel: (C,); per neuron: channel-last shape; broadcasts
    depth: int = 1
    max_spikes: int = 1  # the network's graded payload m (qcfs.semantics); 1: bool spike maps
    mem_dtype: np.dtype = np.dtype(np.float64)  # layer-major membrane (membrane_dtype); float mode: float64
    current_bound: float = float("inf")  # |one step's input current| ≤ this (integer mode; saturation_free)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def is_readout(self) -> bool:
        return self.layer.kind == "readout"


def _integral(x: float, what: str) -> int:
    if not float(x).is_integer():
        raise ValueError(f"{what} must be an integer in integer mode, got {x}")
    return int(x)


def _v_init(layer: Layer, integer: bool) -> int | float | np.ndarray:
    """Scalar v_init as a number, per-channel v_init as a (C,) array, per-neuron v_init in the channel-last
    layer shape (integer-checked in integer mode)."""
    if not layer.per_channel_v_init:
        return _integral(layer.v_init, f"layer {layer.name} v_init") if integer else float(layer.v_init)
    if layer.per_neuron_v_init:
        full = layer.v_init_full()
        v = full.transpose(1, 2, 0) if full.ndim == 3 else full
    else:
        v = layer.v_init_per_channel()
    if integer:
        if not np.array_equal(v, np.rint(v)):
            raise ValueError(f"layer {layer.name}: non-integer v_init in integer mode")
        return v.astype(np.int64)
    return v


def membrane_dtype(cur_dtype: np.dtype, v_bound: float, v_init: int | np.ndarray, theta: int,
                   membrane_bits: int) -> np.dtype:
    """The layer-major membrane dtype of an integer layer: the current's float dtype where every value the
    membrane, its sum with one step's current (|·| ≤ v_bound) and θ take is an integer below 2^24 (float32) or
    2^53 (float64): then float add, compare and subtract are the int64 ones, and the current needs no conversion
    (numpy_neuron). After a step |v| ≤ 2^(bits−1) (saturation; firing only lowers a v ≥ θ > 0 towards 0).
    int64 otherwise."""
    v_max = max(float(2 ** (membrane_bits - 1)), float(np.abs(np.asarray(v_init)).max(initial=0)), float(theta))
    v_max += v_bound
    if cur_dtype == np.float32 and v_max < FLOAT32_EXACT_LIMIT:
        return np.dtype(np.float32)
    if v_max < FLOAT64_EXACT_LIMIT:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def compile_net(net: IntNet, precision: str = "auto", synapse: str = "dense") -> list[LayerPlan]:
    """Check shapes and exactness bounds once and build the per-layer GEMM plans (`synapse`: how the
    spike-driven currents are computed, numpy_synapse.SynapsePlan; the input-driven ones are always dense).
    Also proves each IF layer's membrane dtype for the layer-major loop (LayerPlan.mem_dtype)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    integer = net.mode == "int"
    if integer and net.input.scale is None:
        raise ValueError("integer-mode IntNet without an input scale")
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(net.input.shape)}
    x_max_input = float(1 << (net.input.bits - 1)) if integer else 1.0
    m = int(net.max_spikes_per_step)
    plans = []
    for layer in net.layers:
        bias = np.asarray(layer.bias, dtype=np.float64)
        spike_syns = [s for s in layer.synapses if s.source != "input"]
        input_syns = [s for s in layer.synapses if s.source == "input"]
        for s in layer.synapses:
            if s.source not in shapes:
                raise ValueError(f"layer {layer.name}: source {s.source!r} is not an earlier layer")
        bound = sum(exact_bound(s.weight, float(m) * (s.pool.size if s.pool is not None else 1)) for s in spike_syns)
        if not input_syns:
            bound += float(np.abs(bias).max(initial=0.0))
        dtype = np.dtype(np.float64)
        if integer:
            if bound >= FLOAT64_EXACT_LIMIT:
                raise ValueError(f"layer {layer.name}: partial sums up to {bound:.3g} are not exact in float64")
            if precision == "auto" and layer.float32_exact and bound < FLOAT32_EXACT_LIMIT:
                dtype = np.dtype(np.float32)
            const_bound = input_current_bound(layer.name, input_syns, bias, x_max_input)  # bias included
            if not np.array_equal(bias, np.rint(bias)):
                raise ValueError(f"layer {layer.name}: non-integer bias in integer mode")
            v_bound = bound + (const_bound if input_syns else 0.0)
        lp = LayerPlan(layer=layer, shape=channel_last(tuple(layer.shape)), dtype=dtype, depth=int(layer.depth),
                       max_spikes=m)
        for s in spike_syns:
            plan = SynapsePlan(s, shapes[s.source], dtype, synapse)
            _check_out(layer, s.source, plan.out_shape)
            lp.spiking.append((plan, s.source, int(s.delay) + (s.pool is not None)))  # a pool stage: one step
        for s in input_syns:
            plan = SynapsePlan(s, shapes["input"], np.dtype(np.float64))
            _check_out(layer, "input", plan.out_shape)
            lp.constant.append((plan, int(s.delay)))
        bias_b = bias.reshape(lp.shape[-1:] if len(lp.shape) == 3 else lp.shape)
        if input_syns:
            lp.bias_const = bias_b
        else:
            lp.bias_in_gemm = bias_b.astype(dtype)
        if layer.kind == "readout":
            pass  # accumulates only: no threshold, no v_init
        elif integer:
            lp.threshold = _integral(layer.threshold, f"layer {layer.name} threshold")
            lp.v_init = _v_init(layer, integer)
            lp.mem_dtype = membrane_dtype(dtype, v_bound, lp.v_init, lp.threshold,
                                          net.profile.membrane_bits)
            lp.current_bound = v_bound
        else:
            lp.threshold, lp.v_init = float(layer.threshold), _v_init(layer, integer)
        shapes[layer.name] = tuple(layer.shape)
        plans.append(lp)
    if not plans or plans[-1].layer.kind != "readout":
        raise ValueError("the last layer of an IntNet must be the readout")
    return plans


def _check_out(layer: Layer, source: str, out_shape: tuple[int, ...]) -> None:
    if int(np.prod(out_shape)) != int(np.prod(layer.shape)) or (
        len(layer.shape) == 3 and tuple(out_shape) != tuple(layer.shape)
    ):
        raise ValueError(f"layer {layer.name}: synapse from {source} produces {out_shape}, layer is {layer.shape}")


def check_depths(plans: list[LayerPlan]) -> None:
    """Pipelined timing needs depth = depth(source) + 1 + delay for every synapse (input has depth 0)."""
    depth = {"input": 0}
    for lp in plans:
        syns = [(src, d) for _, src, d in lp.spiking] + [("input", d) for _, d in lp.constant]
        ds = {depth[src] + 1 + d for src, d in syns}
        if ds != {lp.depth}:
            raise ValueError(f"layer {lp.name}: depth {lp.depth} but its synapses imply {sorted(ds)}; "
                             f"delays must align every path (depth = depth(source) + 1 + delay)")
        depth[lp.name] = lp.depth


# --- neuron update ---------------------------------------------------------------------------------------
def _integrate(target: np.ndarray, cur: np.ndarray, scratch: np.ndarray | None = None) -> None:
    """target += cur. An int64 target takes float currents that hold exact integers: converting into an
    int64 scratch first and adding integers is about twice as fast as a mixed-type add."""
    if scratch is not None and target.dtype != cur.dtype:
        np.copyto(scratch, cur, casting="unsafe")
        np.add(target, scratch, out=target)
    else:
        np.add(target, cur, out=target, casting="unsafe")


def constant_current(lp: LayerPlan, x_nhwc: np.ndarray, integer: bool, scratch: Buffers | None = None,
                     dtype: np.dtype | None = None) -> np.ndarray | None:
    """Input-driven current plus bias for a whole batch, exact (float64 bound checked in compile_net), in
    `dtype` (default int64, float64 in float mode; a float32 membrane holds it exactly, membrane_dtype).
    scratch: the calling worker's Buffers (plans are shared between worker threads; their own buffers are not
    thread-safe); the result is then its "if.const", valid until the next call. Without it, a fresh array."""
    if not lp.constant:
        return None
    cur = summed(plan(x_nhwc, scratch, j) for j, (plan, _) in enumerate(lp.constant))
    cur += lp.bias_const
    dtype = dtype or np.dtype(np.int64 if integer else np.float64)
    if scratch is None:
        return cur.astype(dtype)
    out = scratch.get("if.const", cur.shape, dtype)
    out[...] = cur  # exact: integers below the bound compile_net checked
    return out


def spike_current(lp: LayerPlan, sources: dict[str, np.ndarray], scratch: Buffers | None = None
                  ) -> np.ndarray | None:
    """Σ of the layer's spike-fed synapse currents (+ bias); with `scratch`, in its buffers (valid until the
    next call with the same scratch)."""
    cur = summed(plan(sources[src], scratch, j) for j, (plan, src, _) in enumerate(lp.spiking))
    if cur is not None and lp.bias_in_gemm is not None:
        cur += lp.bias_in_gemm
    return cur


def _raster_row(spikes: np.ndarray, k: int) -> np.ndarray:
    """First k neurons of one sample in C,H,W order (the IntNet's order)."""
    s = spikes.transpose(2, 0, 1) if spikes.ndim == 3 else spikes
    return s.reshape(-1)[:k]


# --- public entry ----------------------------------------------------------------------------------------
def simulate(
    net: IntNet,
    images01: np.ndarray,
    Ts: list[int],
    *,
    timing: str = "sync",
    batch_size: int = 256,
    raster_neurons: int = 0,
    progress: bool = True,
    precision: str = "auto",
    pre_steps: int = 0,
    order: str = "layer",
    synapse: str = DEFAULT_SYNAPSE,
    threads: int = 0,
) -> SimResult:
    """Simulate `images01` ([N, C, H, W] in [0, 1]) for max(Ts) steps; counts and logits at every T in Ts.

    precision="float64" disables the float32 GEMM path (for tests: both must give identical integers).
    pre_steps=ρ > 0: two-phase inference (qcfs.semantics.offset_restart), layer-synchronous timing only (it runs
    the step-major loop: the restart after ρ steps couples all layers at one step).
    order ("layer" | "step"): how sync timing walks the (layer, step) grid; both give identical integers.
    synapse ("auto" | "dense" | "sparse"): how spike-driven currents are computed (numpy_synapse.SynapsePlan:
    im2col + GEMM, event-driven CSR, or per call whichever is faster for the input's spike density); all three
    give identical integers.
    threads: worker threads of the layer-major loop (0: every usable core). Each runs its own contiguous
    share of a chunk's samples with single-threaded BLAS (runtime/workers.py says why); the other loops run
    in this thread. Any share split gives identical integers. The one-BLAS-thread limit (threadpoolctl) is
    process-wide while the call runs: BLAS calls from the caller's other threads get one thread too.
    """
    Ts = sorted({int(t) for t in Ts})
    if not Ts or Ts[0] < 1:
        raise ValueError("every T must be a positive integer")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if pre_steps < 0 or (pre_steps and timing != "sync"):
        raise ValueError("pre_steps must be >= 0 and needs timing='sync'")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if synapse not in SYNAPSE_MODES:
        raise ValueError(f"synapse must be one of {SYNAPSE_MODES}, got {synapse!r}")
    images01 = np.asarray(images01)
    if images01.ndim == 3:
        images01 = images01[:, None]
    if tuple(images01.shape[1:]) != tuple(net.input.shape):
        raise ValueError(f"images have shape {images01.shape[1:]}, the network expects {tuple(net.input.shape)}")
    plans = compile_net(net, precision, synapse)
    if timing == "pipelined":
        check_depths(plans)
    integer = net.mode == "int"
    x_all = encode_input(images01, net.input.mean, net.input.std, net.input.scale if integer else None,
                         net.input.bits)
    n = len(x_all)
    acc_dtype = np.int64 if integer else np.float64
    logits = {t: np.zeros((n, net.num_classes), dtype=acc_dtype) for t in Ts}
    m = int(net.max_spikes_per_step)
    keys = [lp.name for lp in plans[:-1]] + ([VALUES + lp.name for lp in plans[:-1]] if m > 1 else [])
    spikes = {t: {key: np.zeros(n, dtype=np.int64) for key in keys} for t in Ts}
    pre = {lp.name: np.zeros(n, dtype=np.int64) for lp in plans[:-1]} if pre_steps else {}
    raster: dict[str, np.ndarray] = {}
    ctx = _Context(plans, Ts, integer, membrane_limits(net.profile.membrane_bits) if integer else None,
                   raster_neurons, pre_steps)
    run = _run_stream
    if timing == "sync" and (order == "step" or pre_steps):
        run = _run_sync
    elif timing == "sync":
        run = _run_layer_major
        batch_size = min(batch_size, layer_major_batch(plans, Ts[-1], ctx.acc_dtype))
    workers = Workers((threads or usable_cores()) if run is _run_layer_major else 1, "qcfs-numpy")
    scratch = SHARED.take(workers.count)
    one_blas_thread = threadpool_limits(1, user_api="blas") if workers.count > 1 else nullcontext()
    try:
        with one_blas_thread:
            for start in tqdm(range(0, n, batch_size), desc=f"numpy SNN ({timing})", disable=not progress,
                              leave=False):
                x = np.ascontiguousarray(x_all[start : start + batch_size].transpose(0, 2, 3, 1))
                for a, z, (out_logits, out_counts, r) in _run_shares(run, ctx, x, start == 0, workers, scratch):
                    for t in Ts:
                        logits[t][start + a : start + z] = out_logits[t]
                        for name, c in out_counts[t].items():
                            spikes[t][name][start + a : start + z] = c
                    for name, c in out_counts.get(PRE, {}).items():
                        pre[name][start + a : start + z] = c
                    raster.update(r)
    finally:
        workers.close()
        SHARED.give(scratch)
    values = {t: {k[len(VALUES):]: spikes[t].pop(k) for k in keys if k.startswith(VALUES)} for t in Ts} \
        if m > 1 else {}
    return SimResult(Ts=Ts, logits=logits, spikes=spikes, raster=raster, backend="numpy", timing=timing,
                     pre_steps=pre_steps, values=values, max_spikes=m, pre_spikes=pre)


def _run_shares(run, ctx: _Context, x: np.ndarray, first_batch: bool,  # type: ignore[no-untyped-def]
                workers: Workers, scratch: list[Buffers]) -> list:
    """[(start, stop, run's result)] for contiguous shares of the batch `x`, run at once on the workers (the
    layer-major loop; the other loops get the whole batch in this thread). The raster is sample 0's."""
    if run is not _run_layer_major:
        return [(0, len(x), run(ctx, x, first_batch))]
    shares = workers.shares(len(x))
    outs: list = [None] * len(shares)

    def run_share(j: int) -> None:
        a, z = shares[j]
        outs[j] = (a, z, run(ctx, x[a:z], first_batch and j == 0, scratch[j]))

    workers.each(run_share, len(shares))
    return outs


PRE = 0  # key of the pre-step counts in the run functions' per-T count dicts (T ≥ 1 are the real ones)
VALUES = "values:"  # prefix of the graded payload sums in the run functions' count dicts


def _count(counts: dict[str, np.ndarray], lp: LayerPlan, s: np.ndarray, axis: int) -> None:
    """Add a spike map's messages (and, graded, its payload sum) over `axis`, per sample."""
    counts[lp.name] += np.count_nonzero(s, axis=axis)
    if lp.max_spikes > 1:
        counts[VALUES + lp.name] += s.sum(axis=axis, dtype=np.int64)


@dataclass
class _Context:
    plans: list[LayerPlan]
    Ts: list[int]
    integer: bool
    limits: tuple[int, int] | None
    raster_neurons: int
    pre_steps: int = 0

    @property
    def acc_dtype(self) -> type:
        return np.int64 if self.integer else np.float64


def _run_sync(ctx: _Context, x: np.ndarray, want_raster: bool):  # type: ignore[no-untyped-def]
    b = len(x)
    mem_dtype = np.int64 if ctx.integer else np.float64
    const = {lp.name: constant_current(lp, x, ctx.integer) for lp in ctx.plans}
    v = {lp.name: np.full((b, *lp.shape), lp.v_init, dtype=mem_dtype) for lp in ctx.plans[:-1]}
    out = {lp.name: np.zeros((b, *lp.shape), dtype=spike_dtype(lp.max_spikes)) for lp in ctx.plans[:-1]}
    counts = {key: np.zeros(b, dtype=np.int64) for lp in ctx.plans[:-1]
              for key in ((lp.name, VALUES + lp.name) if lp.max_spikes > 1 else (lp.name,))}
    readout = ctx.plans[-1]
    acc = np.zeros((b, *readout.shape), dtype=ctx.acc_dtype)
    # one scratch buffer shared by all layers (it only carries a current into the membrane's dtype)
    flat = np.empty(b * max(int(np.prod(lp.shape)) for lp in ctx.plans), dtype=mem_dtype)
    scratch = {lp.name: flat[: b * int(np.prod(lp.shape))].reshape(b, *lp.shape) for lp in ctx.plans}
    k = ctx.raster_neurons if want_raster else 0
    raster = {lp.name: np.zeros((ctx.Ts[-1], k), dtype=bool) for lp in ctx.plans[:-1]} if k else {}
    snap_logits, snap_counts = {}, {}
    rho = ctx.pre_steps
    for step in range(1, rho + ctx.Ts[-1] + 1):
        t = step - rho  # step within the counted window (<= 0 during the pre-steps)
        for lp in ctx.plans:
            target = acc if lp.is_readout else v[lp.name]
            cur = spike_current(lp, out)
            if cur is not None:
                _integrate(target, cur, scratch[lp.name])
            if const[lp.name] is not None:
                target += const[lp.name]
            if lp.is_readout:
                continue
            s = out[lp.name]
            fire(target, lp.threshold, ctx.limits, s, lp.max_spikes)
            _count(counts, lp, s.reshape(b, -1), 1)
            if k and t >= 1:
                raster[lp.name][t - 1] = _raster_row(s[0], k)
        if rho and t == 0:  # end of the pre-steps: offset correction, then the counted window starts
            for lp in ctx.plans[:-1]:
                offset_restart(v[lp.name], lp.v_init, lp.threshold, ctx.limits)
            snap_counts[PRE] = {lp.name: counts[lp.name].copy() for lp in ctx.plans[:-1]}
            for c in counts.values():
                c[...] = 0
            acc[...] = 0
        if t in ctx.Ts:
            snap_logits[t] = acc.reshape(b, -1).copy()
            snap_counts[t] = {name: c.copy() for name, c in counts.items()}
    return snap_logits, snap_counts, raster


def layer_major_batch(plans: list[LayerPlan], T: int, acc_dtype: type, budget: int = 0) -> int:
    """Samples per layer-major chunk: T spike maps (bool) of every layer may be alive at once, plus one
    layer's membrane, scratch and constant current (the GEMM output is bounded by the time block)."""
    per_sample = layer_major_sample_bytes([int(np.prod(lp.shape)) for lp in plans], T, acc_dtype)
    return max(1, (budget or LAYER_MAJOR_BYTES) // per_sample)


def layer_major_sample_bytes(neurons: list[int], T: int, acc_dtype: type = np.int64) -> int:
    """Bytes per sample layer_major_batch reserves (qcfs.budget uses the same number, without compiling)."""
    return T * sum(neurons) + 3 * max(neurons) * max(8, np.dtype(acc_dtype).itemsize)


def _time_block(b: int, n: int, T: int) -> int:
    """Steps per GEMM: as many as keep its output near the cache size (the IF loop then reads it while it
    is still there; all T at once was slower than step-major on the small cnn)."""
    return max(1, min(T, LAYER_MAJOR_BLOCK_BYTES // max(1, b * n * 8)))


def _run_layer_major(ctx: _Context, x: np.ndarray, want_raster: bool,  # type: ignore[no-untyped-def]
                     scratch: Buffers | None = None):
    """Sync timing, one layer at a time over all T steps. Spike maps are time-major, [T·B, ...] (row
    t·B + i is sample i at step t+1), so a synapse plan sees a block of steps as one batch of samples.
    scratch: this thread's reused buffers (membranes, spike trains, GEMM scratch; runtime/scratch.py)."""
    b, T = len(x), ctx.Ts[-1]
    scratch = scratch or Buffers()
    trains = TagPool("if.train")
    train_tag: dict[str, str] = {}
    last_use = {src: i for i, lp in enumerate(ctx.plans) for _, src, _ in lp.spiking}
    spikes: dict[str, np.ndarray] = {}
    running: dict[str, np.ndarray] = {}  # layer -> int64 [T, B] spike counts up to each step
    k = ctx.raster_neurons if want_raster else 0
    raster = {}
    for i, lp in enumerate(ctx.plans):
        mem_dtype = lp.mem_dtype if ctx.integer and not lp.is_readout else np.dtype(ctx.acc_dtype)
        const = constant_current(lp, x, ctx.integer, scratch, mem_dtype)  # exact in mem_dtype: membrane_dtype
        tc = _time_block(b, int(np.prod(lp.shape)), T)
        if lp.is_readout:
            total = np.zeros((T, b, *lp.shape), dtype=ctx.acc_dtype)
        else:
            v = scratch.get("if.v", (b, *lp.shape), mem_dtype)
            v[...] = lp.v_init
            const_v = None if const is None else const.reshape(-1)
            # the clip is skipped where T steps provably never reach the limits (the step-major loop, which
            # tests compare with this one, always clips)
            limits = None if saturation_free(float(np.abs(lp.v_init).max(initial=0)), lp.current_bound, T,
                                             ctx.limits) else ctx.limits
            train_tag[lp.name] = trains.take()
            s = scratch.get(train_tag[lp.name], (T, b, *lp.shape), spike_dtype(lp.max_spikes))
        for t0 in range(0, T, tc):
            t1 = min(T, t0 + tc)
            cur = spike_current(lp, {src: spikes[src][t0 * b : t1 * b] for _, src, _ in lp.spiking}, scratch)
            if cur is not None:
                cur = cur.reshape(t1 - t0, b, *lp.shape)
            if lp.is_readout:
                if cur is not None:
                    _integrate(total[t0:t1], cur)
                continue
            # the only per-step work: the IF recurrence, elementwise, one cache-sized membrane slice at a time
            if_block(v.reshape(-1), None if cur is None else cur.reshape(t1 - t0, -1), const_v, lp.threshold,
                     limits, s[t0:t1].reshape(t1 - t0, -1), lp.max_spikes)
        for src in [name for name, last in last_use.items() if last == i]:
            del spikes[src]
            trains.give(train_tag[src])  # its buffer holds a later layer's train
        if lp.is_readout:
            if const is not None:
                total += const
            readout = np.cumsum(total.reshape(T, b, -1), axis=0)
            continue
        running[lp.name] = np.cumsum(np.count_nonzero(s.reshape(T, b, -1), axis=2), axis=0)
        if lp.max_spikes > 1:
            running[VALUES + lp.name] = np.cumsum(s.reshape(T, b, -1).sum(axis=2, dtype=np.int64), axis=0)
        if k:
            raster[lp.name] = np.stack([_raster_row(s[t, 0], k) for t in range(T)])
        if lp.name in last_use:
            spikes[lp.name] = s.reshape(T * b, *lp.shape)
        else:
            trains.give(train_tag[lp.name])
    snap_logits = {t: readout[t - 1].copy() for t in ctx.Ts}
    snap_counts = {t: {name: c[t - 1].copy() for name, c in running.items()} for t in ctx.Ts}
    return snap_logits, snap_counts, raster


def _run_stream(ctx: _Context, x: np.ndarray, want_raster: bool):  # type: ignore[no-untyped-def]
    """The batch as one back-to-back stream of samples, one global step at a time (pipelined timing)."""
    n = len(x)
    T = ctx.Ts[-1]
    t_set = set(ctx.Ts)
    mem_dtype = np.int64 if ctx.integer else np.float64
    const = {lp.name: constant_current(lp, x, ctx.integer) for lp in ctx.plans}
    max_delay = max([d for lp in ctx.plans for _, _, d in lp.spiking] + [0])
    ring = max_delay + 2  # a source's emission at g-1-delay must survive until step g
    hist = {lp.name: [np.zeros((1, *lp.shape), dtype=spike_dtype(lp.max_spikes)) for _ in range(ring)]
            for lp in ctx.plans[:-1]}
    v = {lp.name: np.zeros((1, *lp.shape), dtype=mem_dtype) for lp in ctx.plans}  # readout: accumulator
    running = {key: np.zeros(n, dtype=np.int64) for lp in ctx.plans[:-1]
               for key in ((lp.name, VALUES + lp.name) if lp.max_spikes > 1 else (lp.name,))}
    logits = {t: np.zeros((n, int(np.prod(ctx.plans[-1].shape))), dtype=ctx.acc_dtype) for t in ctx.Ts}
    counts = {t: {key: np.zeros(n, dtype=np.int64) for key in running} for t in ctx.Ts}
    k = ctx.raster_neurons if want_raster else 0
    raster = {lp.name: np.zeros((T, k), dtype=bool) for lp in ctx.plans[:-1]} if k else {}
    total = n * T + ctx.plans[-1].depth
    for g in range(1, total + 1):
        for lp in ctx.plans:
            sample, k0 = divmod(g - lp.depth - 1, T)
            local = k0 + 1
            if not 0 <= sample < n:  # outside every window: idle, emit nothing
                if not lp.is_readout:
                    hist[lp.name][g % ring][...] = 0
                continue
            mem = v[lp.name]
            if local == 1:
                mem[...] = 0 if lp.is_readout else lp.v_init
            sources = {src: hist[src][(g - 1 - d) % ring] for _, src, d in lp.spiking}
            cur = spike_current(lp, sources)
            if cur is not None:
                _integrate(mem, cur)
            if const[lp.name] is not None:
                for _, d in lp.constant:  # the input emits sample (g_e - 1) // T at global step g_e
                    assert (g - 1 - d - 1) // T == sample, "input synapse delay does not match the layer depth"
                mem += const[lp.name][sample : sample + 1]
            if lp.is_readout:
                if local in t_set:
                    logits[local][sample] = mem.reshape(-1)
                continue
            s = hist[lp.name][g % ring]
            fire(mem, lp.threshold, ctx.limits, s, lp.max_spikes)
            running[lp.name][sample] += np.count_nonzero(s)  # each sample has exactly one window
            if lp.max_spikes > 1:
                running[VALUES + lp.name][sample] += int(s.sum(dtype=np.int64))
            if local in t_set:
                for key in ((lp.name, VALUES + lp.name) if lp.max_spikes > 1 else (lp.name,)):
                    counts[local][key][sample] = running[key][sample]
            if k and sample == 0:
                raster[lp.name][local - 1] = _raster_row(s[0], k)
    return logits, counts, raster
