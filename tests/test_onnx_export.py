"""Zoo models export to canonical QCFS ONNX that onnxruntime runs like torch (parity), and the CLI wires it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from conftest import cifar10_dir
from onnx_helpers import assert_same_canonical, lambdas, realistic, structure
from qcfs.data import DATASETS, load_split
from qcfs.exporters.canonical import QCFS_DOMAIN, get_metadata, qcfs_function_proto, qcfs_nodes
from qcfs.exporters.check_parity import check_parity
from qcfs.exporters.onnx_export import export_module
from qcfs.frontend.models import ModelConfig, build_model
from qcfs.frontend.qcfs_act import QCFS
from qcfs.toolchain.importer import load_canonical


def _normalized(dataset: str, split: str, n: int) -> np.ndarray:
    info = DATASETS[dataset]
    x, _ = load_split(dataset, split)
    idx = np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int)
    mean = np.asarray(info.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(info.std, np.float32).reshape(1, -1, 1, 1)
    return ((x[idx] - mean) / std).astype(np.float32)


def _images(dataset: str, shape, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(calibration images, test images): real data where present, else N(0,1) images of the CIFAR shape."""
    if dataset == "cifar10" and cifar10_dir() is None:
        rng = np.random.default_rng(seed)
        return (rng.normal(size=(32, *shape)).astype(np.float32), rng.normal(size=(n, *shape)).astype(np.float32))
    return _normalized(dataset, "train", 256), _normalized(dataset, "test", n)


ZOO_CASES = [  # (arch, dataset, in_channels, size, test samples)
    ("cnn", "digits", 1, 8, 360),
    ("cnn", "fashion-mnist", 1, 28, 500),
    ("resnet20", "cifar10", 3, 32, 128),
    ("resnet18", "cifar10", 3, 32, 64),
    ("vgg16", "cifar10", 3, 32, 64),
]


# the cnn cases are quick: `make test` runs them again under another CPU kernel set (marker `kernels`)
ZOO_PARAMS = [pytest.param(*c, id=f"{c[0]}-{c[3]}", marks=[pytest.mark.kernels] if c[0] == "cnn" else [])
              for c in ZOO_CASES]


@pytest.mark.parametrize("arch,dataset,cin,size,n", ZOO_PARAMS)
def test_zoo_export_parity(arch, dataset, cin, size, n, tmp_path, capsys):  # type: ignore[no-untyped-def]
    if dataset == "fashion-mnist":
        from conftest import FASHION_DIR

        if not any((FASHION_DIR / f).exists() for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")):
            pytest.skip("Fashion-MNIST absent")
    torch.manual_seed(0)
    cfg = ModelConfig(arch, cin, 10, size, L=4)
    calib, test = _images(dataset, (cin, size, size), n, seed=0)
    model = realistic(build_model(cfg), torch.from_numpy(calib))
    out = export_module(model, {"config": cfg, "dataset": dataset}, tmp_path / f"{arch}.onnx")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)

    # one qcfs::QCFS node per QCFS module, named after it, λ initializer `<module>.lam` with the module's value
    mods = {name: m for name, m in model.named_modules() if isinstance(m, QCFS)}
    nodes = qcfs_nodes(proto.graph.node)
    assert sorted(n.name for n in nodes) == sorted(mods)
    assert [n.input[1] for n in nodes] == [f"{n.name}.lam" for n in nodes]
    assert lambdas(proto) == pytest.approx([float(mods[n.name].lam.detach()) for n in nodes])
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 20), ("qcfs", 1)}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = get_metadata(proto)
    assert meta["qcfs.model"] == arch and json.loads(meta["qcfs.input_shape"]) == [cin, size, size]
    assert meta["qcfs.calibrated"] == "false" and meta["qcfs.L"] == "4" and meta["qcfs.opset"] == "20"

    report = check_parity(model, proto, test)
    with capsys.disabled():
        print(f"\n[parity] {arch} {size}x{size} ({dataset if dataset != 'cifar10' or cifar10_dir() else 'random'}): "
              f"{report.format()}")
    assert report.levels_compared > 0
    if arch == "cnn":
        # flip-free samples within 1e-4, every first flip within the derived float-rounding bound of a boundary
        assert report.passed(), report.format()
    else:  # deep nets: exact where floor decisions agree; rare boundary flips cascade (reported above)
        assert report.passed_up_to_flips(), report.format()

    # the importer leaves our own export as it is (apart from what it normalises)
    canon = load_canonical(out)
    assert_same_canonical(canon, proto, test[:16], atol=1e-5)


def test_parity_tells_a_real_difference_from_rounding(tmp_path):  # type: ignore[no-untyped-def]
    """The first conv's weights scaled by 1 + 1e-3 in the ONNX (far beyond float rounding, small enough to
    keep most levels): its flips lie outside the rounding bound, so the report fails."""
    from onnx import numpy_helper

    torch.manual_seed(0)
    cfg = ModelConfig("cnn", 1, 10, 8, L=4)
    test = _normalized("digits", "test", 360)
    model = realistic(build_model(cfg), torch.from_numpy(test))
    proto = onnx.load(str(export_module(model, {"config": cfg, "dataset": "digits"}, tmp_path / "m.onnx")))
    assert check_parity(model, proto, test).passed()
    name = next(n for n in proto.graph.node if n.op_type == "Conv").input[1]
    init = next(i for i in proto.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1 + 1e-3), name))
    report = check_parity(model, proto, test)
    assert report.first_flips > 0 and report.unexplained_flips > 0 and not report.passed(), report.format()


def test_export_opset17_and_reimport(tmp_path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cfg = ModelConfig("cnn", 1, 10, 8)
    test = _normalized("digits", "test", 64)
    model = realistic(build_model(cfg), torch.from_numpy(test))
    p17 = export_module(model, {"config": cfg, "dataset": "digits"}, tmp_path / "m17.onnx", opset=17)
    p20 = export_module(model, {"config": cfg, "dataset": "digits"}, tmp_path / "m20.onnx")
    m17 = onnx.load(str(p17))
    assert {(o.domain, o.version) for o in m17.opset_import} == {("", 17), ("qcfs", 1)}
    assert len(qcfs_nodes(m17.graph.node)) == 3
    onnx.checker.check_model(m17, full_check=True)
    assert_same_canonical(load_canonical(p17), load_canonical(p20), test)


def test_function_proto_matches_reference_semantics():  # type: ignore[no-untyped-def]
    """The FunctionProto body is QCFS: checked against qcfs.semantics on values across all levels."""
    from onnx import TensorProto, helper

    from qcfs.semantics import qcfs_activation

    fn = qcfs_function_proto()
    assert (fn.domain, fn.name, list(fn.input), list(fn.output)) == (QCFS_DOMAIN, "QCFS", ["X", "lambda"], ["Y"])
    node = helper.make_node("QCFS", ["x", "lam"], ["y"], domain=QCFS_DOMAIN, L=3, shift=0.5)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
                          [onnx.numpy_helper.from_array(np.array(2.0, np.float32), "lam")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid(QCFS_DOMAIN, 1)],
                          functions=[fn])
    onnx.checker.check_model(m, full_check=True)
    import onnxruntime as ort

    x = np.linspace(-1, 3, 401, dtype=np.float32)
    y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, qcfs_activation(x, 2.0, 3), atol=1e-6)


def test_cli_checkpoint_to_onnx_end_to_end(digits_checkpoint, tmp_path):  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main
    from qcfs.exporters import check_parity as cp
    from qcfs.frontend.checkpoint import load_checkpoint

    out = tmp_path / "cnn.onnx"
    assert main([str(digits_checkpoint), "--backend", "onnx", "-o", str(out)]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node] == [s[1] for s in structure(proto)]
    assert get_metadata(proto)["qcfs.dataset"] == "digits"
    model, _ = load_checkpoint(digits_checkpoint)
    report = check_parity(model, proto, _normalized("digits", "test", 360))
    assert report.passed(), report.format()
    assert cp.main([str(digits_checkpoint), str(out), "--dataset", "digits", "--limit", "100"]) == 0
