"""Which training images calibrate the SNN: a seeded uniform sample of the *training* split (never test
images), so classes are covered even when the files are sorted by class, and a fixed seed gives a fixed set.
The split is opened as a sample source (qcfs.data.samples.open_split), so an ImageNet tree is read lazily: only
the sampled images are decoded."""

from __future__ import annotations

import numpy as np

from qcfs.errors import QCFSError
from qcfs.data.samples import SplitSpec, data_dir_str, open_split

DEFAULT_SAMPLES = 1024


def calibration_images01(dataset: str, data_dir: str | None, input_shape: tuple[int, ...], samples: int,
                         seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [N, C, H, W] in [0, 1], labels, their training-split indices), N = min(samples, split size)."""
    if samples < 1:
        raise QCFSError(f"--calib-samples must be a positive integer, got {samples}")
    source = open_split(SplitSpec(dataset, "train", data_dir_str(data_dir)))
    if tuple(source.shape) != tuple(input_shape):
        raise QCFSError(f"--dataset {dataset} has images {tuple(source.shape)}, the network expects "
                        f"{tuple(input_shape)}")
    n = len(source.labels)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(samples, n), replace=False))
    return source.images(idx), source.labels[idx], idx
