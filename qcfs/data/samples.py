"""Test and training splits as *sample sources*: labels up front, images on demand by index.

Why: an in-memory split (digits, Fashion-MNIST, CIFAR-10: at most 600 MB as float32) and an ImageNet split
(50,000 validation images, 30 GB as float32 at 224x224) must go through the same evaluation code, which
therefore asks for the images of one chunk or shard at a time and never for the whole split. A source is
cheap to pickle (an ImageNet source holds file paths, an array source its arrays), so a Dask worker can open
it once and serve every shard it is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SampleSource(Protocol):
    """One split of one dataset. `images(idx)` returns float32 [len(idx), C, H, W] in [0, 1], in idx order,
    the same values for the same index on every call and every machine."""

    dataset: str
    shape: tuple[int, int, int]  # C, H, W of one image as the network sees it
    labels: np.ndarray  # int64 [N]

    def images(self, indices: np.ndarray) -> np.ndarray: ...


@dataclass
class ArraySource:
    """A split already decoded in memory (what qcfs.data.load_split returns)."""

    dataset: str
    x: np.ndarray  # float32 [N, C, H, W] in [0, 1]
    labels: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(indices, dtype=np.int64)]


@dataclass(frozen=True)
class SplitSpec:
    """How to open a split anywhere (a Dask worker on another node opens it from the shared file system)."""

    dataset: str
    split: str
    data_dir: str | None = None


def open_split(spec: SplitSpec) -> SampleSource:
    """The split as a source: ImageNet lazily from its files, the others decoded in memory."""
    if spec.dataset == "imagenet":
        from qcfs.data.imagenet import open_imagenet_split

        return open_imagenet_split(spec.split, spec.data_dir)
    from qcfs.data import load_split

    x, y = load_split(spec.dataset, spec.split, spec.data_dir)
    return ArraySource(spec.dataset, x, y)


def data_dir_str(data_dir: str | os.PathLike | None) -> str | None:
    return None if data_dir is None else os.fspath(data_dir)
