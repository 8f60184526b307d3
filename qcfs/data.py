"""Datasets behind one interface, in NumPy only (the NumPy runtime must not import torch).

`load_split(name, split, data_dir)` returns (images float32 [N, C, H, W] in [0, 1], labels int64 [N]) in the
dataset's canonical file order. Missing or malformed data raises DatasetError: one line naming what was
looked for where and how to get it.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcfs.errors import DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, int, int]  # C, H, W
    classes: int
    mean: tuple[float, ...]  # normalization used for training and recorded in exports
    std: tuple[float, ...]
    default_dir: str | None
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", (1, 8, 8), 10, (0.3064,), (0.3723,), None,
        "bundled with scikit-learn (sklearn.datasets.load_digits); reinstall scikit-learn",
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), "/usr/share/datasets/fashion-mnist",
        "install the Debian package (apt-get install dataset-fashion-mnist) or pass --data-dir with "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]",
    ),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), None,
        "download CIFAR-10 (python version, cifar-10-python.tar.gz) from the University of Toronto and "
        "pass --data-dir pointing at the unpacked cifar-10-batches-py (or an ImageFolder tree "
        "train/<class>/*, test/<class>/*); or set QCFS_CIFAR10_DIR",
    ),
}

# digits: fixed, documented split. sklearn's 1,797 samples in their bundled order; the last 360 (20 %)
# are the test split, the first 1,437 the training split. No shuffling, so the split never changes.
DIGITS_TEST_SIZE = 360


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] as float32 [N, C, H, W] and int64 labels, in canonical order."""
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; use 'train' or 'test'")
    info = dataset_info(name)
    if name == "digits":
        return _load_digits(split)
    if name == "fashion-mnist":
        root = Path(data_dir or os.environ.get("QCFS_FASHION_MNIST_DIR") or info.default_dir)
        return _load_idx(root, split, info)
    root_s = data_dir or os.environ.get("QCFS_CIFAR10_DIR")
    if not root_s:
        raise DatasetError(f"cifar10: no data directory given; {info.how_to_get}")
    return _load_cifar10(Path(root_s), split, info)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    cut = len(y) - DIGITS_TEST_SIZE
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


def _open_maybe_gz(path: Path) -> bytes:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            opener = gzip.open if p.suffix == ".gz" else open
            with opener(p, "rb") as fh:  # type: ignore[operator]
                return fh.read()
    raise FileNotFoundError(path)


def _load_idx(root: Path, split: str, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    img_path, lbl_path = root / f"{prefix}-images-idx3-ubyte", root / f"{prefix}-labels-idx1-ubyte"
    try:
        raw_img, raw_lbl = _open_maybe_gz(img_path), _open_maybe_gz(lbl_path)
    except FileNotFoundError as err:
        raise DatasetError(f"{info.name}: {err.args[0]}[.gz] not found; {info.how_to_get}") from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"{info.name}: cannot read {root}: {err}") from None
    try:
        magic, n, rows, cols = struct.unpack(">IIII", raw_img[:16])
        magic_l, n_l = struct.unpack(">II", raw_lbl[:8])
        if magic != 2051 or magic_l != 2049 or n != n_l or len(raw_img) != 16 + n * rows * cols:
            raise ValueError("bad idx header or size")
        x = np.frombuffer(raw_img, np.uint8, offset=16).reshape(n, 1, rows, cols)
        y = np.frombuffer(raw_lbl, np.uint8, offset=8).astype(np.int64)
    except (struct.error, ValueError) as err:
        raise DatasetError(f"{info.name}: malformed idx files in {root} ({err}); {info.how_to_get}") from None
    return x.astype(np.float32) / 255.0, y


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _load_cifar10(root: Path, split: str, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """Detect the layout: python pickle batches (cifar-10-batches-py) or an ImageFolder tree."""
    candidates = [root, root / "cifar-10-batches-py"]
    for base in candidates:
        if (base / "data_batch_1").exists() or (base / "test_batch").exists():
            return _load_cifar_pickles(base, split, info)
    for base in (root, root / "cifar10"):
        if (base / split).is_dir():
            return _load_image_folder(base / split, info)
    raise DatasetError(
        f"cifar10: neither cifar-10-batches-py pickle batches nor an ImageFolder '{split}/' tree in {root}; "
        f"{info.how_to_get}"
    )


def _load_cifar_pickles(base: Path, split: str, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        try:
            with open(base / name, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")  # the official format is a pickle
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except FileNotFoundError:
            raise DatasetError(f"cifar10: {base / name} missing; {info.how_to_get}") from None
        except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as err:
            raise DatasetError(f"cifar10: malformed batch {base / name} ({err!r}); {info.how_to_get}") from None
    return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)


def _cache_path(split_dir: Path) -> Path:
    """Decoded-image cache keyed on the folder's path and modification time (decoding 60k JPEGs takes ~20 s)."""
    import hashlib

    key = f"{split_dir.resolve()}:{split_dir.stat().st_mtime_ns}".encode()
    root = Path(os.environ.get("QCFS_CACHE_DIR", Path.home() / ".cache" / "qcfs"))
    return root / f"imagefolder-{hashlib.sha1(key).hexdigest()[:16]}.npz"


def _load_image_folder(split_dir: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """ImageFolder: class folders sorted by name (torchvision's convention), files sorted by name."""
    cache = _cache_path(split_dir)
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                return npz["x"].astype(np.float32) / 255.0, npz["y"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    x, y = _decode_image_folder(split_dir, info)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cache)
    except OSError:
        pass  # caching is an optimisation only
    return x.astype(np.float32) / 255.0, y


def _decode_image_folder(split_dir: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"cifar10: no class folders in {split_dir}; {info.how_to_get}")
    files: list[tuple[Path, int]] = []
    for idx, cls in enumerate(classes):
        files += [(f, idx) for f in sorted((split_dir / cls).iterdir()) if f.is_file()]
    x = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(f"cifar10: cannot decode {f} ({err})") from None
        if arr.shape != (32, 32, 3):
            raise DatasetError(f"cifar10: {f} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32 RGB")
        x[i] = arr.transpose(2, 0, 1)
    y = np.fromiter((c for _, c in files), dtype=np.int64, count=len(files))
    return x, y
