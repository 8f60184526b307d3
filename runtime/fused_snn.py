"""The `fused` backend: per layer, numba gathers the spike maps of all T steps into GEMM rows (every synapse of
the layer side by side), onnxruntime's MatMulInteger multiplies them by the stacked int8 weights (u8 × s8 →
int32; VNNI where the CPU has it), and one numba loop runs the layer's IF recurrence and counts its spikes.
Same integers as the NumPy reference (tests/test_fused_snn.py).

Why this split, measured on resnet20 (2-core AMD EPYC with AVX-512 VNNI, 2026-12-05):
* the `ort` backend's graph spends most of its time outside the multiplications: im2col as Slice/Concat nodes
  (int8 kernels) or NCHWc reorders (float32), and a Scan whose body runs ~6 operators per step, each a pass
  over the membrane;
* onnxruntime's float Conv costs per step what the ANN's whole forward costs (the same multiply-adds), so a
  float32 SNN cannot get below the ANN per image·step; MatMulInteger did the same products 1.8× faster;
* im2col and the IF recurrence over uint8 channel-last spike maps are loops no library provides, and NumPy
  runs them as several passes each: numba compiles each into one pass (the IF loop ran 5× faster than the
  Scan on a resnet20 layer, 16 images, T = 8). A maintained JIT rather than C: nothing to build at install.
Threads: data-parallel. Each worker (this thread plus a small pool, Workers) runs the whole network on its own
share of the chunk's samples, every kernel and GEMM single-threaded in the worker's thread (the numba loops and
onnxruntime's run release the GIL). Why: splitting each kernel and GEMM over the threads instead meant ~50
hand-offs per resnet20 chunk between onnxruntime's pool and ours, each a wake-up on a noisy 2-core VM; with
shares, the workers never wait for each other until the chunk ends. A scratch A/B in one process on resnet20
(B = 32, T = 8, 11 interleaved rounds, 2026-12-06) measured 0.69× the fp32 ANN per image·step against 1.04× for
the code before (per-kernel split, im2col copying C bytes at a time); bench_speed.py's numbers: BENCHMARKS.md.
Not numba's parallel loops: their OpenMP pool busy-waits after each loop and slowed onnxruntime 2-4× on two
cores, and their workqueue pool must not be entered from two threads at once (Dask workers do). A chunk of one
sample runs on one thread.

Exactness: every current is an integer sum in int32 (|partial sum| < 2^31 proved per layer from the weights,
as for the snn-onnx int8 kernels); the membrane is int64 and saturates at the profile's register width; the
spike is qcfs.semantics.fire's: v ≥ θ (graded: clip(floor(v/θ), 0, m)), then v − θ·s. Input-fed currents are
computed once per chunk by the NumPy reference's own exact float64 synapse. Layer-synchronous timing only (as
`ort`); integer-mode IntNets whose spike-fed weights are int8 (FusedPlan raises ValueError otherwise: use `ort`
or `numpy` for those).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from qcfs.intnet import IntNet, Layer, Synapse
from qcfs.runtime.numpy_synapse import (SynapsePlan, _pool_factor, channel_last, exact_bound, input_current_bound,
                                         summed)
from qcfs.runtime.result import ChunkResults, SimResult, sync_inputs
from qcfs.runtime.scratch import Buffers
from qcfs.runtime.workers import Workers, usable_cores
from qcfs.semantics import encode_input, membrane_limits

INT32_LIMIT = 2**31
FUSED_BYTES = 256 << 20  # per chunk: a layer's int32 currents, GEMM rows and uint8 spike maps for T steps
# Spike maps (samples × steps) per pass of a worker through the network. Why: a layer's GEMM rows are then a few
# MB and stay in cache from the im2col that writes them to the GEMM that reads them (resnet20's first stage
# writes 160 bytes of rows per pixel). Measured on one thread, T = 8 (2026-12-06, AMD EPYC): 4 samples per pass
# ran resnet20 18 % and VGG-16 11 % faster than 32, 1 sample per pass (8 maps) was slower than 4 (call overheads).
CACHE_MAPS = 32


# --- numba kernels (compiled on first use, cached on disk by numba) ----------------------------------------
def _kernels():  # type: ignore[no-untyped-def]
    from numba import njit

    @njit(cache=True, nogil=True)
    def window_sum(src, kh, kw, sh, sw, top, left, out):  # pragma: no cover - compiled
        # out[n, i, j, c] = Σ src[n, i·sh − top + a, j·sw − left + b, c] over the window inside the map
        N, H, W, C = src.shape
        _, Ho, Wo, _ = out.shape
        for n in range(N):
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(C):
                        out[n, i, j, c] = 0
                    for a in range(kh):
                        y = i * sh - top + a
                        if y < 0 or y >= H:
                            continue
                        for b in range(kw):
                            x = j * sw - left + b
                            if x < 0 or x >= W:
                                continue
                            for c in range(C):
                                out[n, i, j, c] += src[n, y, x, c]

    @njit(cache=True, nogil=True)
    def im2col(src, kh, kw, sh, sw, top, left, out):  # pragma: no cover - compiled
        # out[n, i, j, a, b·C + c] = src[n, i·sh − top + a, (j·sw − left + b)·C + c] (0 outside the map), src
        # [N, H, W·C]; out may be a view of wider rows (its last axis contiguous). Where the whole window row lies
        # inside the map, its kw·C bytes are one contiguous run, copied by one loop LLVM vectorises.
        N, H, WC = src.shape
        _, ho, wo, _, run = out.shape
        C = run // kw
        for n in range(N):
            for i in range(ho):
                for a in range(kh):
                    y = i * sh - top + a
                    for j in range(wo):
                        x0 = (j * sw - left) * C
                        if y < 0 or y >= H:
                            for q in range(run):
                                out[n, i, j, a, q] = 0
                        elif x0 >= 0 and x0 + run <= WC:
                            for q in range(run):
                                out[n, i, j, a, q] = src[n, y, x0 + q]
                        else:
                            for q in range(run):
                                x = x0 + q
                                out[n, i, j, a, q] = src[n, y, x] if 0 <= x < WC else 0

    @njit(cache=True, nogil=True)
    def if_layer(cur, has_cur, const, has_const, v0, theta, lo, hi, m, spikes, counts, values):  # pragma: no cover
        # every sample of cur int32 [T, B, n], const int64 [B, n]; v0 int64 [n];
        # out: spikes uint8 [T, B, n], counts/values int64 [T, B]
        steps, b, n = spikes.shape
        v = np.empty(n, np.int64)
        for i in range(b):
            v[:] = v0
            for t in range(steps):
                c = 0
                total = 0
                for j in range(n):
                    x = v[j]
                    if has_cur:
                        x += cur[t, i, j]
                    if has_const:
                        x += const[i, j]
                    x = min(max(x, lo), hi)  # the saturating membrane register
                    if m == 1:
                        s = 1 if x >= theta else 0
                    else:  # graded: clip(floor(v/θ), 0, m); // on int64 is floor division, as Python's
                        s = min(max(x // theta, 0), m)
                    spikes[t, i, j] = s
                    v[j] = x - theta * s
                    c += s != 0
                    total += s
                counts[t, i] = c
                values[t, i] = total

    return window_sum, im2col, if_layer


_KERNELS = None


def kernels():  # type: ignore[no-untyped-def]
    """(window_sum, im2col, if_layer), compiled once per process (numba's disk cache makes it quick)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    return _KERNELS


# --- plan --------------------------------------------------------------------------------------------------
@dataclass
class _Gather:
    """How one spike-fed synapse turns its source's spike maps [M, H, W, C] (uint8) into GEMM rows."""

    source: str
    kind: str  # "dense" | "conv"
    sum_pool: tuple | None = None  # (kh, kw, sh, sw, top, left, out_hw) of a window-sum stage first
    conv: tuple | None = None  # (kh, kw, sh, sw, top, left, out_hw); None: pointwise (the map itself is the rows)
    k: int = 0  # GEMM row length

    def source_map(self, src: np.ndarray, buf: Buffers, j: int) -> np.ndarray:
        """The map the rows are cut from: the spikes, or their window sums (scratch `j` per synapse)."""
        if self.sum_pool is None:
            return src
        window_sum, _, _ = kernels()
        kh, kw, sh, sw, top, left, (ho, wo) = self.sum_pool
        out = buf.get(f"pooled{j}", (src.shape[0], ho, wo, src.shape[3]), np.uint8)
        window_sum(src, kh, kw, sh, sw, top, left, out)
        return out

    def write(self, src: np.ndarray, rows: np.ndarray, col0: int) -> None:
        """Write this synapse's GEMM rows into rows[:, col0 : col0 + k]."""
        if self.kind == "dense":
            rows[:, col0 : col0 + self.k] = src.reshape(rows.shape[0], self.k)
            return
        _, im2col, _ = kernels()
        # a pointwise conv's rows are the map itself: the 1×1 gather copies it (faster than NumPy's strided copy)
        kh, kw, sh, sw, top, left, (ho, wo) = self.conv or (1, 1, 1, 1, 0, 0, src.shape[1:3])
        view = rows[:, col0 : col0 + self.k].view()
        view.shape = (src.shape[0], ho, wo, kh, kw * src.shape[3])  # raises rather than copy: writes must land
        flat = src.reshape(src.shape[0], src.shape[1], -1)
        im2col(flat, kh, kw, sh, sw, top, left, view)


@dataclass
class _LayerPlan:
    layer: Layer
    shape: tuple[int, ...]  # channel-last
    gathers: list[_Gather] = field(default_factory=list)
    session: object = None  # onnxruntime: rows (uint8 [M, k]) -> cur (int32 [M, out channels]), + bias if no constant
    constant: list[SynapsePlan] = field(default_factory=list)  # input-fed synapses (float64, exact)
    bias: np.ndarray | None = None  # int64, channel-last; added to the constant current when there is one
    v0: np.ndarray | None = None  # int64 [n], channel-last
    theta: int = 0
    k: int = 0  # GEMM row length: every synapse's rows side by side

    @property
    def readout(self) -> bool:
        return self.layer.kind == "readout"


def _gather(syn: Synapse, src_shape: tuple[int, ...], layer: Layer, m: int) -> tuple[_Gather, np.ndarray, float]:
    """(gather, int8 weight matrix [K, O] in the gather's row order, exact bound of the products' sums)."""
    from qcfs.exporters.snn_onnx import _conv_matrix

    w = np.asarray(syn.weight)
    x_max = float(m)
    g = _Gather(source=syn.source, kind=syn.kind)
    if syn.pool is not None:
        p = syn.pool
        (kh, kw), (sh, sw), (t, l, _, _) = p.kernel, p.stride, p.padding
        out = p.out_shape(src_shape)
        if p.size * m > 255:
            raise ValueError(f"layer {layer.name}: window sums up to {p.size * m} do not fit uint8")
        g.sum_pool = (kh, kw, sh, sw, t, l, tuple(out[1:]))
        src_shape, x_max = tuple(out), float(p.size * m)
    if syn.kind == "dense":
        if len(src_shape) == 3:  # weight columns are C,H,W; the rows are H,W,C
            c, h, wd = src_shape
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        g.k = int(np.prod(src_shape))
        return g, w.T, exact_bound(w, x_max)
    c, h, wd = src_shape
    stride, padding = tuple(syn.stride), tuple(syn.padding)
    small = _pool_factor(w, syn, h, wd)
    if small is not None and g.sum_pool is None and syn.stride[0] ** 2 * m <= 255:
        # s×s sum-pool then a stride-1 conv on the pooled grid: s² fewer multiply-adds, same sums
        s = syn.stride[0]
        g.sum_pool = (s, s, s, s, 0, 0, (h // s, wd // s))
        w, h, wd, stride, padding = small, h // s, wd // s, (1, 1), tuple(p // s for p in padding)
        x_max = float(s * s * m)
    o, _, kh, kw = w.shape
    top, left, bottom, right = padding
    ho, wo = (h + top + bottom - kh) // stride[0] + 1, (wd + left + right - kw) // stride[1] + 1
    if (kh, kw, stride) != (1, 1, (1, 1)) or any(padding):
        g.conv = (kh, kw, stride[0], stride[1], top, left, (ho, wo))
    g.k = kh * kw * c
    return g, _conv_matrix(w, int(syn.groups)), exact_bound(w, x_max)


def _session(layer: Layer, mat: np.ndarray, bias: np.ndarray | None):  # type: ignore[no-untyped-def]
    """onnxruntime session: cur = MatMulInteger(rows, W) (+ bias), int32; W stacks every synapse's weights."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from qcfs.exporters.snn_onnx import OPSET

    inits = [numpy_helper.from_array(mat.astype(np.int8), "w")]
    nodes = [helper.make_node("MatMulInteger", ["rows", "w"], ["prod" if bias is not None else "cur"])]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.int32), "bias"))
        nodes.append(helper.make_node("Add", ["prod", "bias"], ["cur"]))
    graph = helper.make_graph(nodes, f"{layer.name}_currents",
                              [helper.make_tensor_value_info("rows", TensorProto.UINT8, ["M", mat.shape[0]])],
                              [helper.make_tensor_value_info("cur", TensorProto.INT32, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qcfs")
    model.ir_version = 8
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no pool thread may spin beside ours
    so.intra_op_num_threads = 1  # the caller's thread: each share of the samples runs on its own (FusedPlan.run)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class FusedPlan:
    """Gathers, onnxruntime sessions and IF constants of an integer-mode IntNet, built once."""

    def __init__(self, net: IntNet, threads: int = 0, sessions: bool = True) -> None:
        """Raises ValueError where fused cannot run `net` exactly. sessions=False: the checks only (no
        onnxruntime sessions, no worker threads), for a caller deciding whether it can (qcfs.simulate)."""
        if net.mode != "int" or net.input.scale is None:
            raise ValueError("the fused backend needs an integer-mode IntNet (export with --mode int)")
        self.net = net
        self.m = int(net.max_spikes_per_step)
        if self.m > 255:
            raise ValueError(f"max_spikes_per_step {self.m} does not fit uint8 spike maps")
        self.lo, self.hi = membrane_limits(net.profile.membrane_bits)
        shapes: dict[str, tuple[int, ...]] = {"input": tuple(int(d) for d in net.input.shape)}
        self.layers: list[_LayerPlan] = []
        for layer in net.layers:
            shape = tuple(int(d) for d in layer.shape)
            bias = np.asarray(layer.bias, dtype=np.float64)
            if not np.array_equal(bias, np.rint(bias)):
                raise ValueError(f"layer {layer.name}: non-integer bias")
            lp = _LayerPlan(layer=layer, shape=channel_last(shape))
            mats, bound = [], float(np.abs(bias).max(initial=0))
            for syn in layer.synapses:
                if syn.source == "input":
                    lp.constant.append(SynapsePlan(syn, shapes["input"], np.dtype(np.float64)))
                    continue
                gather, mat, b_ = _gather(syn, shapes[syn.source], layer, self.m)
                if not np.all((mat >= -128) & (mat <= 127)):
                    raise ValueError(f"layer {layer.name}: weights from {syn.source} exceed int8; use --backend ort")
                lp.gathers.append(gather)
                mats.append(mat)
                bound += b_
            input_current_bound(layer.name, layer.synapses, bias, float(1 << (net.input.bits - 1)))  # float64 GEMM
            if bound >= INT32_LIMIT:
                raise ValueError(f"layer {layer.name}: currents up to {bound:.3g} do not fit int32 sums")
            bias_cl = bias.reshape(-1).astype(np.int64)  # per channel (last axis) or per unit
            if lp.constant:
                lp.bias = bias_cl
            if mats:
                lp.k = sum(g.k for g in lp.gathers)
            if mats and sessions:
                lp.session = _session(layer, np.concatenate(mats, axis=0), None if lp.constant else bias_cl)
            if not lp.readout:
                v0 = layer.v_init_full()
                v0 = v0.transpose(1, 2, 0) if v0.ndim == 3 else v0
                theta = float(layer.threshold)
                if not np.array_equal(v0, np.rint(v0)) or not theta.is_integer():
                    raise ValueError(f"layer {layer.name}: non-integer v_init or threshold")
                lp.v0, lp.theta = v0.reshape(-1).astype(np.int64), int(theta)
            self.layers.append(lp)
            shapes[layer.name] = shape
        self.last_use = {g.source: i for i, lp in enumerate(self.layers) for g in lp.gathers}
        self.buffers: list[Buffers] = []  # one per share
        self.main_buffers = Buffers()  # the input-fed currents, computed in the calling thread
        self.pool = Workers((threads or usable_cores()) if sessions else 1, "qcfs-fused")

    def chunk(self, T: int) -> int:
        """Samples per chunk within FUSED_BYTES (the largest layer's currents and rows, T steps)."""
        per_sample = T * max(int(np.prod(lp.shape)) * 4 + sum(g.k for g in lp.gathers) * int(np.prod(lp.shape[:-1]))
                             for lp in self.layers)
        return max(1, FUSED_BYTES // max(1, per_sample))

    def run(self, x_int: np.ndarray, T: int):  # -> (logits [T, B, K] int64, counts {layer: [T, B]}, values)
        """One chunk: x_int [B, C, H, W] encoded input integers; cumulative counts per layer [T, B]. The
        input-fed currents are computed here for the whole chunk (one float64 GEMM, one BLAS thread); then each
        worker runs the whole network on its own share of the samples (why: module docstring)."""
        b = len(x_int)
        x_nhwc = np.ascontiguousarray(x_int.transpose(0, 2, 3, 1))
        consts = []
        for i, lp in enumerate(self.layers):
            const = None
            if lp.constant:  # in place and into reused buffers: fresh arrays here were ~2,000 page faults a call
                cur = summed(plan(x_nhwc) for plan in lp.constant)  # the plans' own buffers (this thread only)
                cur += lp.bias
                const = self.main_buffers.get(f"const{i}", (b, int(np.prod(lp.shape))), np.int64)
                const[...] = np.rint(cur, out=cur).reshape(b, -1)
            consts.append(const)
        shares = self.pool.shares(b)
        while len(self.buffers) < len(shares):
            self.buffers.append(Buffers())
        per_share: list = [None] * len(shares)
        step = max(1, CACHE_MAPS // T)

        def part(k: int) -> None:
            a, z = shares[k]
            per_share[k] = [self._forward([None if c is None else c[i : min(z, i + step)] for c in consts],
                                          min(z, i + step) - i, T, self.buffers[k]) for i in range(a, z, step)]

        self.pool.each(part, len(shares))
        parts = [p for share in per_share for p in share]
        logits = np.concatenate([p[0] for p in parts], axis=1)
        counts = {name: np.concatenate([p[1][name] for p in parts], axis=1) for name in parts[0][1]}
        values = {name: np.concatenate([p[2][name] for p in parts], axis=1) for name in parts[0][2]}
        return logits, counts, values

    def _forward(self, consts: list, b: int, T: int, buf: Buffers):  # type: ignore[no-untyped-def]
        """The whole network on b samples in this thread: gathers, one GEMM per layer, the IF loop."""
        _, _, if_layer = kernels()
        spikes: dict[str, np.ndarray] = {}
        counts, values = {}, {}
        dummy_cur, dummy_const = np.zeros((1, 1, 1), np.int32), np.zeros((1, 1), np.int64)
        for i, lp in enumerate(self.layers):
            n = int(np.prod(lp.shape))
            const = consts[i]
            cur = None
            if lp.gathers:
                cur = buf.get("cur", (T, b, n), np.int32)
                out_rows = T * b * n // lp.shape[-1]
                maps = [g.source_map(spikes[g.source], buf, j) for j, g in enumerate(lp.gathers)]
                g0 = lp.gathers[0]
                if len(maps) == 1 and (g0.kind == "dense" or g0.conv is None):
                    rows = maps[0].reshape(out_rows, g0.k)  # the spike map itself: no copy
                else:  # every synapse's rows side by side: one GEMM with the stacked weights
                    rows = buf.get("rows", (out_rows, lp.k), np.uint8)
                    col = 0
                    for g, src in zip(lp.gathers, maps):
                        g.write(src, rows, col)
                        col += g.k
                bind = lp.session.io_binding()  # input and output in place: no copies, no fresh pages
                bind.bind_cpu_input("rows", rows)
                bind.bind_output("cur", "cpu", 0, np.int32, [out_rows, lp.shape[-1]], cur.ctypes.data)
                lp.session.run_with_iobinding(bind)
            for src in [src for src, last in self.last_use.items() if last == i]:
                del spikes[src]
            if lp.readout:
                per_step = np.zeros((T, b, n), np.int64) if cur is None else cur.astype(np.int64)
                if const is not None:
                    per_step += const[None]
                return np.cumsum(per_step, axis=0), counts, values
            s = buf.get(f"spikes:{lp.layer.name}", (T, b, n), np.uint8)  # alive until its last reader
            cnt = np.empty((T, b), np.int64)
            val = np.empty((T, b), np.int64)
            if_layer(dummy_cur if cur is None else cur, cur is not None, dummy_const if const is None else const,
                     const is not None, lp.v0, lp.theta, self.lo, self.hi, self.m, s, cnt, val)
            counts[lp.layer.name] = np.cumsum(cnt, axis=0)
            if self.m > 1:
                values[lp.layer.name] = np.cumsum(val, axis=0)
            if lp.layer.name in self.last_use:
                spikes[lp.layer.name] = s.reshape(T * b, *lp.shape)
        raise ValueError("the last layer of an IntNet must be the readout")


def simulate_fused(net: IntNet, images01: np.ndarray, Ts: list[int], *, batch_size: int = 256, threads: int = 0,
                   progress: bool = True, plan: FusedPlan | None = None) -> SimResult:
    """Simulate `images01` ([N, C, H, W] in [0, 1]) layer-synchronously for max(Ts) steps; counts and logits
    at every T in Ts. `plan` (FusedPlan of `net`) lets a caller that times runs build it once."""
    images01, Ts = sync_inputs(net.input.shape, images01, Ts)
    plan = plan or FusedPlan(net, threads)
    T = Ts[-1]
    out = ChunkResults(len(images01), Ts, net.num_classes, [layer.name for layer in net.if_layers], plan.m)
    step = max(1, min(batch_size, plan.chunk(T)))
    # one BLAS thread (the input-fed currents' float64 GEMM): OpenBLAS's idle threads spin after each call and
    # took a core from the workers (sys time up to 40 % of a call's wall time, resnet20, 2026-12-06)
    with threadpool_limits(1, user_api="blas") if plan.pool.count > 1 else nullcontext():
        for start in tqdm(range(0, len(images01), step), desc="fused SNN", disable=not progress, leave=False):
            x = encode_input(images01[start : start + step], net.input.mean, net.input.std, net.input.scale,
                             net.input.bits)
            out.put(start, *plan.run(x, T))
    return out.result("fused")
