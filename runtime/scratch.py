"""Named scratch arrays reused across layers, steps and chunks.

Why: a fresh multi-MB NumPy array per layer costs page faults on first touch (the allocator returns freed
blocks of that size to the kernel). In the fused backend they took as long as the im2col loop and varied 8×
between runs; in the NumPy reference they were ~15 % of a resnet20 run (38,000 faults per 32 images, T = 8).
One Buffers per worker thread: a name's array is only valid until that name is requested again.
"""

from __future__ import annotations

import threading

import numpy as np

KEEP_BYTES = 256 << 20  # scratch kept between calls (per process); a call needing more frees its surplus


class Buffers:
    """get(tag, shape, dtype): an uninitialised array viewing the tag's byte buffer, grown when too small."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def get(self, tag: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        flat = self._flat.get(tag)
        if flat is None or flat.size < size:
            flat = self._flat[tag] = np.empty(size, np.uint8)
        return flat[:size].view(dtype).reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(flat.size for flat in self._flat.values())


class BuffersPool:
    """Buffers kept between calls, so that repeated calls (a benchmark's repetitions, a calibration loop,
    Dask tasks) do not fault their scratch in again. Thread-safe: concurrent calls get different Buffers."""

    def __init__(self, keep_bytes: int = KEEP_BYTES) -> None:
        self.keep_bytes = keep_bytes
        self._idle: list[Buffers] = []
        self._lock = threading.Lock()

    def take(self, k: int) -> list[Buffers]:
        with self._lock:
            got = [self._idle.pop() for _ in range(min(k, len(self._idle)))]
        return got + [Buffers() for _ in range(k - len(got))]

    def give(self, buffers: list[Buffers]) -> None:
        with self._lock:
            kept = sum(b.nbytes for b in self._idle)
            for b in sorted(buffers, key=lambda b: b.nbytes):
                if kept + b.nbytes <= self.keep_bytes:
                    self._idle.append(b)
                    kept += b.nbytes


SHARED = BuffersPool()


class TagPool:
    """Tags for arrays that outlive a layer (spike trains kept until their last reader): take() a free tag,
    give() it back when the array dies, so a later array reuses its buffer."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._free: list[str] = []
        self._count = 0

    def take(self) -> str:
        if self._free:
            return self._free.pop()
        self._count += 1
        return f"{self.prefix}{self._count}"

    def give(self, tag: str) -> None:
        self._free.append(tag)
