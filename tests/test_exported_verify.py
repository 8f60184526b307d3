"""Every exported file runs only the network it states (issue 22, section 3 classes 1-3 and 5): a `.net.h5`,
`.snn.onnx` or `.nir` is re-derived from its embedded network and compared object by object before any
backend runs it; HDF5 links, external storage and absurd sizes are refused before anything is read. Each
case of the issue, deterministically; tests/fuzz/test_fuzz_exported_*.py mutate at random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exported_files import (
    SUFFIX, assert_refused, assert_refused_or_stated, base_bytes, base_net, h5_json, h5_replace, onnx_initializer,
    onnx_poke, run, stated_results,
)

h5py = pytest.importorskip("h5py")
nir = pytest.importorskip("nir")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from qcfs.errors import ModelFileError  # noqa: E402


def _file(kind: str, tmp_path: Path, name: str = "m") -> Path:
    path = tmp_path / f"{name}{SUFFIX[kind]}"
    path.write_bytes(base_bytes(kind))
    return path


def _refused(path: Path, *needles: str) -> str:
    code, err, _ = run(path)
    assert_refused(code, err, path)
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("kind", ["netx", "snn-onnx", "nir"])
def test_unedited_files_run_the_stated_network(kind: str, tmp_path: Path) -> None:
    """The verified file runs, and its counts equal the NumPy reference on the same network (IntNet file)."""
    ref = base_net().save(tmp_path / "ref.intnet.npz")
    code, err, results = run(ref)
    assert code == 0, err
    assert json.loads(stated_results(kind)) == results


# --- netx ------------------------------------------------------------------------------------------------------
NETX_EDITS = {
    "negated conv weight": ("layer/1/weight", lambda a: -a, None, "layer/1/weight (layer 'c1')"),
    "NaN dense weight": ("layer/4/weight", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a),
                         None, "layer/4/weight"),
    "netx bias": ("layer/2/bias", lambda a: a + 1, None, "layer/2/bias"),
    "qcfs bias": ("qcfs/layers/2/bias", lambda a: a + 1, None, "qcfs/layers/2/bias"),
    "readout bias": ("qcfs/layers/5/bias", lambda a: a - 3, None, "qcfs/layers/5/bias (layer 'out')"),
    "threshold": ("qcfs/layers/1/threshold", lambda a: a + 2, None, "qcfs/layers/1/threshold"),
    "v_init": ("qcfs/layers/1/v_init", lambda a: a[::-1], None, "qcfs/layers/1/v_init"),
    "vThMant": ("layer/1/neuron/vThMant", lambda a: a + 1, None, "layer/1/neuron/vThMant"),
    "stride": ("layer/2/stride", lambda a: a * 0 + 1, None, "layer/2/stride"),
    "v_max as float": ("qcfs/layers/1/v_max", lambda a: float(a), None, "qcfs/layers/1/v_max"),
}


@pytest.mark.parametrize("edit", sorted(NETX_EDITS))
def test_netx_edits_are_refused(edit: str, tmp_path: Path) -> None:
    key, fn, dtype, needle = NETX_EDITS[edit]
    path = _file("netx", tmp_path)
    with h5py.File(path, "r") as f:
        assert key in f, sorted(f["layer"])
    h5_replace(path, key, fn, dtype)
    _refused(path, needle, "re-export")


def test_netx_layout_indices_match_the_edits() -> None:
    """The indices NETX_EDITS uses: input 0, c1 1, c2 2, flatten 3, f1 4, readout 5."""
    net = base_net()
    assert [layer.kind for layer in net.layers] == ["if", "if", "if", "readout"]
    assert net.readout.name == "out" and net.layers[0].name == "c1"


def test_netx_extra_and_missing_objects_are_refused(tmp_path: Path) -> None:
    path = _file("netx", tmp_path)
    with h5py.File(path, "r+") as f:
        f["layer/2"].create_dataset("delay", data=np.int64(1))
    _refused(path, "layer/2/delay (unexpected)")
    path = _file("netx", tmp_path, "b")
    with h5py.File(path, "r+") as f:
        del f["qcfs/layers/2/v_init"]
    _refused(path, "qcfs/layers/2/v_init (missing)")
    path = _file("netx", tmp_path, "c")
    with h5py.File(path, "r+") as f:
        f["qcfs"].attrs["input_scale"] = 99.0
    _refused(path, "attribute input_scale")


def test_netx_links_and_external_storage_are_refused(tmp_path: Path) -> None:
    other = _file("netx", tmp_path, "other")
    cases = {
        "external link": lambda f: f["layer/1"].__setitem__("x", h5py.ExternalLink(str(other), "/layer/1/weight")),
        "soft-link cycle": lambda f: f["qcfs"].__setitem__("loop", h5py.SoftLink("/qcfs/loop")),
        "soft link": lambda f: f.__setitem__("w", h5py.SoftLink("/layer/1/weight")),
        "hard-link cycle": lambda f: f["qcfs/layers/1"].__setitem__("up", f["qcfs"]),
    }
    needles = {"external link": "external link", "soft-link cycle": "soft link", "soft link": "soft link",
               "hard-link cycle": "hard-link cycle"}
    for name, edit in cases.items():
        path = _file("netx", tmp_path, name.replace(" ", "_"))
        with h5py.File(path, "r+") as f:
            edit(f)
        _refused(path, needles[name])
    raw = tmp_path / "raw.bin"
    path = _file("netx", tmp_path, "external_storage")
    with h5py.File(path, "r+") as f:
        w = f["layer/1/weight"][()]
        raw.write_bytes(w.astype("<i8").tobytes())
        del f["layer/1/weight"]
        f["layer/1"].create_dataset("weight", shape=w.shape, dtype="<i8", external=[(str(raw), 0, w.nbytes)])
    _refused(path, "external file")


def test_netx_absurd_intnet_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = _file("netx", tmp_path)
    with h5py.File(path, "r+") as f:
        del f["qcfs/intnet"]
        f["qcfs"].create_dataset("intnet", shape=(1 << 40,), dtype=np.uint8, chunks=(1 << 20,),
                                 compression="gzip")  # 1 TiB declared, nothing stored
    assert path.stat().st_size < 1 << 20
    _refused(path, "declare 1048576 MB", "qcfs/intnet")


def test_netx_loader_returns_the_embedded_network(tmp_path: Path) -> None:
    from qcfs.exporters.netx_export import load_netx_intnet

    net = load_netx_intnet(_file("netx", tmp_path))
    assert net.header() == base_net().header()
    h5_replace(path := _file("netx", tmp_path, "x"), "layer/1/weight", lambda a: -a)
    with pytest.raises(ModelFileError, match="layer/1/weight"):
        load_netx_intnet(path)


# --- SNN-ONNX ----------------------------------------------------------------------------------------------------
def _onnx_edit(tmp_path: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    path = _file("snn-onnx", tmp_path, name)
    model = onnx.load_model(str(path))
    edit(model)
    onnx.save_model(model, str(path))
    return path


def _add_shift(model) -> None:  # type: ignore[no-untyped-def]
    """One added node shifting the logits by 10⁹ (the issue's case)."""
    from onnx import helper, numpy_helper

    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(10**9, np.int64), "shift"))
    model.graph.node.append(helper.make_node("Add", ["logits_raw", "shift"], ["logits"]))


def _add_identity(model) -> None:  # type: ignore[no-untyped-def]
    """One added node that changes no value: still not the graph the network exports to."""
    from onnx import helper

    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.node.append(helper.make_node("Identity", ["logits_raw"], ["logits"]))


def _set_opset(version: int):  # type: ignore[no-untyped-def]
    def edit(model) -> None:  # type: ignore[no-untyped-def]
        model.opset_import[0].version = version
    return edit


def _drop_logits(model) -> None:  # type: ignore[no-untyped-def]
    keep = [o for o in model.graph.output if o.name != "logits"]
    del model.graph.output[:]
    model.graph.output.extend(keep)


SNN_ONNX_EDITS = {
    "weight": (lambda m: onnx_poke(m, onnx_initializer(m, "c2.w"), 3, 100), "initializer 'c2.w"),
    "v_init": (lambda m: onnx_poke(m, onnx_initializer(m, "c1.v0"), 0, 7), "initializer 'c1.v0"),
    "input scale": (lambda m: onnx_poke(m, onnx_initializer(m, "scale"), 0, 50.0), "initializer 'scale"),
    "readout bias": (lambda m: onnx_poke(m, onnx_initializer(m, "out.b"), 1, 100), "initializer 'out.b"),
    "added node shifting the logits": (_add_shift, "initializer 'shift' (unexpected)"),
    "added identity node": (_add_identity, "nodes where the network has"),
    "opset 12": (_set_opset(12), "opset_import"),
    "opset 99": (_set_opset(99), "opset_import"),
    "no logits output": (_drop_logits, "missing ['logits']"),
}


@pytest.mark.parametrize("edit", sorted(SNN_ONNX_EDITS))
def test_snn_onnx_edits_are_refused(edit: str, tmp_path: Path) -> None:
    fn, needle = SNN_ONNX_EDITS[edit]
    path = _onnx_edit(tmp_path, edit.replace(" ", "_"), fn)
    _refused(path, needle, "re-export")
    code, err, _ = run_backend(path, "numpy")  # the network the file states is refused on every backend
    assert_refused(code, err, path)


def run_backend(path: Path, backend: str):  # type: ignore[no-untyped-def]
    from exported_files import RUN_ARGS, cli

    from qcfs.cli.run import main

    code, err = cli(main, ["--model", str(path), *RUN_ARGS, "--backend", backend])
    return code, err, None


def test_snn_onnx_external_data_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto

    def edit(model) -> None:  # type: ignore[no-untyped-def]
        t = onnx_initializer(model, "c2.w")
        t.data_location = TensorProto.EXTERNAL
        t.raw_data = b""
        entry = t.external_data.add()
        entry.key, entry.value = "location", "weights.bin"
    _refused(_onnx_edit(tmp_path, "ext", edit), "external file")


def test_snn_onnx_verified_model_runs(tmp_path: Path) -> None:
    from qcfs.runtime.ort_snn import load_snn_onnx

    model, net = load_snn_onnx(_file("snn-onnx", tmp_path))
    assert net.header() == base_net().header()
    assert any(o.name == "logits" for o in model.graph.output)


# --- NIR -------------------------------------------------------------------------------------------------------
def _nir_file(tmp_path: Path, name: str) -> Path:
    return _file("nir", tmp_path, name)


def _header(edit):  # type: ignore[no-untyped-def]
    return lambda p: h5_json(p, "node/metadata/qcfs_header", edit)


def _layer(i: int, key: str, value):  # type: ignore[no-untyped-def]
    def edit(h: dict) -> None:
        h["layers"][i][key] = value
    return edit


def _profile(key: str, value):  # type: ignore[no-untyped-def]
    def edit(h: dict) -> None:
        h["profile"][key] = value
    return edit


def _threshold_zero(p: Path) -> None:
    h5_replace(p, "node/nodes/c1/v_threshold", lambda a: a * 0)
    _header(_layer(0, "threshold", 0))(p)


NIR_EDITS = {
    "IF r = 2": (lambda p: h5_replace(p, "node/nodes/c1/r", lambda a: a * 2), "node c1: field r"),
    "readout r = 3": (lambda p: h5_replace(p, "node/nodes/out/r", lambda a: a * 3), "node out: field r"),
    "v_reset": (lambda p: h5_replace(p, "node/nodes/c2/v_reset", lambda a: a + 1), "node c2: field v_reset"),
    "v_threshold 0 (node)": (lambda p: h5_replace(p, "node/nodes/c1/v_threshold", lambda a: a * 0),
                             "node c1: v_threshold"),
    "v_threshold 0 (node and header)": (_threshold_zero, "threshold θ must be positive"),
    "v_threshold non-finite": (lambda p: h5_replace(p, "node/nodes/c1/v_threshold", lambda a: a * np.inf),
                               "node c1: v_threshold"),
    "v_threshold string": (lambda p: h5_replace(p, "node/nodes/c1/v_threshold",
                                                lambda a: np.full(a.shape, b"4", dtype="S1")),
                           "node c1: v_threshold has dtype"),
    "threshold string (header)": (_header(_layer(0, "threshold", "4")), "threshold"),
    "qcfs_v_init wrong length": (lambda p: h5_replace(p, "node/nodes/c1/metadata/qcfs_v_init", lambda a: a[:-1]),
                                 "v_init must be one value or one per channel"),
    "qcfs_version one": (lambda p: h5_replace(p, "node/metadata/qcfs_version", lambda a: "one",
                                              h5py.string_dtype()), "qcfs_version 'one'"),
    "membrane_bits 100": (_header(_profile("membrane_bits", 100)), "profile.membrane_bits"),
    "unknown header field": (_header(lambda h: h.__setitem__("bogus", 1)), "qcfs_header differs"),
    "weight not integral": (lambda p: h5_replace(p, "node/nodes/f1.syn0/weight", lambda a: a + 0.5),
                            "non-integer"),
    "bias NaN": (lambda p: h5_replace(p, "node/nodes/c2.syn0/bias", lambda a: a * np.nan), "bias"),
    "conv stride": (lambda p: h5_replace(p, "node/nodes/c2.syn0/stride", lambda a: a * 0 + 1),
                    "c2.syn0"),
    "edge removed": (lambda p: h5_replace(p, "node/edges", lambda a: a[:-1]), "node"),
}


@pytest.mark.parametrize("edit", sorted(NIR_EDITS))
def test_nir_edits_are_refused(edit: str, tmp_path: Path) -> None:
    fn, needle = NIR_EDITS[edit]
    path = _nir_file(tmp_path, "m")
    fn(path)
    err = _refused(path, needle)
    assert "node" in err or "header" in err or "qcfs_" in err or "NIR" in err, err


def test_nir_nodes_are_the_network(tmp_path: Path) -> None:
    """In NIR the nodes' arrays are the network: a valid new weight or bias is a new network, which runs as
    the graph states it (qcfs's NIR interpreter reading the nodes directly), not as the original."""
    path = _nir_file(tmp_path, "m")
    h5_replace(path, "node/nodes/f1.syn0/weight", lambda a: -a)
    h5_replace(path, "node/nodes/c2.syn0/bias", lambda a: a + 5)
    assert not assert_refused_or_stated("nir", path)
    code, err, results = run(path)
    assert code == 0 and results != json.loads(stated_results("nir")), err


def test_nir_node_names_of_the_edits(tmp_path: Path) -> None:
    with h5py.File(_nir_file(tmp_path, "m"), "r") as f:
        nodes = set(f["node/nodes"])
    assert {"c1", "c2", "f1", "out", "c2.syn0", "f1.syn0", "out.syn0"} <= nodes, sorted(nodes)


def test_nir_links_are_refused(tmp_path: Path) -> None:
    other = _nir_file(tmp_path, "other")
    path = _nir_file(tmp_path, "m")
    with h5py.File(path, "r+") as f:
        del f["node/nodes/c1/r"]
        f["node/nodes/c1"]["r"] = h5py.ExternalLink(str(other), "/node/nodes/c1/r")
    _refused(path, "external link")
    path = _nir_file(tmp_path, "cyc")
    with h5py.File(path, "r+") as f:
        f["node/nodes/c1"]["loop"] = h5py.SoftLink("/node/nodes/c1/loop")
    _refused(path, "soft link")


def test_nir_verified_import_is_identical(tmp_path: Path) -> None:
    from qcfs.exporters.nir_import import load_nir_intnet

    from qcfs.exporters.lava_export import intnet_digest

    net = load_nir_intnet(_nir_file(tmp_path, "m"))
    assert net.header() == base_net().header() and intnet_digest(net) == intnet_digest(base_net())


def test_refused_files_leave_nothing(tmp_path: Path) -> None:
    """An export from a refused file writes nothing either."""
    from exported_files import cli

    from qcfs.cli.export import main

    path = _file("netx", tmp_path)
    h5_replace(path, "layer/1/weight", lambda a: -a)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "o.intnet.npz"
    code, err = cli(main, [str(path), "--backend", "intnet", "-o", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "layer/1/weight" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unchanged_value_rewrite_still_runs(tmp_path: Path) -> None:
    """Rewriting a dataset with its own value (same dtype and shape) is no edit: it runs as stated."""
    path = _file("netx", tmp_path)
    h5_replace(path, "layer/1/weight", lambda a: a.copy())
    assert not assert_refused_or_stated("netx", path)
