"""Every bad ONNX input is one line on stderr and exit code 2 through `qcfs-export`, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_helpers import GraphBuilder
from qcfs.cli.export import main


@pytest.fixture(scope="module")
def good(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("good") / "good.onnx"
    onnx.save_model(GraphBuilder(dict(order="canonical")).build(), str(path))
    return path


def _cli(args: list[str], capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    rc = main(args)
    err = capsys.readouterr().err
    return rc, err


def _assert_one_line_error(path, capsys, *needles: str, extra: list[str] | None = None) -> str:  # type: ignore[no-untyped-def]
    rc, err = _cli([str(path), "--backend", "onnx", "-o", str(path.with_name("out.onnx")), *(extra or [])], capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qcfs-export: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not path.with_name("out.onnx").exists()
    return lines[0]


def _canonical(tmp_path, name: str = "m.onnx", **mutate) -> object:  # type: ignore[no-untyped-def]
    """A canonical graph with its first QCFS node's λ / attributes replaced."""
    model = GraphBuilder(dict(order="canonical")).build()
    node = next(n for n in model.graph.node if n.op_type == "QCFS")
    if "lam" in mutate:
        init = next(i for i in model.graph.initializer if i.name == node.input[1])
        init.CopyFrom(numpy_helper.from_array(np.array(mutate["lam"], np.float32), init.name))
    if "attrs" in mutate:
        del node.attribute[:]
        node.attribute.extend(helper.make_attribute(k, v) for k, v in mutate["attrs"].items())
    path = tmp_path / name
    onnx.save_model(model, str(path))
    return path


def test_good_file_passes(good, capsys):  # type: ignore[no-untyped-def]
    rc, err = _cli([str(good), "--backend", "onnx", "-o", str(good.with_name("ok.onnx"))], capsys)
    assert rc == 0 and "wrote" in err
    onnx.checker.check_model(onnx.load(str(good.with_name("ok.onnx"))), full_check=True)


def test_not_onnx(tmp_path, capsys):  # type: ignore[no-untyped-def]
    p = tmp_path / "text.onnx"
    p.write_text("hello, I am not a model\n" * 20)
    _assert_one_line_error(p, capsys, str(p), "not an ONNX model")


def test_random_bytes(tmp_path, capsys):  # type: ignore[no-untyped-def]
    p = tmp_path / "noise.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_one_line_error(p, capsys, "not an ONNX model")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated(good, tmp_path, capsys, fraction):  # type: ignore[no-untyped-def]
    data = good.read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: int(len(data) * fraction)])
    _assert_one_line_error(p, capsys, str(p))


@pytest.mark.parametrize("lam", [0.0, -1.5, float("nan"), float("inf")])
def test_bad_lambda_canonical(tmp_path, capsys, lam):  # type: ignore[no-untyped-def]
    _assert_one_line_error(_canonical(tmp_path, lam=lam), capsys, "λ", "positive and finite")


@pytest.mark.parametrize("attrs,needle", [({"L": 0, "shift": 0.5}, "L must be a positive integer"),
                                          ({"L": 2.5, "shift": 0.5}, "L must be a positive integer"),
                                          ({"shift": 0.5}, "L must be a positive integer"),
                                          ({"L": 4, "shift": 1.5}, "shift")])
def test_bad_attributes_canonical(tmp_path, capsys, attrs, needle):  # type: ignore[no-untyped-def]
    _assert_one_line_error(_canonical(tmp_path, attrs=attrs), capsys, needle)


@pytest.mark.parametrize("lams,L,needle", [((1.5, -2.0, 3.0), 4, "λ = -2.0"), ((1.5, 2.0, 3.0), 2.5, "L = 2.5")])
def test_bad_constants_decomposed(tmp_path, capsys, lams, L, needle):  # type: ignore[no-untyped-def]
    p = tmp_path / "dec.onnx"
    onnx.save_model(GraphBuilder(dict(order="clip")).build(lams=lams, L=L), str(p))
    _assert_one_line_error(p, capsys, needle)


def _external(tmp_path, location: str, make_file: bool = True):  # type: ignore[no-untyped-def]
    model = GraphBuilder(dict(order="canonical")).build()
    init = model.graph.initializer[0]
    raw = numpy_helper.to_array(init).tobytes()
    if make_file:
        target = (tmp_path / location).resolve() if not location.startswith("/") else None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(raw)
    init.ClearField("raw_data")
    del init.float_data[:]
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    init.external_data.add(key="length", value=str(len(raw)))
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    path = d / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_outside_folder(tmp_path, capsys):  # type: ignore[no-untyped-def]
    _assert_one_line_error(_external(tmp_path, "../secret.bin"), capsys, "outside the model's folder")


def test_external_data_absolute(tmp_path, capsys):  # type: ignore[no-untyped-def]
    _assert_one_line_error(_external(tmp_path, "/etc/hostname", make_file=False), capsys, "absolute path")


def test_external_data_missing(tmp_path, capsys):  # type: ignore[no-untyped-def]
    _assert_one_line_error(_external(tmp_path, "weights.bin", make_file=False), capsys, "not found")


def test_external_data_inside_folder_is_fine(tmp_path, capsys):  # type: ignore[no-untyped-def]
    path = _external(tmp_path, "model/weights.bin")
    # location is relative to the model's folder: model/weights.bin does not exist there -> error ...
    _assert_one_line_error(path, capsys, "not found")
    # ... while a file next to the model loads
    (path.parent / "w.bin").write_bytes((tmp_path / "model" / "weights.bin").read_bytes())
    model = onnx.load(str(path), load_external_data=False)
    for e in model.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "w.bin"
    path.write_bytes(model.SerializeToString())
    rc, err = _cli([str(path), "--backend", "onnx", "-o", str(tmp_path / "ok.onnx")], capsys)
    assert rc == 0, err


def _with_extra(op: str, **attrs):  # type: ignore[no-untyped-def]
    def extra(b: GraphBuilder, x: str) -> str:
        out = b.name(op.lower())
        b.nodes.append(helper.make_node(op, [x], [out], name=f"my_{op.lower()}", **attrs))
        return out
    return extra


@pytest.mark.parametrize("op,attrs,needle", [
    ("MaxPool", dict(kernel_shape=[1, 1]), "replace MaxPool by AveragePool and retrain"),
    ("Sigmoid", {}, "Sigmoid"),
    ("Softmax", dict(axis=1), "Softmax"),
    ("Relu", {}, "--calibrate relu --dataset"),
])
def test_unsupported_ops(tmp_path, capsys, op, attrs, needle):  # type: ignore[no-untyped-def]
    p = tmp_path / f"{op}.onnx"
    onnx.save_model(GraphBuilder(dict(order="canonical")).build(extra=_with_extra(op, **attrs)), str(p))
    line = _assert_one_line_error(p, capsys, str(p), f"my_{op.lower()}", needle)
    assert op in line


def test_lstm_unsupported(tmp_path, capsys):  # type: ignore[no-untyped-def]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None, None])
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["seq"]),
             helper.make_node("LSTM", ["seq", "W", "R"], ["y"], hidden_size=2, name="rnn")]
    inits = [numpy_helper.from_array(np.array([4, -1, 4], np.int64), "shape"),
             numpy_helper.from_array(np.zeros((1, 8, 4), np.float32), "W"),
             numpy_helper.from_array(np.zeros((1, 8, 2), np.float32), "R")]
    p = tmp_path / "lstm.onnx"
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                      opset_imports=[helper.make_opsetid("", 17)]), str(p))
    _assert_one_line_error(p, capsys, "LSTM", "'rnn'")


def test_old_opset_rejected(tmp_path, capsys):  # type: ignore[no-untyped-def]
    model = GraphBuilder(dict(order="clip"), opset=11).build()
    p = tmp_path / "old.onnx"
    onnx.save_model(model, str(p))
    _assert_one_line_error(p, capsys, "opset 11")


def test_calibrate_without_dataset(good, capsys):  # type: ignore[no-untyped-def]
    rc, err = _cli([str(good), "--calibrate", "relu"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--dataset" in err


def test_subprocess_no_traceback(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07\x12\x04junk" * 10)
    res = subprocess.run([sys.executable, "-m", "qcfs.cli.export", str(p), "--backend", "onnx"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(p) in res.stderr
