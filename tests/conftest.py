"""Shared fixtures: data locations (tests needing absent data skip with the reason) and small trained models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FASHION_DIR = Path(os.environ.get("QCFS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def cifar10_dir() -> Path | None:
    d = os.environ.get("QCFS_CIFAR10_DIR")
    return Path(d) if d and Path(d).is_dir() else None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    d = cifar10_dir()
    if d is None:
        pytest.skip("CIFAR-10 not available: set QCFS_CIFAR10_DIR (.ci/run unpacks the local copy)")
    return d


@pytest.fixture(scope="session")
def fashion_available() -> Path:
    if not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists() and not (FASHION_DIR / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"Fashion-MNIST not in {FASHION_DIR}: apt-get install dataset-fashion-mnist")
    return FASHION_DIR


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QCFS cnn trained on digits (a few seconds on 2 cores), shared by the whole session."""
    from qcfs.frontend.train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("digits") / "cnn.pt"
    train_model(TrainConfig(model="cnn", dataset="digits", output=str(out), epochs=15, progress=False),
                log=lambda _: None)
    return out
