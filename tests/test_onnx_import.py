"""The importer turns every accepted spelling of a QCFS network into the same canonical graph."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from onnx_helpers import GraphBuilder, assert_same_canonical, lambdas, run, structure
from qcfs.exporters.canonical import get_metadata, qcfs_nodes
from qcfs.toolchain.importer import load_canonical

SPELLINGS = {
    "clip-first": dict(order="clip"),
    "clip-first mul(1/L)": dict(order="clip", down="mul"),
    "floor-first": dict(order="floor"),
    "floor-first div-mul mul(1/L)": dict(order="floor", up="div_mul", down="mul"),
    "min-max": dict(order="clip", clip="minmax"),
    "max-min floor-first": dict(order="floor", clip="maxmin"),
    "commuted": dict(order="clip", commute=True, down="mul"),
    "commuted floor-first": dict(order="floor", commute=True),
    "constant nodes": dict(order="clip", consts="constant"),
    "identity": dict(order="floor", consts="identity", shared_lambda=False),
    "ste": dict(order="clip", floor="ste"),
    "ste commuted": dict(order="floor", floor="ste_commuted", commute=True, consts="constant"),
}

X = np.random.default_rng(1).normal(0, 1.5, (16, 1, 6, 6)).astype(np.float32)


def _save(model: onnx.ModelProto, tmp_path, name: str = "m.onnx"):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ref")
    return {bn: load_canonical(_save(GraphBuilder(dict(order="canonical"), bn=bn).build(), tmp, f"r{bn}.onnx"))
            for bn in (False, True)}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_decomposed_spellings_fuse_to_canonical(spelling, reference, tmp_path):  # type: ignore[no-untyped-def]
    src = GraphBuilder(SPELLINGS[spelling]).build()
    canon = load_canonical(_save(src, tmp_path))
    assert [n.op_type for n in canon.graph.node] == ["Conv", "QCFS", "Conv", "QCFS", "Flatten", "Gemm", "QCFS", "Gemm"]
    assert lambdas(canon) == pytest.approx([1.5, 2.5, 3.0])
    assert_same_canonical(canon, reference[False], X)
    np.testing.assert_allclose(run(canon, X), run(src, X), rtol=1e-5, atol=1e-5)  # same function as the source
    onnx.checker.check_model(canon, full_check=True)


@pytest.mark.parametrize("spelling", ["canonical", "clip-first", "ste"])
def test_batchnorm_unfused_conv_and_gemm(spelling, reference, tmp_path):  # type: ignore[no-untyped-def]
    sp = dict(order="canonical") if spelling == "canonical" else SPELLINGS[spelling]
    src = GraphBuilder(sp, bn=True).build()
    canon = load_canonical(_save(src, tmp_path))
    assert "BatchNormalization" not in [n.op_type for n in canon.graph.node]  # folded into Conv/Gemm
    assert_same_canonical(canon, reference[True], X)
    np.testing.assert_allclose(run(canon, X), run(src, X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opset", [13, 17])
def test_old_opsets(opset, reference, tmp_path):  # type: ignore[no-untyped-def]
    for sp in (dict(order="clip", consts="constant"), dict(order="canonical")):
        canon = load_canonical(_save(GraphBuilder(sp, opset=opset).build(), tmp_path))
        assert {(o.domain, o.version) for o in canon.opset_import} == {("", 20), ("qcfs", 1)}
        assert get_metadata(canon).get("qcfs.source_opset") == str(opset)
        assert_same_canonical(canon, reference[False], X)


def test_trailing_softmax_dropped_and_recorded(reference, tmp_path):  # type: ignore[no-untyped-def]
    src = GraphBuilder(dict(order="clip")).build()
    last = src.graph.output[0].name
    src.graph.node.append(onnx.helper.make_node("Softmax", [last], ["probs"], axis=-1))
    src.graph.output[0].name = "probs"
    canon = load_canonical(_save(src, tmp_path))
    assert get_metadata(canon)["qcfs.dropped_output_op"] == "Softmax"
    assert_same_canonical(canon, reference[False], X)


# ------------------------------------------------------------------ torch exporters on plain-torch QCFS


class _GradFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        return x.floor()

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        return g


class PaperQCFS(nn.Module):
    """QCFS as the authors' code writes it (clip first, floor as an autograd Function)."""

    def __init__(self, L: int, lam: float) -> None:
        super().__init__()
        self.L, self.up = L, nn.Parameter(torch.tensor([lam]))

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = torch.clamp(x / self.up, 0, 1)
        return _GradFloor.apply(x * self.L + 0.5) / self.L * self.up


class FormulaSTEQCFS(PaperQCFS):
    """The formula order with an inline straight-through floor."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = x * self.L / self.up + 0.5
        y = y + (y.floor() - y).detach()
        return torch.clamp(y / self.L, 0, 1) * self.up


def _plain_net(L: int = 4) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), PaperQCFS(L, 1.5),
                        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), FormulaSTEQCFS(L, 2.0),
                        nn.Flatten(), nn.Linear(4 * 36, 8), PaperQCFS(L, 1.5), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_(0, 0.1)
    return net


def _export(net: nn.Module, path, dynamo: bool, opset: int, size: int = 6):  # type: ignore[no-untyped-def]
    x = torch.zeros(2, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=opset, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("N")},))
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                              dynamic_axes={"x": {0: "N"}})
    return path


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (False, 17), (True, 18), (True, 20)])
def test_torch_exporters_of_plain_torch_qcfs(dynamo, opset, tmp_path):  # type: ignore[no-untyped-def]
    """Legacy TorchScript (merges equal λ into one initializer + Identity) and dynamo exports both fuse."""
    net = _plain_net()
    canon = load_canonical(_export(net, tmp_path / "m.onnx", dynamo, opset))
    assert [n.op_type for n in canon.graph.node] == ["Conv", "QCFS", "Conv", "QCFS", "Flatten" if not dynamo
                                                     else "Reshape", "Gemm", "QCFS", "Gemm"]
    assert lambdas(canon) == pytest.approx([1.5, 2.0, 1.5])
    assert len({n.input[1] for n in qcfs_nodes(canon.graph.node)}) == 3  # one λ initializer per layer
    x = torch.randn(9, 1, 6, 6) * 2
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(run(canon, x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_legacy_and_dynamo_exports_agree(tmp_path):  # type: ignore[no-untyped-def]
    net = _plain_net()
    a = load_canonical(_export(net, tmp_path / "a.onnx", False, 17))
    b = load_canonical(_export(net, tmp_path / "b.onnx", True, 20))
    sa, sb = structure(a), structure(b)
    assert [s for s in sa if s[1] != "Flatten"] == [s for s in sb if s[1] != "Reshape"]
    np.testing.assert_allclose(run(a, X), run(b, X), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------- ReLU calibration


def test_relu_calibration_sets_percentile_lambda(tmp_path):  # type: ignore[no-untyped-def]
    from qcfs.data import DATASETS, load_split
    from qcfs.toolchain.calibrate import CALIB_SAMPLES

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 16, 16), nn.ReLU(), nn.Linear(16, 10), nn.Softmax(dim=1)).eval()
    path = _export(net, tmp_path / "relu.onnx", False, 17, size=8)
    with pytest.raises(Exception, match="--calibrate relu"):
        load_canonical(path)
    canon = load_canonical(path, calibrate="relu", dataset="digits", L=8, percentile=99.0)
    meta = get_metadata(canon)
    assert meta["qcfs.calibrated"] == "relu-p99" and meta["qcfs.L"] == "8"
    assert meta["qcfs.dropped_output_op"] == "Softmax"
    info = DATASETS["digits"]
    assert meta["qcfs.normalize.mean"] == f"[{info.mean[0]}]"
    # λ = 99th percentile of each layer's positive ReLU outputs on the (evenly spaced) training images
    images, _ = load_split("digits", "train")
    idx = np.unique(np.linspace(0, len(images) - 1, min(CALIB_SAMPLES, len(images))).round().astype(int))
    x = torch.from_numpy((images[idx] - info.mean[0]) / info.std[0]).float()
    acts = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach().numpy())) for m in net if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    want = [np.percentile(a[a > 0], 99.0) for a in acts]
    assert lambdas(canon) == pytest.approx(want, rel=1e-5)
    assert all(a.attribute[0].i == 8 for a in qcfs_nodes(canon.graph.node))
    onnx.checker.check_model(canon, full_check=True)
