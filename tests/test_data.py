"""Dataset loaders: digits split, idx files, both CIFAR-10 layouts on tiny fixtures, one-line errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcfs.data import CIFAR10_CLASSES, DIGITS_TEST_SIZE, load_split
from qcfs.errors import DatasetError


def test_digits_fixed_split() -> None:
    xtr, ytr = load_split("digits", "train")
    xte, yte = load_split("digits", "test")
    assert xtr.shape == (1797 - DIGITS_TEST_SIZE, 1, 8, 8) and xte.shape == (DIGITS_TEST_SIZE, 1, 8, 8)
    assert xtr.dtype == np.float32 and 0.0 <= xtr.min() and xtr.max() <= 1.0
    assert np.array_equal(load_split("digits", "test")[1], yte)  # deterministic
    assert set(np.unique(yte)) == set(range(10))


def _write_idx(root: Path, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, len(x), 28, 28) + x.tobytes())
    with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(y)) + y.tobytes())


def test_idx_loader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = np.arange(5, dtype=np.uint8)
    _write_idx(tmp_path, "t10k", x, y)
    xs, ys = load_split("fashion-mnist", "test", tmp_path)
    assert xs.shape == (5, 1, 28, 28) and np.allclose(xs[:, 0] * 255, x) and ys.tolist() == [0, 1, 2, 3, 4]


def test_idx_malformed_and_missing(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(DatasetError, match="malformed"):
        load_split("fashion-mnist", "test", tmp_path)
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_split("fashion-mnist", "test", tmp_path / "nowhere")


def _cifar_fixture() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.array([0, 1, 2, 0, 1, 2])


def test_cifar_pickle_layout(tmp_path: Path) -> None:
    x, y = _cifar_fixture()
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({b"data": x.reshape(6, -1), b"labels": y.tolist()}, fh)
    xs, ys = load_split("cifar10", "test", tmp_path)  # finds the sub-folder itself
    assert np.allclose(xs * 255, x) and ys.tolist() == y.tolist()


def test_cifar_image_folder_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCFS_CACHE_DIR", str(tmp_path / "cache"))
    x, y = _cifar_fixture()
    for cls in CIFAR10_CLASSES:  # every class folder must exist (a missing one would shift labels)
        (tmp_path / "test" / cls).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(x, y)):
        d = tmp_path / "test" / CIFAR10_CLASSES[label]
        Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:04d}.png")  # lossless for the comparison
    xs, ys = load_split("cifar10", "test", tmp_path)
    order = np.argsort(y, kind="stable")  # class folders sorted by name, files by name
    assert np.allclose(xs * 255, x[order]) and ys.tolist() == sorted(y.tolist())
    xs2, _ = load_split("cifar10", "test", tmp_path)  # second load comes from the cache
    assert np.array_equal(xs, xs2) and list((tmp_path / "cache").glob("*.npz"))


def test_cifar_missing_says_how_to_get(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QCFS_CIFAR10_DIR", raising=False)
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_split("cifar10", "test", None)
    with pytest.raises(DatasetError, match="neither"):
        load_split("cifar10", "test", tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_split("mnist-9000", "test")


def test_imagenet_is_never_loaded_whole() -> None:
    with pytest.raises(DatasetError, match="read lazily"):
        load_split("imagenet", "test")
