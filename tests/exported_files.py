"""Valid exported files (netx `.net.h5`, `.snn.onnx`, `.nir`) of one small network, edits of them, and the CLI
promise for an edited file: refused in one line with exit 2 and nothing written, or results identical to
the network the file states. Shared by tests/test_exported_verify.py and tests/fuzz/test_fuzz_exported_*.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lava_nets import digits_net
from qcfs.intnet import IntNet, as_embedded

SUFFIX = {"netx": ".net.h5", "snn-onnx": ".snn.onnx", "nir": ".nir"}
LIMIT, T_MAX = 4, 3
RUN_ARGS = ["--dataset", "digits", "--T", f"1,{T_MAX}", "--limit", str(LIMIT), "--subset", "prefix",
            "--no-progress"]


def base_net() -> IntNet:
    """lava_nets' digits chain (conv, conv, dense, dense readout) with per-channel v_init on every IF layer."""
    net = digits_net()
    for layer in net.if_layers:
        layer.v_init = (np.arange(layer.channels) * 3 + int(layer.threshold) // 4).astype(np.int64)
    return as_embedded(net)


def export(kind: str, net: IntNet, out: Path) -> Path:
    if kind == "netx":
        from qcfs.exporters.netx_export import export_netx

        return export_netx(net, out)
    if kind == "nir":
        from qcfs.exporters.nir_export import export_nir

        return export_nir(net, out)
    from qcfs.exporters.snn_onnx import export_snn_onnx

    return export_snn_onnx(net, out, kernels="int8")


@functools.lru_cache(maxsize=None)
def base_bytes(kind: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return export(kind, base_net(), Path(tmp) / f"base{SUFFIX[kind]}").read_bytes()


def cli(main: Callable[[list[str]], int], args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def run(path: Path, *extra: str) -> tuple[int, str, Any]:
    """qcfs-run on `path` (its default backend); (exit code, stderr, the --json results or None). Writes
    `<path>.json` and `<path>.counts.npz` next to it."""
    from qcfs.cli.run import main

    out, counts = path.with_name(path.name + ".json"), path.with_name(path.name + ".counts.npz")
    code, err = cli(main, ["--model", str(path), *RUN_ARGS, "--json", str(out), "--counts", str(counts), *extra])
    results = json.loads(out.read_text())["results"] if out.exists() else None
    return code, err, results


@functools.lru_cache(maxsize=None)
def stated_results(kind: str) -> str:
    """--json results of the unedited file (JSON text, so the cache hands out no shared mutable object)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"base{SUFFIX[kind]}"
        path.write_bytes(base_bytes(kind))
        code, err, results = run(path)
        assert code == 0, err
        return json.dumps(results)


def assert_refused(code: int, err: str, path: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("qcfs-run: "), err
    assert str(path) in lines[0], err
    assert not path.with_name(path.name + ".json").exists()
    assert not path.with_name(path.name + ".counts.npz").exists()


def nir_graph_counts(path: Path) -> dict[str, np.ndarray]:
    """What the NIR graph itself says, read by qcfs's NIR interpreter with the qcfs semantics its metadata
    states (weights, biases, v_threshold, qcfs_v_init straight from the nodes, not through the importer),
    on the samples RUN_ARGS selects; as the --counts arrays."""
    from qcfs.data import load_split
    from qcfs.runtime.nir_stock import simulate_nir

    images = load_split("digits", "test", None)[0][:LIMIT]
    return simulate_nir(path, images, [T_MAX], semantics="qcfs", progress=False).counts_arrays()


def assert_refused_or_stated(kind: str, path: Path) -> bool:
    """The promise for an edited file; True when it was refused. Stated network: the unedited file's for
    netx and SNN-ONNX (their embedded IntNet is not edited); for NIR, whose nodes are the network, what the
    graph says (nir_graph_counts) — and every node parameter the qcfs semantics cannot represent must have
    been refused (r = 1, v_reset = 0 are the only representable values)."""
    code, err, results = run(path)
    if code != 0:
        assert_refused(code, err, path)
        return True
    if kind != "nir":
        assert json.dumps(results) == stated_results(kind), "an edited file ran another network"
        return False
    with np.load(path.with_name(path.name + ".counts.npz")) as npz:
        got = {k: npz[k] for k in npz.files}
    want = nir_graph_counts(path)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want), "ran another network"
    import h5py

    with h5py.File(path, "r") as f:
        for name, node in f["node/nodes"].items():
            for field, value in (("r", 1.0), ("v_reset", 0.0)):
                if field in node:
                    assert np.all(node[field][()] == value), f"node {name}: {field} not representable, yet ran"
    return False


# --- HDF5 edits (netx, NIR) ----------------------------------------------------------------------------------
def h5_datasets(path: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Paths of every dataset, except those in `skip` (the embedded network / header: the source itself)."""
    import h5py

    found: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(p for p in found if p not in skip)


def h5_replace(path: Path, key: str, fn: Callable[[np.ndarray], Any], dtype: Any = None) -> None:
    """Dataset `key` := fn(its value) (a new dataset, so dtype and shape may change)."""
    import h5py

    with h5py.File(path, "r+") as f:
        old = f[key][()]
        new = fn(np.asarray(old) if not isinstance(old, bytes) else old)
        del f[key]
        if dtype is None and not isinstance(new, (bytes, str)) and np.asarray(new).dtype.kind in "OU":
            dtype = h5py.string_dtype()  # variable-length strings (NIR edges): HDF5 has no numpy object type
        if dtype is None:
            f.create_dataset(key, data=new)
        else:
            f.create_dataset(key, data=new, dtype=dtype)


def h5_json(path: Path, key: str, fn: Callable[[dict], None]) -> None:
    """Edit the JSON text in string dataset `key` (NIR's qcfs_header) in place."""
    import h5py

    with h5py.File(path, "r+") as f:
        raw = f[key][()]
        doc = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        fn(doc)
        del f[key]
        f.create_dataset(key, data=json.dumps(doc), dtype=h5py.string_dtype())


# --- ONNX edits (snn-onnx) ----------------------------------------------------------------------------------
def onnx_initializer(model: Any, prefix: str) -> Any:
    """The first initializer whose name starts with `prefix` (names are '<hint>_<n>')."""
    return next(t for t in model.graph.initializer if t.name.startswith(prefix))


def onnx_poke(model: Any, tensor: Any, index: int, value: float) -> None:
    from onnx import numpy_helper

    a = numpy_helper.to_array(tensor).copy()
    flat = a.reshape(-1)
    flat[index % flat.size] = np.asarray(value).astype(a.dtype)
    tensor.CopyFrom(numpy_helper.from_array(a, tensor.name))


# --- random edits (hypothesis) -------------------------------------------------------------------------------
def edited_value(data: Any, old: Any) -> Any:
    """A random edit of a dataset's value `old`: one element changed (same dtype, or a float/NaN/inf that
    changes the dtype), negated, truncated, reshaped, recast, or replaced by text; sometimes a no-op."""
    from hypothesis import strategies as st

    if isinstance(old, (bytes, str)) or np.asarray(old).dtype.kind in "SOU":
        return data.draw(st.sampled_from([b"", b"conv", b"dense", "CUBA", b"IF", old]))
    a = np.array(old)
    kind = data.draw(st.sampled_from(["poke", "nudge", "negate", "truncate", "reshape", "recast", "same"]))
    if kind == "same":
        return a
    if kind == "negate":
        return -a
    if kind == "truncate":
        return a.reshape(-1)[:-1] if a.size > 1 else np.zeros(0, a.dtype)
    if kind == "reshape":
        return a.reshape(-1, 1) if a.ndim else a.reshape(1)
    if kind == "recast":
        return a.astype(data.draw(st.sampled_from([np.float64, np.float32, np.int32, np.uint8])))
    if a.size == 0:
        return np.zeros(1, a.dtype)
    i = data.draw(st.integers(0, a.size - 1))
    if kind == "nudge":
        flat = a.reshape(-1).copy()
        flat[i] = flat[i] + data.draw(st.sampled_from([1, -1, 2, 64]))
        return flat.reshape(a.shape)
    value = data.draw(st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True)))
    flat = a.reshape(-1).astype(np.float64 if isinstance(value, float) else np.int64)
    flat[i] = value
    return flat.reshape(a.shape)
