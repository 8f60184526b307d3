"""Generated bad inputs for issue 13's classes 1, 5, 6, 7, 8 (hypothesis): bad flag values, bad model and
output paths, bad dataset folders. Each must keep the README's promise: exit code 2, exactly one line on
stderr, no traceback, every input file unchanged (and a crafted pickle never runs its code).

Why generated: the issue's 194 cases are kept aside so that the fix is to the mechanism; a generator that
keeps producing new members of each class is what keeps the mechanism honest."""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promise import refused
from qcfs.cli import export as export_cli
from qcfs.cli import run as run_cli
from qcfs.cli import train as train_cli
from qcfs.data import CIFAR10_CLASSES
from qcfs.intnet import InputSpec, IntNet, Layer, Synapse

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ONNX = ROOT / "models" / "digits" / "model.onnx"
FUZZ = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="qcfs-fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def training_forbidden() -> Iterator[None]:
    import qcfs.frontend.train as train_mod

    real = train_mod.train_model
    train_mod.train_model = lambda *a, **k: pytest.fail("training started before the refusal")  # type: ignore
    try:
        yield
    finally:
        train_mod.train_model = real


def tiny_intnet(shape: tuple[int, int, int], seed: int = 0) -> IntNet:
    """Dense IF layer + readout for any input shape: loads in milliseconds, so the dataset is what is tested."""
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(shape))
    w = lambda *s: rng.integers(-3, 4, size=s).astype(np.int64)  # noqa: E731
    layers = [Layer("h", "if", (8,), w(8), 64, 32, [Synapse("input", "dense", w(8, n_in))], depth=1),
              Layer("out", "readout", (10,), w(10), 1, 0, [Synapse("h", "dense", w(10, 8))], depth=2)]
    return IntNet("int", InputSpec(shape, (0.5,) * shape[0], (0.25,) * shape[0], 60.0), layers, L=4)


# --- bad flag values ------------------------------------------------------------------------------------
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "1e400", "-1e400", "NaN", "Infinity"])
NOT_A_NUMBER = st.text(alphabet="abcxyz,;/_ ", min_size=1, max_size=6).filter(lambda t: t.strip() != "")


def below(lo: float) -> st.SearchStrategy[str]:
    return st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False).map(repr)


def above(hi: float) -> st.SearchStrategy[str]:
    return st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False).map(repr)


def int_bad(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(st.integers(max_value=lo - 1).map(str), st.integers(min_value=hi + 1).map(str),
                     st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()).map(repr),
                     NON_FINITE, NOT_A_NUMBER)


def float_bad(lo: float, hi: float, lo_open: bool = False) -> st.SearchStrategy[str]:
    low = st.floats(max_value=lo, allow_nan=False, allow_infinity=False).map(repr) if lo_open else below(lo)
    return st.one_of(low, above(hi), NON_FINITE, NOT_A_NUMBER)


TRAIN_FLAGS = {"--L": int_bad(1, 1024), "--epochs": int_bad(1, 100_000), "--batch": int_bad(1, 1 << 20),
               "--seed": int_bad(0, 2**32 - 1), "--lr": float_bad(0, 100, True), "--wd": float_bad(0, 1),
               "--time-budget": float_bad(0, 1e9, True),
               "--lam-init": float_bad(0, 1e6, True).filter(lambda v: v != "data")}
RUN_FLAGS = {"--timeout": float_bad(0, 30 * 24 * 3600.0, True), "--max-hours": float_bad(0, 24 * 365, True),
             "--batch": int_bad(1, 10**30).filter(lambda v: not v.lstrip("-").isdigit() or int(v) < 1),
             "--limit": int_bad(1, 10**30).filter(lambda v: not v.lstrip("-").isdigit() or int(v) < 1),
             "--T": st.one_of(NON_FINITE, NOT_A_NUMBER, st.integers(max_value=0).map(lambda i: f"1,{i}")),
             "--normalize": st.one_of(NON_FINITE.map(lambda v: f"0.5,{v}"), below(0).map(lambda v: f"0.5,{v}"),
                                      NOT_A_NUMBER)}
EXPORT_FLAGS = {"--L": int_bad(1, 1024), "--weight-bits": int_bad(2, 16), "--percentile": float_bad(0, 100, True),
                "--opset": st.one_of(st.integers(max_value=12).map(str), st.integers(min_value=21).map(str),
                                     NOT_A_NUMBER)}


@FUZZ
@given(data=st.data())
def test_fuzz_bad_flags(data: st.DataObject, capsys) -> None:  # type: ignore[no-untyped-def]
    cli = data.draw(st.sampled_from(["train", "run", "export"]))
    with scratch() as d:
        model = d / "m.onnx"
        shutil.copyfile(SHIPPED_ONNX, model)
        if cli == "train":
            flag = data.draw(st.sampled_from(sorted(TRAIN_FLAGS)))
            argv = ["--model", "cnn", "--dataset", "digits", "-o", str(d / "c.pt"), flag, data.draw(TRAIN_FLAGS[flag])]
            with training_forbidden():
                refused(train_cli.main, argv, capsys)
        elif cli == "run":
            flag = data.draw(st.sampled_from(sorted(RUN_FLAGS)))
            argv = ["--model", str(model), "--dataset", "digits", "--no-progress", flag, data.draw(RUN_FLAGS[flag])]
            refused(run_cli.main, argv, capsys, [model])
        else:
            flag = data.draw(st.sampled_from(sorted(EXPORT_FLAGS)))
            argv = [str(model), "-o", str(d / "o.onnx"), flag, data.draw(EXPORT_FLAGS[flag])]
            refused(export_cli.main, argv, capsys, [model])
        assert not (d / "c.pt").exists() and not (d / "o.onnx").exists()


# --- bad model and output paths -------------------------------------------------------------------------
def make_bad_input(d: Path, kind: str) -> Path:
    p = d / "bad.onnx"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", p)
    elif kind == "dev_null_npz":
        p = d / "bad.intnet.npz"
        os.symlink("/dev/null", p)
    elif kind == "directory":
        p.mkdir()
    elif kind == "missing":
        pass
    elif kind == "dangling":
        os.symlink(d / "nothing-here", p)
    return p


def make_bad_output(d: Path, kind: str, model: Path) -> Path:
    if kind == "input":
        return model
    if kind == "input_dotted":
        return d / "." / model.name
    if kind == "input_symlink":
        os.symlink(model, d / "alias.onnx")
        return d / "alias.onnx"
    if kind == "input_hardlink":
        os.link(model, d / "hard.onnx")
        return d / "hard.onnx"
    if kind == "directory":
        (d / "adir").mkdir()
        return d / "adir"
    if kind == "fifo":
        os.mkfifo(d / "pipe.out")
        return d / "pipe.out"
    if kind == "device":
        return Path("/dev/null")
    return d / "no" / "such" / "folder" / "out.onnx"


@FUZZ
@given(cli=st.sampled_from(["run", "export"]),
       kind=st.sampled_from(["fifo", "dev_zero", "dev_null_npz", "directory", "missing", "dangling"]))
@pytest.mark.timeout(120)
def test_fuzz_bad_model_paths(cli: str, kind: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with scratch() as d:
        bad = make_bad_input(d, kind)
        if cli == "run":
            refused(run_cli.main, ["--model", str(bad), "--dataset", "digits", "--T", "1", "--no-progress"], capsys)
        else:
            refused(export_cli.main, [str(bad), "-o", str(d / "o.onnx")], capsys)


@FUZZ
@given(cli=st.sampled_from(["run-json", "run-counts", "run-report", "export", "train"]),
       kind=st.sampled_from(["input", "input_dotted", "input_symlink", "input_hardlink", "directory", "fifo",
                             "device", "missing_folder"]))
@pytest.mark.timeout(120)
def test_fuzz_bad_output_paths(cli: str, kind: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with scratch() as d:
        model = d / "m.onnx"
        shutil.copyfile(SHIPPED_ONNX, model)
        out = make_bad_output(d, kind, model)
        if cli == "run-report" and kind in ("directory",):
            return  # a directory is what --report wants
        if cli == "train":
            if kind.startswith("input"):
                return  # qcfs-train reads no model file
            with training_forbidden():
                refused(train_cli.main, ["--model", "cnn", "--dataset", "digits", "-o", str(out)], capsys)
        elif cli.startswith("run"):
            flag = {"run-json": "--json", "run-counts": "--counts", "run-report": "--report"}[cli]
            if cli == "run-report" and kind.startswith("input"):
                out = d  # the report would be written next to (not over) the model: fine; use its parent ...
                (d / "report.json").symlink_to(model)  # ... where report.json aliases the model
            refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--T", "1", flag, str(out)], capsys,
                    [model])
        else:
            refused(export_cli.main, [str(model), "-o", str(out)], capsys, [model])


# --- bad dataset folders --------------------------------------------------------------------------------
def write_idx(root: Path, x: np.ndarray, y: np.ndarray, *, n_img: int | None = None, n_lbl: int | None = None,
              magic: int = 2051, gz: bool = True) -> None:
    opener = gzip.open if gz else open
    sfx = ".gz" if gz else ""
    with opener(root / f"t10k-images-idx3-ubyte{sfx}", "wb") as fh:
        fh.write(struct.pack(">IIII", magic, len(x) if n_img is None else n_img, 28, 28) + x.tobytes())
    with opener(root / f"t10k-labels-idx1-ubyte{sfx}", "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(y) if n_lbl is None else n_lbl) + y.astype(np.uint8).tobytes())


FASHION_DAMAGE = st.sampled_from(["label_range", "count", "header", "magic", "truncate", "gz_garbage", "empty",
                                  "fifo"])


@FUZZ
@given(damage=FASHION_DAMAGE, n=st.integers(1, 6), seed=st.integers(0, 2**16))
@pytest.mark.timeout(120)
def test_fuzz_bad_fashion_folders(damage: str, n: int, seed: int, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    with scratch() as d:
        model = tiny_intnet((1, 28, 28)).save(d / "f.intnet.npz")
        data = d / "data"
        data.mkdir()
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        if damage == "label_range":
            y[rng.integers(0, n)] = rng.integers(10, 256)
            write_idx(data, x, y)
        elif damage == "count":
            write_idx(data, x, y[: rng.integers(0, n)])
        elif damage == "header":
            write_idx(data, x, y, n_lbl=n + int(rng.integers(1, 5)))
        elif damage == "magic":
            write_idx(data, x, y, magic=int(rng.integers(0, 2**32)) | 1 if rng.random() < 0.5 else 2049)
        elif damage == "truncate":
            write_idx(data, x, y, gz=False)
            f = data / "t10k-images-idx3-ubyte"
            raw = f.read_bytes()
            f.write_bytes(raw[: int(rng.integers(0, len(raw) - 1))])
        elif damage == "gz_garbage":
            write_idx(data, x, y)
            (data / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + rng.bytes(int(rng.integers(0, 64))))
        elif damage == "empty":
            write_idx(data, x[:0], y[:0])
        else:
            write_idx(data, x, y, gz=False)
            (data / "t10k-labels-idx1-ubyte").unlink()
            os.mkfifo(data / "t10k-labels-idx1-ubyte")
        files = [p for p in data.iterdir() if p.is_file()]
        refused(run_cli.main, ["--model", str(model), "--dataset", "fashion-mnist", "--data-dir", str(data),
                               "--T", "1", "--no-progress"], capsys, [model, *files])


class _Evil:
    def __init__(self, func: str, marker: Path) -> None:
        self.func, self.marker = func, marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import builtins
        import importlib
        import subprocess

        cmd = f"open({str(self.marker)!r}, 'w').write('x')"
        return {"system": (os.system, (f"touch {self.marker}",)), "exec": (builtins.exec, (cmd,)),
                "eval": (builtins.eval, (cmd,)), "popen": (subprocess.Popen, (["touch", str(self.marker)],)),
                "import": (importlib.import_module, ("subprocess",))}[self.func]


@FUZZ
@given(case=st.sampled_from(["missing_classes", "extra_folder", "evil_pickle", "pickle_labels", "pickle_counts"]),
       seed=st.integers(0, 2**16), func=st.sampled_from(["system", "exec", "eval", "popen", "import"]),
       protocol=st.integers(2, 5))
@pytest.mark.timeout(120)
def test_fuzz_bad_cifar_folders(case: str, seed: int, func: str, protocol: int, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    with scratch() as d:
        monkeypatch.setenv("QCFS_CACHE_DIR", str(d / "cache"))
        model = tiny_intnet((3, 32, 32)).save(d / "c.intnet.npz")
        data = d / "data"
        marker = d / "pwned"
        inputs = [model]
        if case in ("missing_classes", "extra_folder"):
            from PIL import Image

            classes = list(CIFAR10_CLASSES)
            if case == "missing_classes":
                drop = rng.choice(10, size=int(rng.integers(1, 10)), replace=False)
                classes = [c for i, c in enumerate(classes) if i not in set(drop.tolist())]
            else:
                classes.append("".join(rng.choice(list("abcdefgh"), size=int(rng.integers(1, 8)))) + "_x")
            for c in classes:
                (data / "test" / c).mkdir(parents=True)
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / "test" / c / "0.png")
                inputs.append(data / "test" / c / "0.png")
        else:
            base = data / "cifar-10-batches-py"
            base.mkdir(parents=True)
            n = int(rng.integers(1, 5))
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, n).tolist()
            if case == "evil_pickle":
                batch = {b"data": x, b"labels": labels, b"filenames": [_Evil(func, marker)]}
            elif case == "pickle_labels":
                labels[int(rng.integers(0, n))] = int(rng.choice([-1, 10, 255, 2**40]))
                batch = {b"data": x, b"labels": labels}
            else:
                batch = {b"data": x, b"labels": labels[: int(rng.integers(0, n))]}
            with open(base / "test_batch", "wb") as fh:
                pickle.dump(batch, fh, protocol=protocol)
            inputs.append(base / "test_batch")
        refused(run_cli.main, ["--model", str(model), "--dataset", "cifar10", "--data-dir", str(data), "--T", "1",
                               "--no-progress"], capsys, inputs)
        assert not marker.exists(), "a dataset file ran code"
