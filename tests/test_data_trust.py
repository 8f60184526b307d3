"""Issue 13, classes 1 and 7: a crafted CIFAR batch cannot run code, and malformed datasets (labels out of
range, count mismatches, a missing ImageFolder class, empty sets, corrupt gzip, non-regular files) are refused
in one line; the ImageFolder cache follows the files, not a folder mtime. Every test failed before the fix."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcfs.data import CIFAR10_CLASSES, load_split
from qcfs.errors import DatasetError


class _RunsCode:
    """What an attacker puts into a pickle: unpickling calls os.system(...)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _batch_dir(tmp_path: Path) -> Path:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    return base


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_crafted_batch_does_not_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    base = _batch_dir(tmp_path)
    x = np.zeros((2, 3072), dtype=np.uint8)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({b"data": x, b"labels": [0, 1], b"x": _RunsCode(marker)}, fh, protocol=2)
    with pytest.raises(DatasetError) as err:
        load_split("cifar10", "test", tmp_path)
    assert "posix.system" in _one_line(err) or "os.system" in _one_line(err)
    assert not marker.exists(), "the pickle ran code"


class _HugeArray:
    """A direct numpy.ndarray((10**12,)) call: no code runs, but it would allocate a terabyte."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (np.ndarray, ((10**12,), "u1"))


@pytest.mark.parametrize("payload", ["eval", "object_array", "subclass", "huge_ndarray"])
def test_other_pickle_tricks_refused(tmp_path: Path, payload: str) -> None:
    base = _batch_dir(tmp_path)
    if payload == "eval":
        obj = {b"data": eval, b"labels": []}  # a global that is not on the allow-list
    elif payload == "object_array":
        obj = {b"data": np.array([b"a", 1], dtype=object), b"labels": [0, 1]}
    elif payload == "subclass":
        obj = {b"data": np.ma.masked_array(np.zeros((1, 3072), np.uint8)), b"labels": [0]}
    else:
        obj = {b"data": _HugeArray(), b"labels": [0]}
    with open(base / "test_batch", "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    with pytest.raises(DatasetError) as err:
        load_split("cifar10", "test", tmp_path)
    _one_line(err)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_batch_layout_still_loads(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    base = _batch_dir(tmp_path)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": [3, 1, 4, 1], b"data": x,
                     b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}, fh, protocol=protocol)
    xs, ys = load_split("cifar10", "test", tmp_path)
    assert np.array_equal((xs * 255).round().astype(np.uint8).reshape(4, -1), x) and ys.tolist() == [3, 1, 4, 1]


def _write_pickle(tmp_path: Path, data: np.ndarray, labels: list) -> None:
    with open(_batch_dir(tmp_path) / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)


@pytest.mark.parametrize("case,needle", [("label_range", "outside 0..9"), ("count", "labels"), ("empty", "empty")])
def test_cifar_batch_contents(tmp_path: Path, case: str, needle: str) -> None:
    x = np.zeros((3, 3072), dtype=np.uint8)
    labels = {"label_range": [0, 1, 10], "count": [0, 1], "empty": []}[case]
    _write_pickle(tmp_path, x[:0] if case == "empty" else x, labels)
    with pytest.raises(DatasetError, match=needle) as err:
        load_split("cifar10", "test", tmp_path)
    _one_line(err)


def _write_idx(root: Path, n_img: int, labels: list[int], *, gz: bool = True, n_header: int | None = None) -> None:
    x = np.zeros((n_img, 28, 28), dtype=np.uint8)
    opener = gzip.open if gz else open
    sfx = ".gz" if gz else ""
    with opener(root / f"t10k-images-idx3-ubyte{sfx}", "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, n_img, 28, 28) + x.tobytes())
    with opener(root / f"t10k-labels-idx1-ubyte{sfx}", "wb") as fh:
        n = len(labels) if n_header is None else n_header
        fh.write(struct.pack(">II", 2049, n) + bytes(labels))


@pytest.mark.parametrize("case,needle", [
    ("label_range", "outside 0..9"), ("empty", "empty"), ("count", "labels"), ("label_header", "header"),
])
def test_idx_contents(tmp_path: Path, case: str, needle: str) -> None:
    if case == "label_range":
        _write_idx(tmp_path, 3, [0, 200, 1])
    elif case == "empty":
        _write_idx(tmp_path, 0, [])
    elif case == "count":
        _write_idx(tmp_path, 3, [0, 1], n_header=3)
    else:
        _write_idx(tmp_path, 2, [0, 1, 2], n_header=2)
    with pytest.raises(DatasetError) as err:
        load_split("fashion-mnist", "test", tmp_path)
    _one_line(err)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    _write_idx(tmp_path, 3, [0, 1, 2])
    f = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\x1f\x8b" + b"\x00garbage" * 10)
    with pytest.raises(DatasetError, match="gzip|malformed") as err:
        load_split("fashion-mnist", "test", tmp_path)
    _one_line(err)


def test_gzip_bomb_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qcfs.data as data_mod

    monkeypatch.setattr(data_mod, "MAX_DATA_FILE_BYTES", 1 << 20)
    _write_idx(tmp_path, 3, [0, 1, 2])
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes(4 << 20))
    with pytest.raises(DatasetError, match="unpacks to more than") as err:
        load_split("fashion-mnist", "test", tmp_path)
    _one_line(err)


@pytest.mark.timeout(60)
def test_fifo_dataset_file(tmp_path: Path) -> None:
    _write_idx(tmp_path, 3, [0, 1, 2], gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    os.mkfifo(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DatasetError, match="FIFO") as err:
        load_split("fashion-mnist", "test", tmp_path)
    _one_line(err)


def _image_folder(root: Path, classes: tuple[str, ...] = CIFAR10_CLASSES, per_class: int = 1, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls in classes:
        d = root / "test" / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QCFS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_image_folder_missing_class_does_not_shift_labels(tmp_path: Path, cache: Path) -> None:
    _image_folder(tmp_path, tuple(c for c in CIFAR10_CLASSES if c != "cat"))
    with pytest.raises(DatasetError, match="missing class folder.*cat") as err:
        load_split("cifar10", "test", tmp_path)
    _one_line(err)


def test_image_folder_extra_folder(tmp_path: Path, cache: Path) -> None:
    _image_folder(tmp_path, (*CIFAR10_CLASSES, "cats_and_dogs"))
    with pytest.raises(DatasetError, match="unexpected folder.*cats_and_dogs"):
        load_split("cifar10", "test", tmp_path)


def test_image_folder_labels_follow_the_class_names(tmp_path: Path, cache: Path) -> None:
    _image_folder(tmp_path)
    _, y = load_split("cifar10", "test", tmp_path)
    assert y.tolist() == list(range(10))


def test_empty_image_folder(tmp_path: Path, cache: Path) -> None:
    _image_folder(tmp_path, per_class=0)
    with pytest.raises(DatasetError, match="no images"):
        load_split("cifar10", "test", tmp_path)


def test_cache_follows_the_files_not_the_folder_mtime(tmp_path: Path, cache: Path) -> None:
    _image_folder(tmp_path)
    x1, _ = load_split("cifar10", "test", tmp_path)
    f = tmp_path / "test" / "bird" / "0.png"
    folder_times = [(d, d.stat().st_atime_ns, d.stat().st_mtime_ns) for d in (f.parent, f.parent.parent)]
    new = np.full((32, 32, 3), 7, dtype=np.uint8)
    Image.fromarray(new).save(f)  # rewritten in place: the folders' mtimes do not change ...
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # ... even on file systems with coarse mtimes
    for d, at, mt in folder_times:
        os.utime(d, ns=(at, mt))
    x2, _ = load_split("cifar10", "test", tmp_path)
    assert not np.array_equal(x1, x2)
    assert np.array_equal((x2[2] * 255).round().astype(np.uint8), new.transpose(2, 0, 1))


def test_run_cli_refuses_bad_dataset_in_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """End to end through qcfs-run: the dataset error is the one line, the exit code 2."""
    from promise import refused
    from qcfs.cli import run as run_cli

    root = Path(__file__).resolve().parents[1]
    marker = tmp_path / "pwned"
    base = _batch_dir(tmp_path)
    with open(base / "test_batch", "wb") as fh:
        pickle.dump({b"data": _RunsCode(marker), b"labels": []}, fh, protocol=2)
    refused(run_cli.main, ["--model", str(root / "models" / "cifar10" / "model.onnx"), "--dataset", "cifar10",
                           "--data-dir", str(tmp_path), "--T", "1"], capsys, [base / "test_batch"], "refusing")
    assert not marker.exists()
