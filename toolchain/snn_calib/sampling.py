"""Which training images calibrate the SNN: a seeded uniform sample of the *training* split (never test
images), so classes are covered even when the files are sorted by class, and a fixed seed gives a fixed set."""

from __future__ import annotations

import numpy as np

from qcfs.data import load_split
from qcfs.errors import QCFSError

DEFAULT_SAMPLES = 1024


def calibration_images01(dataset: str, data_dir: str | None, input_shape: tuple[int, ...], samples: int,
                         seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [N, C, H, W] in [0, 1], labels, their training-split indices), N = min(samples, split size)."""
    if samples < 1:
        raise QCFSError(f"--calib-samples must be a positive integer, got {samples}")
    images, labels = load_split(dataset, "train", data_dir)
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise QCFSError(f"--dataset {dataset} has images {tuple(images.shape[1:])}, the network expects "
                        f"{tuple(input_shape)}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), size=min(samples, len(images)), replace=False))
    return images[idx], labels[idx], idx
