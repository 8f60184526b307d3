"""Datasets behind one interface, in NumPy only (the NumPy runtime must not import torch).

`load_split(name, split, data_dir)` returns (images float32 [N, C, H, W] in [0, 1], labels int64 [N]) in the
dataset's canonical file order. Missing or malformed data raises DatasetError: one line naming what was
looked for where and how to get it. Every split is checked before it is returned: at least one sample, as
many labels as images, every label in 0..classes-1, ImageFolder class folders exactly the dataset's classes
(a missing class would silently shift every later label). Files are read only when regular (no FIFOs or
devices), gzip members and pickles are size-capped, and CIFAR's pickles go through a restricted unpickler
(qcfs.data.safe_pickle) that cannot run code.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcfs.data.download import cache_dir as download_cache_dir
from qcfs.data.safe_pickle import loads_restricted
from qcfs.errors import DatasetError
from qcfs.safe_io import regular_input

MAX_DATA_FILE_BYTES = 1 << 30  # one idx file or CIFAR batch, decompressed: the real ones are < 200 MB


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
        "pass --download (fetches the official files into ~/.cache/qcfs/fashion-mnist), install the Debian "
        "package (apt-get install dataset-fashion-mnist) or pass --data-dir with "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]",
    ),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), None,
        "pass --download (fetches CIFAR-10, python version, cifar-10-python.tar.gz, from the University of "
        "Toronto into ~/.cache/qcfs/cifar10), or download it yourself and pass --data-dir pointing at the "
        "unpacked cifar-10-batches-py (or an ImageFolder tree "
        "train/<class>/*, test/<class>/*); or set QCFS_CIFAR10_DIR",
    ),
    # read lazily, image by image (qcfs.data.imagenet, through qcfs.data.samples.open_split);
    # classes: the train/ folders
    "imagenet": DatasetInfo(
        "imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None,
        "download ILSVRC-2012 from image-net.org, unpack train/ and val/ into class folders and pass --data-dir "
        "DIR or set QCFS_IMAGENET_DIR",
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
    if name == "imagenet":
        raise DatasetError("imagenet is read lazily, never whole into memory: use qcfs.data.samples.open_split")
    if name == "digits":
        return _load_digits(split)
    if name == "fashion-mnist":
        root = fashion_root(data_dir, info)
        x, y = _load_idx(root, split, info)
    else:
        root = cifar_root(data_dir, info)
        x, y = _load_cifar10(root, split, info)
    check_split(info, split, root, x, y)
    return x, y


def fashion_root(data_dir: str | os.PathLike | None, info: DatasetInfo) -> Path:
    """--data-dir, else $QCFS_FASHION_MNIST_DIR, else the Debian folder, else what an earlier --download put
    into the cache folder (read only: nothing is ever fetched here)."""
    root = data_dir or os.environ.get("QCFS_FASHION_MNIST_DIR")
    if root:
        return Path(root)
    system, cached = Path(str(info.default_dir)), download_cache_dir(info.name)

    def has_data(d: Path) -> bool:
        return any((d / f).is_file() for f in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"))

    return cached if not has_data(system) and has_data(cached) else system


def cifar_root(data_dir: str | os.PathLike | None, info: DatasetInfo) -> Path:
    """--data-dir, else $QCFS_CIFAR10_DIR, else what an earlier --download unpacked into the cache folder."""
    root_s = data_dir or os.environ.get("QCFS_CIFAR10_DIR")
    if not root_s:
        cached = download_cache_dir(info.name)
        if (cached / "cifar-10-batches-py").is_dir():
            return cached
        raise DatasetError(f"cifar10: no data directory given; {info.how_to_get}")
    return Path(root_s)


def check_split(info: DatasetInfo, split: str, where: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The promises load_split makes about every split, checked once for every layout."""
    if len(x) == 0:
        raise DatasetError(f"{info.name}: the {split} split in {where} is empty (0 samples)")
    if len(x) != len(y):
        raise DatasetError(f"{info.name}: {len(x)} images but {len(y)} labels in the {split} split in {where}")
    if tuple(x.shape[1:]) != info.shape:
        raise DatasetError(f"{info.name}: images in {where} are {tuple(x.shape[1:])}, expected {info.shape}")
    bad = np.flatnonzero((y < 0) | (y >= info.classes))
    if bad.size:
        raise DatasetError(f"{info.name}: label {int(y[bad[0]])} of sample {int(bad[0])} in {where} is outside "
                           f"0..{info.classes - 1} ({bad.size} such labels)")


def dataset_inputs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """The files and folders a run reads for `name` (for the rule that no output may overwrite an input);
    folders stand for everything inside them. Never raises: what is missing fails later, with its own error."""
    info = DATASETS.get(name)
    if info is None or name == "digits":
        return []
    if name == "imagenet":
        from qcfs.data.imagenet import imagenet_root

        try:
            root = imagenet_root(data_dir)
        except DatasetError:
            return []
        return [root / "train", root / "val"]
    try:
        root = fashion_root(data_dir, info) if name == "fashion-mnist" else cifar_root(data_dir, info)
    except DatasetError:
        return []
    if name == "fashion-mnist":
        return [root / f"{p}-{k}-idx{d}-ubyte{gz}" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))
                for gz in ("", ".gz")]
    out = []
    for base in (root, root / "cifar-10-batches-py"):
        out += [base / f"data_batch_{i}" for i in range(1, 6)] + [base / "test_batch"]
    for base in (root, root / "cifar10"):
        out += [base / "train", base / "test"]
    return out


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    cut = len(y) - DIGITS_TEST_SIZE
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


def _read_capped(fh, what: Path) -> bytes:  # type: ignore[no-untyped-def]
    """Read at most MAX_DATA_FILE_BYTES (a gzip member can inflate without bound; its size field is mod 2^32)."""
    data = fh.read(MAX_DATA_FILE_BYTES + 1)
    if len(data) > MAX_DATA_FILE_BYTES:
        raise DatasetError(f"{what}: unpacks to more than {MAX_DATA_FILE_BYTES >> 20} MB; not a dataset file")
    return data


def _open_maybe_gz(path: Path) -> bytes:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            regular_input(p, "dataset file", DatasetError)
            try:
                opener = gzip.open if p.suffix == ".gz" else open
                with opener(p, "rb") as fh:  # type: ignore[operator]
                    return _read_capped(fh, p)
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                raise DatasetError(f"{p}: corrupt gzip file ({err or type(err).__name__}); download it again") from None
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
        if len(raw_lbl) != 8 + n_l:
            raise ValueError(f"label file holds {len(raw_lbl) - 8} labels, its header says {n_l}")
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
        path = base / name
        if not path.exists():
            raise DatasetError(f"cifar10: {path} missing; {info.how_to_get}")
        regular_input(path, "dataset file", DatasetError)
        try:
            with open(path, "rb") as fh:
                raw = _read_capped(fh, path)
            batch = loads_restricted(raw)  # the official format is a pickle: read it without running code
        except pickle.UnpicklingError as err:
            raise DatasetError(f"cifar10: {path}: not a CIFAR-10 batch ({err})") from None
        except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as err:
            raise DatasetError(f"cifar10: malformed batch {path} ({type(err).__name__}: {str(err)[:200]}); "
                               f"{info.how_to_get}") from None
        x, y = _batch_arrays(batch, path)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)


def _batch_arrays(batch: object, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """data uint8 [N, 3072] and labels [N] of one unpickled batch, or a one-line DatasetError."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"cifar10: {path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DatasetError(f"cifar10: {path}: b'data' is {getattr(data, 'dtype', '')} {shape}, expected uint8 [N, 3072]")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise DatasetError(f"cifar10: {path}: b'labels' is not a list of integers")
    if len(labels) != len(data):
        raise DatasetError(f"cifar10: {path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _image_files(split_dir: Path, info: DatasetInfo) -> list[tuple[Path, int]]:
    """(file, label) in ImageFolder order: class folders sorted by name (torchvision's convention), files sorted
    by name. The class folders must be exactly the dataset's classes: with one missing, torchvision-style
    indexing would give every later class the label of its neighbour."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    expected = sorted(CIFAR10_CLASSES)
    if classes != expected:
        missing = [c for c in expected if c not in classes]
        extra = [c for c in classes if c not in expected]
        what = "; ".join(part for part in (f"missing class folder(s) {', '.join(missing)}" if missing else "",
                                           f"unexpected folder(s) {', '.join(extra)}" if extra else "") if part)
        raise DatasetError(f"cifar10: {split_dir}: {what}; an ImageFolder needs exactly the {len(expected)} "
                           f"classes {', '.join(expected)} (labels follow their sorted order)")
    files: list[tuple[Path, int]] = []
    for cls in classes:
        label = CIFAR10_CLASSES.index(cls)
        files += [(f, label) for f in sorted((split_dir / cls).iterdir()) if f.is_file()]
    if not files:
        raise DatasetError(f"cifar10: {split_dir}: the class folders hold no images")
    return files


def _cache_path(files: list[tuple[Path, int]]) -> Path:
    """Decoded-image cache keyed on every file's path, label, size and modification time (decoding 60k images
    takes ~20 s): replacing, adding or removing any image gives a new key. A folder's mtime would not do —
    it does not change when a file inside is rewritten in place."""
    h = hashlib.sha256()
    for f, label in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    root = Path(os.environ.get("QCFS_CACHE_DIR", Path.home() / ".cache" / "qcfs"))
    return root / f"imagefolder-{h.hexdigest()[:24]}.npz"


def _load_image_folder(split_dir: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """ImageFolder with the dataset's classes (see _image_files); decoded once, then cached."""
    files = _image_files(split_dir, info)
    cache = _cache_path(files)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                cx, cy = npz["x"], npz["y"]
            if cx.dtype == np.uint8 and cx.shape == (len(files), *info.shape) and len(cy) == len(files):
                return cx.astype(np.float32) / 255.0, cy.astype(np.int64)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache is rebuilt below
    x, y = _decode_image_folder(files, info)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        from qcfs.safe_io import atomic_path

        with atomic_path(cache) as tmp:  # concurrent runs never see (or build on) a half-written cache
            np.savez(tmp, x=x, y=y)
    except OSError:
        pass  # caching is an optimisation only
    return x.astype(np.float32) / 255.0, y


def _decode_image_folder(files: list[tuple[Path, int]], info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    from qcfs.data.image_folder import labels_of, open_rgb

    def is_32x32(w: int, h: int) -> str | None:  # on the header, before decoding (decompression bombs)
        return None if (w, h) == (32, 32) else f"is {w}x{h}, expected 32x32 RGB"

    x = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        x[i] = np.asarray(open_rgb(f, "cifar10", is_32x32)).transpose(2, 0, 1)
    return x, labels_of(files)
