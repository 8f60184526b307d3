"""Sparse or dense synapse current, per synapse and per call: below a crossover spike density, sparse.

Why measured, not a constant: where `CSR @ W` (numpy_sparse) overtakes im2col + GEMM depends on the fan-out,
the channel count (the im2col copy moves runs of C values), the float dtype and the BLAS kernels (AVX2 vs
AVX-512, thread count), so a threshold tuned on one CPU would lose on another. Each synapse shape is timed
once per process on random spike maps at two densities, both paths on the same inputs; the sparse time is
linear in the density (its work is events × fan-out), the dense time does not depend on it, and the crossover
is where the line meets the dense time. A call then counts its input's nonzeros (one pass over a byte map,
cheap next to either path) and takes the sparse path only below SAFETY × the crossover, so timing noise near
the crossover cannot make the choice slower than dense. Both paths give identical integers (tests), so the
choice changes only the time.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

MODES = ("auto", "dense", "sparse")
DENSITIES = (0.02, 0.25)  # calibration inputs: spike rates either side of the usual 5-15 %
CAL_MACS = 1 << 25  # dense multiply-accumulates of one calibration call (a few ms)
CAL_BYTES = 8 << 20  # and at most this much input
SAFETY = 0.8
_CROSSOVER: dict[tuple, float] = {}  # per process: synapse signature -> crossover density


def _best_time(f: Callable[[], object], reps: int = 2) -> float:
    f()  # warm-up: scratch buffers, page faults, BLAS thread start
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def crossover(key: tuple, in_shape: tuple[int, ...], in_dtype: np.dtype, macs_per_sample: int,
              dense: Callable[[np.ndarray], object], sparse: Callable[[np.ndarray], object]) -> float:
    """The density (nonzeros / inputs) below which `sparse` is the faster current for inputs [B, *in_shape]
    of `in_dtype`, times SAFETY; cached per `key` (the synapse's shapes and dtypes) for the process."""
    hit = _CROSSOVER.get(key)
    if hit is not None:
        return hit
    n_in = int(np.prod(in_shape))
    b = int(max(1, min(CAL_MACS // max(1, macs_per_sample), CAL_BYTES // max(1, n_in))))
    rng = np.random.default_rng(0)
    lo, hi = ((rng.random((b, *in_shape)) < d).astype(in_dtype) for d in DENSITIES)
    d_lo, d_hi = (np.count_nonzero(x) / max(1, x.size) for x in (lo, hi))
    t_dense = _best_time(lambda: dense(hi))
    t_lo, t_hi = _best_time(lambda: sparse(lo)), _best_time(lambda: sparse(hi))
    if t_lo >= t_dense:
        cross = 0.0  # sparse loses even on the sparse input: never
    elif t_hi <= t_lo or d_hi <= d_lo:
        cross = d_hi if t_hi < t_dense else d_lo  # no measurable slope: trust only what was measured
    else:
        cross = d_lo + (t_dense - t_lo) * (d_hi - d_lo) / (t_hi - t_lo)
    cross = SAFETY * min(1.0, max(0.0, cross))
    _CROSSOVER[key] = cross
    return cross


def crossovers() -> dict[tuple, float]:
    """What this process measured (benchmarks record it)."""
    return dict(_CROSSOVER)
