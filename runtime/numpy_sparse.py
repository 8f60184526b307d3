"""Spike-driven synaptic currents: accumulate only the weight rows of the inputs that are nonzero.

Why: about a tenth of a QCFS network's neurons spike per step, so a dense GEMM (and, for convolutions, its
im2col copy) spends most of its work on zeros. Here a spike map becomes a CSR matrix of its events and the
current is `CSR @ W`, whose cost is (number of events) × (fan-out) instead of (number of inputs) × (fan-out).

Why scipy.sparse (not numba or hand-written C): it is already installed with every qcfs environment (scikit-learn
depends on it), its `csr @ dense` kernel (sparsetools csr_matvecs: for each row, for each stored entry, one axpy
of the weight row into the output row) is exactly the event-driven accumulation, and its CSR row gather
(csr_row_index) builds the sparse im2col of a convolution in C++. numba would add an LLVM-based JIT (a large
dependency, and compilation at first use in every process and Dask worker); a hand-written kernel would need
a compiler in CI. The cost of this choice: sparsetools' axpy is scalar C++ (no AVX-512 dispatch), so the
sparse path wins only well below the density where the work ratio alone would say (synapse_choice measures).

Convolutions (channel-last, groups = 1): the spike map, zero-padded, is a CSR matrix S with one row per padded
pixel and one column per channel. Output pixel r under kernel tap (i, j) reads padded pixel q(r, i, j) =
(y·sh + i, x·sw + j); gathering rows q(r, ·) of S for every r (tap-minor) and shifting tap k's columns by k·C
gives the sparse im2col matrix [B·Ho·Wo, kh·kw·C] whose column order (kh, kw, c) is the dense plan's weight
layout. Its entries are the events × taps that land inside the output: the work of an event-driven machine.
Stride-1 convolutions build the same matrix column by column instead (scatter_conv_current: no gather).

Exactness: the same weights in the same float dtype as the dense plan, and the same bound (exact_bound: every
partial sum of |w|·x_max below 2^24 resp. 2^53) holds for any subset and order of the products, so the sparse
current equals the dense one bit for bit; tests check it on plain, pooled, residual and graded networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: importing the runtime (or the exporters using it) needs no scipy
    from scipy.sparse import csr_matrix

SPARSE_CHUNK_ENTRIES = 1 << 24  # im2col positions (rows × kh·kw·C) per chunk: bounds index arrays and int32
SCATTER_CHUNK_BYTES = 1 << 20  # scatter form: output rows of one chunk, so scattered updates stay in L2
SCATTER_STRIDE1 = True  # stride-1 convolutions (kernels > 1×1) take scatter_conv_current, the others the row gather


def events_csr(x: np.ndarray, dtype: np.dtype) -> csr_matrix:
    """The nonzeros of a 2-D array [rows, cols] (bool spikes, graded uint8 spikes or float window sums) as a
    CSR matrix with `dtype` values and int32 indices (sparsetools' native index type: no conversion)."""
    from scipy.sparse import csr_matrix

    rows, cols = x.shape
    flat = np.flatnonzero(x)  # row-major: already sorted by row, as CSR needs
    data = np.ones(len(flat), dtype=dtype) if x.dtype == bool else x.reshape(-1)[flat].astype(dtype)
    row, col = np.divmod(flat, cols)
    indptr = np.zeros(rows + 1, dtype=np.int32)
    if len(flat):
        indptr[1:] = np.cumsum(np.bincount(row, minlength=rows))
    return csr_matrix((data, col.astype(np.int32), indptr), shape=(rows, cols))


def sparse_dense_current(x: np.ndarray, w_rows: np.ndarray) -> np.ndarray:
    """x [B, n_in] (mostly zeros) @ w_rows [n_in, n_out] (C-contiguous, so sparsetools reads it in place)."""
    return events_csr(x, w_rows.dtype) @ w_rows


def tap_rows(hp: int, wp: int, ho: int, wo: int, kh: int, kw: int, stride: tuple[int, int]) -> np.ndarray:
    """[Ho·Wo, kh·kw] int32: the padded pixel (row of S within one image) each output pixel reads per tap."""
    sh, sw = stride
    y = np.arange(ho)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None]
    x = np.arange(wo)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :]
    return (y * wp + x).reshape(ho * wo, kh * kw).astype(np.int32)


def sparse_conv_current(x: np.ndarray, w_mat: np.ndarray, kh: int, kw: int, stride: tuple[int, int],
                        padding: tuple[int, int, int, int], out: np.ndarray) -> np.ndarray:
    """Convolution current of a channel-last map x [B, H, W, C] (mostly zeros) into `out` [B, Ho, Wo, O].

    w_mat: [kh·kw·C, O] C-contiguous, rows ordered (kh, kw, c) as the dense plan's; groups = 1."""
    from scipy.sparse import csr_matrix

    b, h, w, c = x.shape
    top, left, bottom, right = padding
    hp, wp = h + top + bottom, w + left + right
    _, ho, wo, o = out.shape
    taps = kh * kw
    if taps == 1 and tuple(stride) == (1, 1) and not any(padding):  # pointwise: S itself is the im2col
        out.reshape(-1, o)[...] = events_csr(x.reshape(-1, c), w_mat.dtype) @ w_mat
        return out
    if SCATTER_STRIDE1 and tuple(stride) == (1, 1):
        return scatter_conv_current(x, w_mat, kh, kw, padding, out)
    rows = tap_rows(hp, wp, ho, wo, kh, kw, stride)
    per_image = max(1, ho * wo * taps * c)
    step = max(1, min(b, SPARSE_CHUNK_ENTRIES // per_image, (2**31 - 1) // max(1, hp * wp * c)))
    if any(padding):
        xp = np.zeros((min(b, step), hp, wp, c), dtype=x.dtype)  # the border stays zero
    for b0 in range(0, b, step):
        b1 = min(b, b0 + step)
        n = b1 - b0
        if any(padding):
            src = xp[:n]
            src[:, top : top + h, left : left + w] = x[b0:b1]
        else:
            src = x[b0:b1]
        s = events_csr(src.reshape(n * hp * wp, c), w_mat.dtype)
        m = n * ho * wo
        idx = (np.arange(n, dtype=np.int32)[:, None, None] * np.int32(hp * wp) + rows[None]).reshape(-1)
        g = s[idx]  # [m·taps, C]: output pixel r's taps are rows r·taps … r·taps + taps − 1
        lens = np.diff(g.indptr)
        shift = np.repeat(np.tile(np.arange(taps, dtype=np.int32) * np.int32(c), m), lens)
        a = csr_matrix((g.data, g.indices + shift, np.ascontiguousarray(g.indptr[::taps])), shape=(m, taps * c))
        out[b0:b1] = (a @ w_mat).reshape(n, ho, wo, o)
    return out


def scatter_conv_current(x: np.ndarray, w_mat: np.ndarray, kh: int, kw: int, padding: tuple[int, int, int, int],
                         out: np.ndarray) -> np.ndarray:
    """Stride-1 convolution current of x [B, H, W, C] into `out` [B, Ho, Wo, O], event-major (scipy CSC).

    Why a second form: sparse_conv_current pays per (output pixel, tap) for its row gather, which dominates
    when C is small (a few events per tap row). At stride 1 every event's targets are its own padded position
    minus a constant offset per tap, so the im2col matrix can be written column by column (column = (tap,
    channel), rows = the events of that channel shifted by the tap's offset) with one vectorised add per tap
    and no gather; `CSC @ W` then scatters each event's weight row into its output rows. Rows are on the full
    padded grid (outputs past Ho, Wo and a leading margin absorb the shifted events that fall outside and are
    cropped), so no event needs a bounds test."""
    from scipy.sparse import csc_matrix

    b, h, w, c = x.shape
    top, left, bottom, right = padding
    hp, wp = h + top + bottom, w + left + right
    _, ho, wo, o = out.shape
    taps = kh * kw
    margin = (kh - 1) * wp + (kw - 1)  # the largest tap offset: shifted rows stay ≥ 0
    offsets = np.array([margin - (i * wp + j) for i in range(kh) for j in range(kw)], dtype=np.int64)
    per_image = hp * wp * max(o, c) * w_mat.dtype.itemsize
    int32_images = (2**31 - 1 - margin) // max(1, hp * wp * taps * c)  # row and entry indices stay int32
    step = max(1, min(b, SCATTER_CHUNK_BYTES // per_image, int32_images))
    xp = np.zeros((min(b, step), hp, wp, c), dtype=x.dtype)  # padded chunk; the border stays zero
    for b0 in range(0, b, step):
        b1 = min(b, b0 + step)
        n = b1 - b0
        src = xp[:n]
        src[:, top : top + h, left : left + w] = x[b0:b1]
        rows = n * hp * wp
        by_channel = np.ascontiguousarray(src.reshape(rows, c).T)  # [C, pixels]: events sorted by channel
        flat = np.flatnonzero(by_channel)
        ch, pos = np.divmod(flat, rows)
        if x.dtype == bool:
            data = np.ones(taps * len(flat), dtype=w_mat.dtype)
        else:
            data = np.tile(by_channel.reshape(-1)[flat].astype(w_mat.dtype), taps)
        indices = (pos[None, :] + offsets[:, None]).astype(np.int32).reshape(-1)  # tap-major, channel-sorted
        indptr = np.zeros(taps * c + 1, dtype=np.int32)
        indptr[1:] = np.cumsum(np.tile(np.bincount(ch, minlength=c), taps))
        a = csc_matrix((data, indices, indptr), shape=(margin + rows, taps * c))
        full = a @ w_mat  # [margin + rows, O]
        out[b0:b1] = full[margin:].reshape(n, hp, wp, o)[:, :ho, :wo]
    return out
