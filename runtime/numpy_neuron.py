"""The IF recurrence of one layer over a block of steps, in place, neuron-slice by neuron-slice.

Why: the layer-major runtime holds a layer's currents for a block of steps at once. Running each operation of
a step over the whole membrane (add the current, add the input current, saturate, compare, subtract θ) streams
the membrane through memory about five times per step. Walking the membrane in cache-sized slices and running
every step of the block on a slice before taking the next keeps the slice in L1/L2, so per step the only memory
traffic is reading the current and writing the spike map: the update is no longer a second pass over the
membrane. Membranes are float32 or float64 where compile_net proves every value they take an integer below
2^24 or 2^53 (then float addition, comparison and subtraction are exact integer arithmetic), so the current,
which the GEMM produced in that dtype, is added without a conversion pass. Each slice update is
qcfs.semantics.fire, the same function the step-major loop calls, so the integers are the same.

Why not one fused kernel (numba, C): NumPy's in-place ufuncs on a cache-resident slice already run at the
cache's speed; what the slices remove is the memory traffic, which was the cost.
"""

from __future__ import annotations

import numpy as np

from qcfs.semantics import fire

IF_SLICE_BYTES = 256 << 10  # a membrane slice: L2-resident next to its current and spike slices


def if_block(v: np.ndarray, cur: np.ndarray | None, const: np.ndarray | None, theta: int | float,
             limits: tuple[int, int] | None, spikes: np.ndarray, max_spikes: int) -> None:
    """Run len(spikes) IF steps in place: per step v += cur[t] (+ const), then fire into spikes[t].

    v: [N] contiguous membrane (exact dtype, see module docstring); cur: [steps, N] synaptic currents (any
    dtype holding exact integers; converted per slice if it differs from v's) or None; const: [N] constant
    input-driven current in v's dtype or None; spikes: [steps, N] spike maps (bool, or uint8 when graded)."""
    steps, n = spikes.shape
    size = max(1, IF_SLICE_BYTES // v.itemsize)
    scratch = np.empty(min(size, n), dtype=v.dtype) if cur is not None and cur.dtype != v.dtype else None
    for j0 in range(0, n, size):
        j1 = min(n, j0 + size)
        vj = v[j0:j1]
        cj = None if const is None else const[j0:j1]
        for t in range(steps):
            if cur is not None:
                if scratch is None:
                    np.add(vj, cur[t, j0:j1], out=vj)
                else:  # int64 membrane: integers first, then an integer add (faster than a mixed-type add)
                    sj = scratch[: j1 - j0]
                    np.copyto(sj, cur[t, j0:j1], casting="unsafe")
                    np.add(vj, sj, out=vj)
            if cj is not None:
                np.add(vj, cj, out=vj)
            fire(vj, theta, limits, spikes[t, j0:j1], max_spikes)
