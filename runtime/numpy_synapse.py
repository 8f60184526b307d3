"""One synapse stage (conv or dense) of an IntNet as a batched, exact NumPy GEMM.

Why a plan object: everything that does not depend on the spikes (weight layout, padding buffers, the
float32-exactness proof, pool factorisation) is decided once, so a time step is only copies and BLAS calls.

Layout: activations are channel-last, [B, H, W, C] (conv sources) or [B, n] (dense), so im2col rows are
contiguous runs of C values and a conv output [B·Ho·Wo, C_out] already is the next layer's [B, Ho, Wo, C].
IntNet weights are C,H,W (torch) and are permuted here once.

Exactness: with integer weights w and inputs |x| ≤ x_max, every partial sum a BLAS kernel forms (in any
order) is bounded by max over outputs of Σ|w|·x_max. Below 2^24 float32 represents all of them exactly,
below 2^53 float64 does (`exact_bound`). Spike sources have x_max = 1 (or s² after sum-pooling, which
leaves the bound Σ|w|·x_max unchanged); a synapse with a separate pooling stage (Synapse.pool) reads window
sums, x_max = kh·kw.

Spike-driven path: the same plan can instead accumulate only the weight rows of the nonzero inputs
(numpy_sparse, scipy CSR), per call when the input is sparse enough (synapse_choice); same weights, same
dtype, same bound, so the same integers.
"""

from __future__ import annotations

import threading
from typing import Iterable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from qcfs.intnet import SumPool, Synapse
from qcfs.runtime.scratch import Buffers
from qcfs.runtime.numpy_sparse import sparse_conv_current, sparse_dense_current
from qcfs.runtime.synapse_choice import MODES, crossover

FLOAT32_EXACT_LIMIT = 2**24
FLOAT64_EXACT_LIMIT = 2**53
CHUNK_BYTES = 2 << 20  # im2col chunk: rows stay in L2/L3 (beat 8 MB by 1.3x with 2 workers, resnet20, 2026-12-06)
BOUND_CHUNK_ELEMS = 1 << 22  # exact_bound's |w| temporaries: 32 MB, not a copy of a 3 GB FC weight
POOL_FACTORING = True  # benchmarks switch it off to measure what it saves
SPARSE_WEIGHT_BYTES = 256 << 20  # dense weights up to this get the sparse path's second (row-major) copy


def channel_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The channel-last layout of an IntNet tensor shape: (C, H, W) -> (H, W, C); 1-D shapes unchanged."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def summed(currents: Iterable[np.ndarray]) -> np.ndarray | None:
    """Σ of synapse currents, accumulated in place into the first (None for none). Each comes from its own
    buffer (a plan's own, or its slot in the caller's scratch), so the first is free to receive the others."""
    total = None
    for cur in currents:
        if total is None:
            total = cur
        else:
            total += cur
    return total


def exact_bound(weight: np.ndarray, x_max: float) -> float:
    """Largest |partial sum| any summation order can produce for one output: max_o Σ|w_o|·x_max."""
    w = np.asarray(weight)
    w = w.reshape(w.shape[0], -1)
    rows = max(1, BOUND_CHUNK_ELEMS // max(1, w.shape[1]))  # |w| of a row block, not of the whole matrix
    best = 0.0
    for r0 in range(0, w.shape[0], rows):
        block = w[r0 : r0 + rows]
        if block.dtype.kind not in "iu":  # integer weights sum exactly in int64 (and much faster than float64)
            block = block.astype(np.float64)
        best = max(best, float(np.abs(block).sum(axis=1).max(initial=0)))
    return best * float(x_max)


def input_current_bound(layer_name: str, synapses: list[Synapse], bias: np.ndarray, x_max: float) -> float:
    """Largest |input-fed current + bias| of one layer, checked: the runtimes compute it once per chunk as a
    float64 GEMM, which is exact only below FLOAT64_EXACT_LIMIT (ValueError otherwise)."""
    bound = sum(exact_bound(s.weight, x_max) for s in synapses if s.source == "input")
    bound += float(np.abs(bias).max(initial=0.0))
    if bound >= FLOAT64_EXACT_LIMIT:
        raise ValueError(f"layer {layer_name}: input current up to {bound:.3g} is not exact in float64")
    return bound


def conv_output_hw(h: int, w: int, syn: Synapse, kh: int, kw: int) -> tuple[int, int]:
    top, left, bottom, right = syn.padding
    sh, sw = syn.stride
    return (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1


def _pool_factor(weight: np.ndarray, syn: Synapse, h: int, w: int) -> np.ndarray | None:
    """If this stride-s conv is "s×s sum-pool, then a stride-1 conv" (what composing an average pool into the
    next conv produces), return the small kernel, else None. Exact: the rewrite only regroups the sum."""
    sh, sw = syn.stride
    if sh != sw or sh < 2:
        return None
    s = sh
    o, i, kh, kw = weight.shape
    if kh % s or kw % s or h % s or w % s or any(p % s for p in syn.padding):
        return None
    blocks = weight.reshape(o, i, kh // s, s, kw // s, s)
    small = blocks[:, :, :, 0, :, 0]
    if not np.array_equal(blocks, np.broadcast_to(small[:, :, :, None, :, None], blocks.shape)):
        return None
    return np.ascontiguousarray(small)


class SynapsePlan:
    """Computes one synapse's current for a batch: `plan(src) -> [B, Ho, Wo, C_out] or [B, n_out]`.

    synapse (synapse_choice.MODES): "dense" = im2col + GEMM; "sparse" = spike-driven CSR @ W (numpy_sparse)
    where the stage supports it (groups = 1, dense weights ≤ SPARSE_WEIGHT_BYTES); "auto" = sparse below the
    crossover density measured for this shape (synapse_choice). All three give identical integers."""

    def __init__(self, syn: Synapse, src_shape: tuple[int, ...], dtype: np.dtype, synapse: str = "dense") -> None:
        if synapse not in MODES:
            raise ValueError(f"synapse must be one of {MODES}, got {synapse!r}")
        self.kind = syn.kind
        self.dtype = np.dtype(dtype)
        self.synapse = synapse
        self._crossover: float | None = None
        self._crossover_lock = threading.Lock()
        self._w_rows: np.ndarray | None = None
        self._bufs: dict[tuple, np.ndarray] = {}
        self.sum_pool: SumPool | None = syn.pool
        if syn.pool is not None:  # the weights read the window sums: plan the synapse on their shape
            src_shape = syn.pool.out_shape(src_shape)
        w = np.asarray(syn.weight)
        if syn.kind == "dense":
            if w.ndim != 2 or w.shape[1] != int(np.prod(src_shape)):
                raise ValueError(f"dense synapse from {syn.source!r}: weight {w.shape} vs source {src_shape}")
            # [n_in, n_out] as a transposed view of a contiguous [n_out, n_in]: BLAS takes it without a copy.
            # Filled in row blocks: a whole-matrix permute-then-cast would add a second int64 copy of the
            # weight (3.3 GB for a 224 VGG-16's first FC) on top of the IntNet's.
            mat = np.empty(w.shape, dtype=self.dtype)
            rows = max(1, BOUND_CHUNK_ELEMS // max(1, w.shape[1]))
            for r0 in range(0, w.shape[0], rows):
                block = w[r0 : r0 + rows]
                if len(src_shape) == 3:  # weight columns are in C,H,W order; our source is H,W,C
                    c, h, wd = src_shape
                    block = block.reshape(len(block), c, h, wd).transpose(0, 2, 3, 1).reshape(len(block), -1)
                mat[r0 : r0 + rows] = block
            self.wmat = mat.T
            self.out_shape: tuple[int, ...] = (w.shape[0],)
            self.gemm_in_shape: tuple[int, ...] = (w.shape[1],)  # what the GEMM reads per sample
            self.macs_per_sample = int(w.shape[0]) * int(w.shape[1])
            self.sparse_ok = mat.nbytes <= SPARSE_WEIGHT_BYTES  # the sparse path needs a row-major copy
            return
        if len(src_shape) != 3:
            raise ValueError(f"conv synapse from {syn.source!r} needs a C,H,W source, got {src_shape}")
        c, h, wd = src_shape
        w = np.asarray(w, dtype=np.float64)
        o, cg, kh, kw = w.shape
        self.groups = int(syn.groups)
        if cg * self.groups != c or o % self.groups:
            raise ValueError(f"conv synapse from {syn.source!r}: weight {w.shape}, groups {syn.groups}, C_in {c}")
        ho, wo = conv_output_hw(h, wd, syn, kh, kw)
        self.out_shape = (o, ho, wo)
        self.pool = 1
        self.stride = tuple(syn.stride)
        self.padding = tuple(syn.padding)
        small = _pool_factor(w, syn, h, wd) if POOL_FACTORING else None
        if small is not None:  # sum-pool s×s, then stride-1 conv with padding/s on the pooled grid
            self.pool = syn.stride[0]
            w, h, wd = small, h // self.pool, wd // self.pool
            kh, kw = w.shape[2:]
            self.stride = (1, 1)
            self.padding = tuple(p // self.pool for p in syn.padding)
        self.kh, self.kw = kh, kw
        g, og = self.groups, o // self.groups
        # [G, kh·kw·cg, og]: rows ordered (kh, kw, c) to match channel-last im2col windows
        self.wmat = np.ascontiguousarray(
            w.reshape(g, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(g, kh * kw * cg, og), dtype=self.dtype
        )
        top, left, bottom, right = self.padding
        self.pointwise = kh == kw == 1 and self.stride == (1, 1) and not any(self.padding) and g == 1
        self.padded_hw = (h + top + bottom, wd + left + right)
        self.gemm_in_shape = (h, wd, c)  # after the factored sum-pool
        self.macs_per_sample = ho * wo * kh * kw * cg * o
        self.sparse_ok = g == 1

    def _buf(self, tag: str, shape: tuple[int, ...], scratch: Buffers | None = None) -> np.ndarray:
        """Reused scratch arrays: fresh large allocations cost page faults every step. With `scratch` (the
        caller's per-thread Buffers, shared by every plan it runs) they outlive this plan's layer."""
        if scratch is not None:
            return scratch.get(f"syn.{tag}", shape, self.dtype)
        key = (tag, shape)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = np.empty(shape, dtype=self.dtype)
        return buf

    # --- helpers -----------------------------------------------------------------------------------
    def _pooled(self, src: np.ndarray) -> np.ndarray:
        s = self.pool
        out = src[:, 0::s, 0::s].astype(self.dtype)
        for i in range(s):
            for j in range(s):
                if i or j:
                    out += src[:, i::s, j::s]
        return out

    def _padded(self, src: np.ndarray, scratch: Buffers | None = None) -> np.ndarray:
        top, left, bottom, right = self.padding
        if not any(self.padding):
            return src  # the im2col copy converts (spikes are bool)
        b, h, w, c = src.shape
        buf = self._buf("pad", (b, h + top + bottom, w + left + right, c), scratch)
        # the border is written every call: a shared (scratch) buffer may hold another plan's map there
        buf[:, :top] = 0
        buf[:, top + h :] = 0
        buf[:, top : top + h, :left] = 0
        buf[:, top : top + h, left + w :] = 0
        buf[:, top : top + h, left : left + w] = src
        return buf

    # --- the current ---------------------------------------------------------------------------------
    def _window_sums(self, src: np.ndarray) -> np.ndarray:
        """The separate sum-pooling stage, channel-last: Σ over each (zero-padded) window, exact integers."""
        (kh, kw), (sh, sw), (t, l, b_, r) = self.sum_pool.kernel, self.sum_pool.stride, self.sum_pool.padding
        x = src.astype(self.dtype)
        if t or l or b_ or r:
            x = np.pad(x, ((0, 0), (t, b_), (l, r), (0, 0)))
        ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
        out = np.zeros((x.shape[0], ho, wo, x.shape[3]), dtype=self.dtype)
        for i in range(kh):
            for j in range(kw):
                out += x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
        return out

    def __call__(self, src: np.ndarray, scratch: Buffers | None = None, slot: int = 0) -> np.ndarray:
        """The current from `src`. scratch/slot: the caller's per-thread Buffers and this plan's output slot
        in it (plans whose outputs are alive at once need different slots); the output is valid until the
        slot is used again."""
        if self.sum_pool is not None:
            src = self._window_sums(src)
        if self.kind == "dense":
            src = src.reshape(src.shape[0], -1)
        elif self.pool > 1:
            src = self._pooled(src)
        if self._use_sparse(src):
            return self._sparse(src, scratch, slot)
        return self._dense(src, scratch, slot)

    # --- spike-driven path (numpy_sparse) -------------------------------------------------------------
    def _use_sparse(self, x: np.ndarray) -> bool:
        """Per call: the mode, or in "auto" this input's density against the measured crossover."""
        if self.synapse == "dense" or not self.sparse_ok:
            return False
        if self.synapse == "sparse":
            return True
        with self._crossover_lock:  # worker threads share this plan: measure the crossover once
            if self._crossover is None:
                self._measure_crossover(x)
        return np.count_nonzero(x) < self._crossover * x.size

    def _measure_crossover(self, x: np.ndarray) -> None:
        key = (self.kind, self.gemm_in_shape, self.wmat.shape, self.dtype.str, x.dtype.str,
               getattr(self, "stride", None), getattr(self, "padding", None), getattr(self, "kh", None))
        self._crossover = crossover(key, self.gemm_in_shape, x.dtype, self.macs_per_sample, self._dense,
                                    self._sparse)

    def _sparse(self, x: np.ndarray, scratch: Buffers | None = None, slot: int = 0) -> np.ndarray:
        if self.kind == "dense":
            if self._w_rows is None:  # row-major [n_in, n_out]: sparsetools reads weight rows in place
                self._w_rows = np.ascontiguousarray(self.wmat)
            return sparse_dense_current(x, self._w_rows)
        o, ho, wo = self.out_shape
        out = self._buf(f"out{slot}", (x.shape[0], ho, wo, o), scratch)
        return sparse_conv_current(x, self.wmat[0], self.kh, self.kw, self.stride, self.padding, out)

    # --- im2col + GEMM ---------------------------------------------------------------------------------
    def _dense(self, src: np.ndarray, scratch: Buffers | None = None, slot: int = 0) -> np.ndarray:
        b = src.shape[0]
        if self.kind == "dense" or self.pointwise:  # the map itself is the GEMM's rows
            x = src.reshape(-1, self.wmat.shape[-2])
            if x.dtype != self.dtype:
                rows = self._buf("rows", x.shape, scratch)
                rows[...] = x
                x = rows
            shape = (b, *self.out_shape) if self.kind == "dense" else (b, *self.out_shape[1:], self.out_shape[0])
            out = self._buf(f"out{slot}", shape, scratch)
            np.matmul(x, self.wmat if self.kind == "dense" else self.wmat[0], out=out.reshape(len(x), -1))
            return out
        o, ho, wo = self.out_shape
        p = self._padded(src, scratch)
        sh, sw = self.stride
        win = sliding_window_view(p, (self.kh, self.kw), axis=(1, 2))[:, : (ho - 1) * sh + 1 : sh,
                                                                         : (wo - 1) * sw + 1 : sw]
        win = win.transpose(0, 1, 2, 4, 5, 3)  # [B, Ho, Wo, kh, kw, C]: inner copies are contiguous in C
        g = self.groups
        k = self.wmat.shape[1]
        out = self._buf(f"out{slot}", (b, ho, wo, o), scratch)
        per_image = ho * wo * k * g * self.dtype.itemsize
        step = max(1, CHUNK_BYTES // max(per_image, 1))
        if g == 1 and step == 1 and per_image > CHUNK_BYTES:
            # one image's im2col is over the chunk (224×224×64 at 3×3: 115 MB in float32): rows of it instead
            rows = max(1, CHUNK_BYTES // max(1, wo * k * self.dtype.itemsize))
            cols = self._buf("rcols", (min(rows, ho), wo, self.kh, self.kw, src.shape[-1]), scratch)
            for i in range(b):
                for r0 in range(0, ho, rows):
                    r1 = min(ho, r0 + rows)
                    part = cols[: r1 - r0]
                    part[...] = win[i, r0:r1]
                    m = (r1 - r0) * wo
                    np.matmul(part.reshape(m, k), self.wmat[0], out=out[i, r0:r1].reshape(m, o))
            return out
        for b0 in range(0, b, step):
            b1 = min(b, b0 + step)
            m = (b1 - b0) * ho * wo
            if g == 1:
                cols = self._buf("cols", (b1 - b0, ho, wo, self.kh, self.kw, src.shape[-1]), scratch)
                cols[...] = win[b0:b1]
                np.matmul(cols.reshape(m, k), self.wmat[0], out=out[b0:b1].reshape(m, o))
            else:
                cg = src.shape[-1] // g
                wg = win[b0:b1].reshape(b1 - b0, ho, wo, self.kh, self.kw, g, cg)
                cols = self._buf("gcols", (g, b1 - b0, ho, wo, self.kh, self.kw, cg), scratch)
                cols[...] = wg.transpose(5, 0, 1, 2, 3, 4, 6)
                res = np.matmul(cols.reshape(g, m, k), self.wmat)  # [G, m, og]
                out[b0:b1] = res.transpose(1, 0, 2).reshape(b1 - b0, ho, wo, o)
        return out


def synapse_fanout(syn: Synapse, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> float:
    """Mean number of outgoing synapses per source neuron through this stage (structural, zero weights
    included): dense = n_out; conv = C_out/groups × (number of (output position, kernel tap) pairs that land
    inside the source image) / (H·W). Interior neurons of a stride-1 conv reach C_out/g·kh·kw targets;
    border neurons fewer; stride s divides by about s². Through a sum-pool stage (Synapse.pool): the pool's
    connections plus the weights' connections from the window sums, per source neuron."""
    n_src = int(np.prod(src_shape))
    if syn.pool is not None:
        from dataclasses import replace

        pooled = syn.pool.out_shape(src_shape)
        inner = synapse_fanout(replace(syn, pool=None), pooled, dst_shape) * int(np.prod(pooled))
        (kh, kw), (sh, sw), (t, l, _, _) = syn.pool.kernel, syn.pool.stride, syn.pool.padding
        inside = [sum(min(n, o * s - p + k) - max(0, o * s - p) for o in range(m))
                  for n, m, k, s, p in ((src_shape[1], pooled[1], kh, sh, t), (src_shape[2], pooled[2], kw, sw, l))]
        return (inner + src_shape[0] * inside[0] * inside[1]) / n_src
    w = np.asarray(syn.weight)
    if syn.kind == "dense":
        return float(w.shape[0])
    c, h, wd = src_shape
    o, _, kh, kw = w.shape
    top, left, bottom, right = syn.padding
    sh, sw = syn.stride
    ho, wo = conv_output_hw(h, wd, syn, kh, kw)

    def taps(n_out: int, stride: int, pad: int, k: int, size: int) -> int:
        pos = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :]
        return int(((pos >= 0) & (pos < size)).sum())

    pairs = taps(ho, sh, top, kh, h) * taps(wo, sw, left, kw, wd)
    # each (output position, tap) pair connects every input channel of a group to the group's og outputs
    return float(pairs * c * (o // syn.groups)) / n_src


def synapse_macs(syn: Synapse, dst_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of this stage in the ANN (every output × its full fan-in, padding included)."""
    w = np.asarray(syn.weight)
    fan_in = int(np.prod(w.shape[1:]))
    if syn.kind == "dense":
        return int(w.shape[0]) * fan_in
    return int(np.prod(dst_shape)) * fan_in
