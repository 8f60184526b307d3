"""Issue 13, classes 3 and 4 on the ONNX side: never a silently different network.

Each case here was accepted before (exit 0 with a network the user did not train, or int64-min weights);
now it converts exactly or is refused in one line naming node and op/input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from graphs_by_hand import Builder, calibrate_lambdas, images, normalized, run_ort
from qcfs.cli.export import main as export_main
from qcfs.intnet import load_intnet


def _small(tail=None, *, lam_shape=None, bn_var=None, reshape=None, conv_w=None):  # type: ignore[no-untyped-def]
    """conv-BN-QCFS-flatten-gemm on 3×4×4, with one thing changed."""
    b = Builder(shape=(3, 4, 4), seed=3)
    x = b.conv("input", 4, name="conv")
    x = b.bn(x, name="bn")
    if lam_shape is not None:
        x = b.node("QCFS", [x, b.init("lam", np.full(lam_shape, 1.5))], b.shape[x], "act", domain="qcfs",
                   L=4, shift=0.5)
    else:
        x = b.qcfs(x, 1.5, name="act")
    if reshape is not None:
        shape = b._name("shape")
        b.inits.append(numpy_helper.from_array(np.array(reshape, dtype=np.int64), shape))
        x = b.node("Reshape", [x, shape], (64,), "reshape")
    else:
        x = b.flatten(x)
    x = b.gemm(x, 5, name="fc")
    if tail is not None:
        x = b.node(tail[0], [x], (5,), "tail", **tail[1])
    model = b.model(x, "small")
    by_name = {t.name: t for t in model.graph.initializer}
    node = {n.name: n for n in model.graph.node}
    if bn_var is not None:
        var = by_name[node["bn"].input[4]]
        var.CopyFrom(numpy_helper.from_array(np.asarray(bn_var, np.float32), var.name))
    if conv_w is not None:
        w = by_name[node["conv"].input[1]]
        w.CopyFrom(numpy_helper.from_array(conv_w(numpy_helper.to_array(w)), w.name))
    return model


def _refused(model: onnx.ModelProto, tmp_path: Path, capsys, *needles: str) -> str:  # type: ignore[no-untyped-def]
    src, out = tmp_path / "m.onnx", tmp_path / "m.intnet.npz"
    onnx.save_model(model, str(src))
    capsys.readouterr()
    code = export_main([str(src), "--backend", "intnet", "-o", str(out)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def _converts(model: onnx.ModelProto, tmp_path: Path, capsys) -> Path:  # type: ignore[no-untyped-def]
    src, out = tmp_path / "m.onnx", tmp_path / "m.intnet.npz"
    onnx.save_model(model, str(src))
    code = export_main([str(src), "--backend", "intnet", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    return out


# --- class 4: only what provably preserves the function is dropped or accepted ----------------------------
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_the_batch_is_not_dropped(op: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _refused(_small((op, dict(axis=0))), tmp_path, capsys, f"'tail' is a {op}", "per-class")


@pytest.mark.parametrize("axis", [1, -1])
def test_per_class_softmax_is_dropped(axis: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    net = load_intnet(_converts(_small(("Softmax", dict(axis=axis))), tmp_path, capsys))
    assert net.num_classes == 5


@pytest.mark.parametrize("target", [[2, -1], [1, -1], [-1, 32], [0, 32], [4, 16]])
def test_reshape_that_is_not_a_flatten_is_refused(target, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = _small(reshape=target)
    # the Gemm after it no longer type-checks for some targets; the lifter must refuse before that matters
    _refused(model, tmp_path, capsys, "Reshape", "not a flatten")


@pytest.mark.parametrize("target", [[0, -1], [0, 64], [-1, 64]])
def test_flatten_reshapes_convert(target, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert load_intnet(_converts(_small(reshape=target), tmp_path, capsys)).layers[-1].synapses[0].kind == "dense"


def _per_channel_model(lams: dict[str, np.ndarray], decomposed: bool = False) -> onnx.ModelProto:
    """conv-QCFS-avgpool-grouped conv-QCFS-gemm-QCFS-gemm with the given λ arrays (names act1..act3)."""
    b = Builder(shape=(3, 8, 8), seed=4)

    def act(x: str, name: str) -> str:
        lam = b.init(name + "_lam", lams[name])
        if not decomposed:
            return b.node("QCFS", [x, lam], b.shape[x], name, domain="qcfs", L=4, shift=0.5)
        s = b.shape[x]
        y = b.node("Clip", [b.node("Div", [x, lam], s), b.init("lo", np.float32(0)), b.init("hi", np.float32(1))], s)
        y = b.node("Floor", [b.node("Add", [b.node("Mul", [y, b.init("L", np.float32(4))], s),
                                            b.init("phi", np.float32(0.5))], s)], s)
        return b.node("Mul", [b.node("Div", [y, b.init("L2", np.float32(4))], s), lam], s, name)

    x = act(b.conv("input", 6, name="conv1"), "act1")
    x = act(b.conv(b.avgpool(x, 2), 6, group=3, name="conv2"), "act2")
    x = act(b.gemm(b.flatten(x), 7, name="fc1"), "act3")
    return b.model(b.gemm(x, 5, name="fc2"), "per_channel")


def _calibrated_lams(decomposed: bool) -> dict[str, np.ndarray]:
    """Per-channel λ at each channel's 99th percentile (as training would spread them), in three spellings."""
    rng = np.random.default_rng(0)
    lams = {"act1": rng.uniform(0.5, 2, (1, 6, 1, 1)), "act2": rng.uniform(0.5, 2, (6, 1, 1)),
            "act3": rng.uniform(0.5, 2, (7,))}
    model = _per_channel_model(lams, decomposed)
    x = normalized(model, images(model, 64, seed=9))
    for name, lam in lams.items():
        node = next(n for n in model.graph.node if n.name == name)
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        pre_name = node.input[0] if not decomposed else next(
            n for n in model.graph.node if n.op_type == "Div" and n.input[1] == node.input[1]).input[0]
        probe.graph.output.extend([helper.make_tensor_value_info(pre_name, onnx.TensorProto.FLOAT, None)])
        pre = run_ort(probe, x)
        axis = tuple(i for i in range(pre.ndim) if i != 1)
        lams[name] = np.maximum(np.percentile(pre, 99, axis=axis), 0.05).reshape(lam.shape)
        model = _per_channel_model(lams, decomposed)
    return lams


@pytest.mark.parametrize("decomposed", [False, True])
def test_per_channel_lambda_converts_exactly(decomposed: bool, tmp_path: Path) -> None:
    """Per-channel λ (one per conv channel / dense unit) folds into the weights row by row and column by column:
    the float IF network reproduces onnxruntime, the integer one agrees on the argmax; no runtime change needed
    (θ = 1 after folding, one even integer θ per layer after Quantize)."""
    from qcfs.toolchain.ann_equivalent import ann_equivalent
    from qcfs.toolchain.convert import convert
    from qcfs.toolchain.importer import load_canonical

    model = _per_channel_model(_calibrated_lams(decomposed), decomposed)
    src = tmp_path / "pc.onnx"
    onnx.save_model(model, str(src))
    canon = load_canonical(src)
    assert [n.op_type for n in canon.graph.node].count("QCFS") == 3
    imgs = images(canon, 128, seed=5)
    ref = run_ort(model, normalized(model, imgs))
    assert np.array_equal(run_ort(canon, normalized(canon, imgs)), ref)
    fnet = convert(canon, mode="float")
    np.testing.assert_allclose(ann_equivalent(fnet, imgs), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    inet = convert(canon)
    assert (ann_equivalent(inet, imgs).argmax(1) == ref.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("shape,why", [((4,), "varies over space"), ((2,), "does not broadcast"),
                                       ((2, 4, 1, 1), "varies over the batch")])
def test_lambda_that_is_not_per_channel_is_refused(shape, why: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = _small(lam_shape=shape)
    _poison = next(t for t in model.graph.initializer if t.name.startswith("lam"))
    _poison.CopyFrom(numpy_helper.from_array(np.linspace(1, 2, int(np.prod(shape))).reshape(shape).astype(np.float32),
                                             _poison.name))
    _refused(model, tmp_path, capsys, "'act'", "λ", why)


def test_qcfs_without_lambda_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = _small()
    node = next(n for n in model.graph.node if n.op_type == "QCFS")
    del node.input[1:]
    _refused(model, tmp_path, capsys, "'act'", "lambda")


def test_int64_lambda_converts_exactly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """An integer λ is the same clip level as a float one: converted (not refused), with the same network."""
    from qcfs.toolchain.importer import load_canonical

    model = _small()
    node = next(n for n in model.graph.node if n.op_type == "QCFS")
    init = next(t for t in model.graph.initializer if t.name == node.input[1])
    init.CopyFrom(numpy_helper.from_array(np.array(2, dtype=np.int64), init.name))
    src = tmp_path / "int_lam.onnx"
    onnx.save_model(model, str(src))
    init.CopyFrom(numpy_helper.from_array(np.array(2, dtype=np.float32), init.name))
    ref = tmp_path / "float_lam.onnx"
    onnx.save_model(model, str(ref))
    a, b = load_canonical(src), load_canonical(ref)
    lam = [numpy_helper.to_array(t) for t in a.graph.initializer if t.name.endswith(".lam")]
    assert len(lam) == 1 and lam[0].dtype == np.float32 and float(lam[0]) == 2.0
    x = normalized(b, images(b, 8))
    assert np.array_equal(run_ort(a, x), run_ort(b, x))


def test_int64_and_string_weights_are_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _refused(_small(conv_w=lambda w: np.rint(w * 10).astype(np.int64)), tmp_path, capsys,
             "'conv' (Conv) input 1", "INT64", "must be float")
    model = _small()
    model.graph.initializer.append(helper.make_tensor("junk", onnx.TensorProto.STRING, [1], [b"x"]))
    node = next(n for n in model.graph.node if n.name == "fc")
    node.input.append("junk")  # Gemm's bias: a string
    src = tmp_path / "s.onnx"
    onnx.save_model(model, str(src))
    capsys.readouterr()
    assert export_main([str(src), "--backend", "intnet", "-o", str(tmp_path / "s.intnet.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- class 3: invalid values never reach the weights ------------------------------------------------------
def test_negative_batchnorm_variance_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    line = _refused(_small(bn_var=[1.0, -0.5, 1.0, 1.0]), tmp_path, capsys, "'bn' (BatchNormalization)",
                    "variance", "channel 1")
    assert "int64" not in line


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(bad: float, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    def poison(w: np.ndarray) -> np.ndarray:
        w = w.copy()
        w.flat[3] = bad
        return w

    _refused(_small(conv_w=poison), tmp_path, capsys, "'conv' (Conv) input 1", "non-finite")


# --- class 4: graphs exported without constant folding -------------------------------------------------
def _legacy_unfolded(path: Path) -> None:
    import torch
    from torch import nn

    class Q(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lam = nn.Parameter(torch.tensor(1.5))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.floor(torch.clamp(x / self.lam, 0, 1) * 4 + 0.5) / 4 * self.lam

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c, self.bn, self.q = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), Q()
            self.p, self.fc = nn.AvgPool2d(2), nn.Linear(64, 3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            h = self.p(self.q(self.bn(self.c(x))))
            return self.fc(h.view(h.size(0), -1))

    torch.manual_seed(0)
    m = M().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.rand(2, 1, 8, 8),), str(path), dynamo=False, do_constant_folding=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})


def test_graph_without_constant_folding_canonicalises(tmp_path: Path) -> None:
    from qcfs.toolchain.importer import load_canonical

    src = tmp_path / "nofold.onnx"
    _legacy_unfolded(src)
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    assert {"Cast", "Shape", "Gather", "Concat", "Constant"} <= set(ops)  # what the exporter left unfolded
    canon = load_canonical(src)
    canon_ops = [n.op_type for n in canon.graph.node]
    assert canon_ops.count("QCFS") == 1 and "Shape" not in canon_ops and "Cast" not in canon_ops
    lam = next(t for t in canon.graph.initializer if t.name.endswith(".lam"))
    assert float(numpy_helper.to_array(lam)) == pytest.approx(1.5)  # λ kept as the clip level, not folded
    x = np.random.default_rng(0).uniform(0, 1, (6, 1, 8, 8))
    want = run_ort(onnx.load(str(src)), x)
    assert np.allclose(run_ort(canon, x), want, atol=1e-5)
