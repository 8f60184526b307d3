"""Fuzz (hypothesis): bad IntNet, Lava and ONNX network files of issue 13's classes 2, 3 and 4.

The promise checked for every generated file, through the real CLIs: exit code 2, exactly one line on stderr,
no traceback, and nothing written. Files whose random edit happens to leave a valid network may also exit 0;
then the output must exist and load. Example counts are small (2-core CI); the named mutations in
tests/intnet_mutations.py and the unit tests cover each field deterministically.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from graphs_by_hand import Builder
from intnet_mutations import MUTATIONS, mutate, read, write
from lava_nets import digits_net, residual_net
from qcfs.cli.export import main as export_main
from qcfs.cli.run import main as run_main
from qcfs.exporters.lava_export import export_lava

FUZZ = settings(max_examples=int(__import__("os").environ.get("QCFS_FUZZ_EXAMPLES", "25")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cli(main: Callable[[list[str]], int], args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def _assert_refused(code: int, err: str, written: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err and lines[0].split(": ")[0].startswith("qcfs-"), err
    assert not written.exists()


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-3, 3), max_size=5), st.dictionaries(st.text(max_size=2),
                                                                                    st.integers(), max_size=2),
)
BASES = {"digits": digits_net().to_bytes(), "residual": residual_net().to_bytes()}


def _header_paths(h: object, prefix: tuple = ()) -> list[tuple]:
    """Every leaf position in the header (dict keys / list indices), metadata excluded (it is free-form)."""
    if isinstance(h, dict):
        return [p for k, v in h.items() if k != "metadata" for p in _header_paths(v, prefix + (k,))]
    if isinstance(h, list):
        return [p for i, v in enumerate(h) for p in _header_paths(v, prefix + (i,))] or [prefix]
    return [prefix]


def _set_path(h: dict, path: tuple, value: object) -> None:
    node = h
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


# --- class 3: IntNet files ----------------------------------------------------------------------------------
@FUZZ
@given(base=st.sampled_from(sorted(BASES)), name=st.sampled_from(sorted(MUTATIONS)))
def test_named_intnet_mutations_are_refused(base: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "bad.intnet.npz", Path(tmp) / "out.lava.npz"
        try:
            src.write_bytes(mutate(BASES[base], name))
        except (KeyError, IndexError):  # the mutation needs a layer/field this base lacks
            return
        code, err = _cli(export_main, [str(src), "--backend", "lava", "-o", str(out)])
        _assert_refused(code, err, out)


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_random_header_values_never_escape_the_promise(base: str, data: st.DataObject) -> None:
    header, arrays = read(BASES[base])
    path = data.draw(st.sampled_from(_header_paths(header)))
    _set_path(header, path, data.draw(JSON_VALUES))
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "bad.intnet.npz", Path(tmp) / "out.lava.npz"
        src.write_bytes(write(header, arrays))
        code, err = _cli(export_main, [str(src), "--backend", "lava", "-o", str(out)])
        if code == 0:  # the random value happened to be valid (e.g. a new metadata-like name)
            assert out.exists()
        else:
            _assert_refused(code, err, out)


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_random_array_edits_never_escape_the_promise(base: str, data: st.DataObject) -> None:
    header, arrays = read(BASES[base])
    key = data.draw(st.sampled_from(sorted(k for k in arrays if k != "__header__")))
    value = data.draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**62, 2**62)))
    arr = arrays[key].astype(np.float64 if isinstance(value, float) else np.int64).copy()
    arr.flat[data.draw(st.integers(0, arr.size - 1))] = value
    arrays[key] = arr
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "bad.intnet.npz", Path(tmp) / "out.lava.npz"
        src.write_bytes(write(header, arrays))
        code, err = _cli(export_main, [str(src), "--backend", "lava", "-o", str(out)])
        if code != 0:
            _assert_refused(code, err, out)


# --- class 2: Lava files ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _lava_blob() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return export_lava(digits_net(), Path(tmp) / "net.lava.npz").read_bytes()


def _lava_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as npz:
        return {k: npz[k] for k in npz.files}


def _run_lava_file(arrays: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "bad.lava.npz", Path(tmp) / "res.json"
        with open(src, "wb") as fh:
            np.savez(fh, **arrays)
        code, err = _cli(run_main, ["--model", str(src), "--dataset", "digits", "--T", "1", "--limit", "2",
                                    "--no-progress", "--json", str(out)])
        _assert_refused(code, err, out)
        assert "layer '" in err or "header field" in err or "digest" in err or "embedded" in err, err


@FUZZ
@given(data=st.data())
def test_edited_lava_arrays_are_refused(data: st.DataObject) -> None:
    arrays = _lava_arrays(_lava_blob())
    key = data.draw(st.sampled_from(sorted(k for k in arrays if not k.startswith("__"))))
    arr = arrays[key].copy()
    arr.flat[data.draw(st.integers(0, arr.size - 1))] += data.draw(st.integers(1, 1000))
    arrays[key] = arr
    _run_lava_file(arrays)


@FUZZ
@given(data=st.data())
def test_edited_lava_header_is_refused(data: st.DataObject) -> None:
    arrays = _lava_arrays(_lava_blob())
    header = json.loads(arrays["__header__"].tobytes())
    path = data.draw(st.sampled_from([p for p in _header_paths(header) if p[:1] in (("layers",), ("input",))]))
    old = header
    for key in path:
        old = old[key]
    value = data.draw(JSON_VALUES.filter(lambda v: v != old or type(v) is not type(old)))
    _set_path(header, path, value)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    _run_lava_file(arrays)


# --- class 3/4: ONNX files ----------------------------------------------------------------------------------
def _onnx_base() -> tuple[Builder, str]:
    b = Builder(shape=(3, 4, 4), seed=3)
    x = b.qcfs(b.bn(b.conv("input", 4, name="conv"), name="bn"), 1.5, name="act")
    return b, x


def _with_tail(tail: Callable[[Builder, str], str]) -> onnx.ModelProto:
    b, x = _onnx_base()
    return b.model(tail(b, x), "fuzz")


def _softmax_axis0(b: Builder, x: str) -> str:
    return b.node("Softmax", [b.gemm(b.flatten(x), 5, name="fc")], (5,), "sm", axis=0)


def _reshape(target: list[int]) -> Callable[[Builder, str], str]:
    def tail(b: Builder, x: str) -> str:
        name = b._name("shape")
        b.inits.append(numpy_helper.from_array(np.array(target, dtype=np.int64), name))
        return b.gemm(b.node("Reshape", [x, name], (64,), "reshape"), 5, name="fc")
    return tail


def _plain(b: Builder, x: str) -> str:
    return b.gemm(b.flatten(x), 5, name="fc")


def _poison(model: onnx.ModelProto, node_name: str, index: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(t for t in model.graph.initializer if t.name == node.input[index])
    init.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(init)), init.name))


NON_FLATTEN = st.lists(st.integers(-1, 70), min_size=1, max_size=4).filter(
    lambda t: not (len(t) == 2 and ((t[0] == 0 and t[1] in (-1, 64)) or (t[0] == -1 and t[1] == 64))))


@st.composite
def bad_onnx(draw: st.DrawFn) -> onnx.ModelProto:
    kind = draw(st.sampled_from(["bn_var", "nan_weight", "softmax_axis0", "reshape", "per_channel_lam",
                                 "string_init", "int_weight"]))
    if kind == "softmax_axis0":
        return _with_tail(_softmax_axis0)
    if kind == "reshape":
        target = draw(st.one_of(st.sampled_from([[-1, 32], [0, 32], [2, -1], [1, -1], [0, 4, 16], [64]]),
                                NON_FLATTEN))
        return _with_tail(_reshape(target))
    model = _with_tail(_plain)
    ch = draw(st.integers(0, 3))
    if kind == "bn_var":
        v = draw(st.floats(-1e6, -1e-4))
        _poison(model, "bn", 4, lambda a: np.where(np.arange(a.size) == ch, v, a).astype(np.float32))
    elif kind == "nan_weight":
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        where = draw(st.sampled_from([("conv", 1), ("bn", 1), ("bn", 2), ("bn", 3), ("fc", 1), ("fc", 2)]))

        def f(a: np.ndarray) -> np.ndarray:
            a = a.copy()
            a.flat[ch % a.size] = bad
            return a
        _poison(model, where[0], where[1], f)
    elif kind == "per_channel_lam":  # λ arrays that are not one positive clip level per channel
        shape = draw(st.sampled_from([(4,), (2,), (2, 4, 1, 1), (1, 1, 4, 1), (4, 1, 1), (1, 4, 1, 1)]))
        lam = np.linspace(1.0, 2.0, int(np.prod(shape))).reshape(shape).astype(np.float32)
        if shape in ((4, 1, 1), (1, 4, 1, 1)):  # a valid per-channel shape: poison one value instead
            lam.flat[ch] = draw(st.sampled_from([0.0, -1.0, np.nan, np.inf]))
        _poison(model, "act", 1, lambda a: lam)
    elif kind == "string_init":
        node = next(n for n in model.graph.node if n.name == "fc")
        init = next(t for t in model.graph.initializer if t.name == node.input[2])
        init.CopyFrom(helper.make_tensor(init.name, onnx.TensorProto.STRING, [5], [b"a"] * 5))
    else:
        _poison(model, "conv", 1, lambda a: np.rint(a * 10).astype(draw(st.sampled_from([np.int64, np.int32]))))
    return model


@FUZZ
@given(model=bad_onnx(), backend=st.sampled_from(["intnet", "lava", "onnx"]))
def test_bad_onnx_is_refused(model: onnx.ModelProto, backend: str) -> None:
    """--backend onnx too: the canonical file must never hold what the converter would refuse."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "m.onnx", Path(tmp) / f"out.{backend}"
        onnx.save_model(model, str(src))
        code, err = _cli(export_main, [str(src), "--backend", backend, "-o", str(out)])
        _assert_refused(code, err, out)
