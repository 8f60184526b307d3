"""Data-parallel worker threads shared by the backends that split a chunk of samples between cores.

Why threads and contiguous sample shares: each worker runs the whole network on its own samples with
single-threaded kernels (NumPy's copies and BLAS calls, numba loops and onnxruntime's run release the GIL), so
the workers never wait for each other until the chunk ends. Splitting each GEMM over threads instead (OpenBLAS's
or onnxruntime's own pool) meant a hand-off per call, each a wake-up on a noisy 2-core VM; OpenBLAS's idle
threads also busy-wait between calls (measured: 2026-12-05/06, runtime/fused_snn.py and runtime/numpy_snn.py).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

import numpy as np


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a container), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Workers:
    """This thread plus a small pool: each(fn, k) runs fn(0) … fn(k − 1) at once, fn(0) in this thread."""

    def __init__(self, threads: int, name: str = "qcfs") -> None:
        self.count = max(1, threads)
        self.pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix=name) if self.count > 1 else None

    def shares(self, n: int) -> list[tuple[int, int]]:
        """Contiguous (start, stop) shares of range(n), one per worker (fewer when n is smaller)."""
        bounds = np.linspace(0, n, min(self.count, max(1, n)) + 1).astype(int)
        return [(int(a), int(z)) for a, z in zip(bounds[:-1], bounds[1:])]

    def each(self, fn: Callable[[int], object], k: int) -> None:
        if self.pool is None or k < 2:
            for j in range(k):
                fn(j)
            return
        futures = [self.pool.submit(fn, j) for j in range(1, k)]
        try:
            fn(0)  # the first share in this thread: one wake-up fewer per call
        finally:  # never return (or raise) while a share still writes into buffers the caller will reuse
            wait(futures)
        for f in futures:
            f.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
