"""--pool separate: average pooling kept as an exact sum-pool stage (Synapse.pool) gives the same integers as
composing it into the next synapse, on every backend; IntNet version 3 stores it; netx/NIR refuse it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import graphs_by_hand
from lava_helpers import requires_lava
from qcfs.errors import QCFSError
from qcfs.intnet import IntNet, load_intnet
from qcfs.pipeline import canonical_onnx
from qcfs.runtime.numpy_snn import simulate
from qcfs.runtime.numpy_synapse import _pool_factor
from qcfs.toolchain.convert import convert

MODELS = Path(__file__).resolve().parents[1] / "models"
TS = [1, 2, 4, 8]


def _pair(model) -> tuple[IntNet, IntNet]:  # type: ignore[no-untyped-def]
    return convert(model, pool="compose"), convert(model, pool="separate")


def _images(net: IntNet, n: int = 6, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *net.input.shape))


def _assert_same(a, b, Ts=TS) -> None:  # type: ignore[no-untyped-def]
    for t in Ts:
        np.testing.assert_array_equal(a.logits[t], b.logits[t])
        assert set(a.spikes[t]) == set(b.spikes[t])
        for name in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][name], b.spikes[t][name], err_msg=name)


def _pooled(net: IntNet) -> list[tuple[str, int]]:
    return [(layer.name, j) for layer in net.layers for j, s in enumerate(layer.synapses) if s.pool is not None]


@pytest.fixture(scope="module")
def nets() -> dict[str, tuple[IntNet, IntNet]]:
    out = {d: _pair(canonical_onnx(MODELS / d / "model.pt")) for d in ("digits", "fashion-mnist", "cifar10")}
    out["vgg_block"] = _pair(graphs_by_hand.vgg_block())
    out["resnet_block"] = _pair(graphs_by_hand.resnet_block())
    return out


@pytest.mark.parametrize("name", ["digits", "fashion-mnist", "cifar10", "vgg_block", "resnet_block"])
def test_separate_equals_compose_numpy(nets, name: str) -> None:  # type: ignore[no-untyped-def]
    """Identical counts and logits (sync and pipelined), the same θ, and the pooled synapses' weights are
    exactly the small kernels the composed synapses factor into."""
    comp, sep = nets[name]
    assert _pooled(sep), "the network has an average pool of spikes: separate keeps it"
    assert not _pooled(comp)
    assert [l.threshold for l in comp.layers] == [l.threshold for l in sep.layers]
    x = _images(comp)
    a = simulate(comp, x, TS, progress=False)
    b = simulate(sep, x, TS, progress=False)
    _assert_same(a, b)
    assert sum(int(c.sum()) for c in a.spikes[8].values()) > 0
    if name in ("digits", "vgg_block"):  # chains: also the pipelined discipline (depth + 1 per pool stage)
        _assert_same(simulate(comp, x[:2], [4], timing="pipelined", progress=False),
                     simulate(sep, x[:2], [4], timing="pipelined", progress=False), [4])
    for layer_name, j in _pooled(sep):
        s_sep, s_comp = sep.layer(layer_name).synapses[j], comp.layer(layer_name).synapses[j]
        if s_sep.kind == "conv" and s_sep.pool.stride == s_sep.pool.kernel and s_comp.kind == "conv":
            small = _pool_factor(s_comp.weight, s_comp, *comp.layer(s_comp.source).shape[1:])
            if small is not None:
                np.testing.assert_array_equal(small, s_sep.weight)


def test_latency_counts_the_pool_stages(nets) -> None:  # type: ignore[no-untyped-def]
    from qcfs.report.resources import fit_report

    comp, sep = nets["vgg_block"]  # two pools in a chain
    assert sep.readout.depth == comp.readout.depth + 2
    rep = fit_report(sep)
    assert rep.pool_stages == 2 and rep.latency_steps_added == 2
    assert fit_report(comp).latency_steps_added == 0


@pytest.mark.parametrize("name", ["digits", "resnet_block", "vgg_block"])
def test_separate_torch_and_ort_equal_numpy(nets, name: str) -> None:  # type: ignore[no-untyped-def]
    from qcfs.exporters.snn_onnx import build_snn_onnx
    from qcfs.runtime.ort_snn import simulate_ort
    from qcfs.runtime.torch_snn import simulate_torch

    _, sep = nets[name]
    x = _images(sep)
    ref = simulate(sep, x, TS, progress=False)
    _assert_same(ref, simulate_torch(sep, x, TS, progress=False))
    _assert_same(ref, simulate_torch(sep, x, TS, progress=False, precision="float64"))
    for kernels in ("int8", "float32"):
        try:
            model = build_snn_onnx(sep, kernels)
        except ValueError:
            assert kernels == "float32"  # not provably exact in float32: refused, never inexact
            continue
        _assert_same(ref, simulate_ort(sep, x, TS, model=model, progress=False))


def test_intnet_v3_roundtrip_and_v2_still_loads(nets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    comp, sep = nets["resnet_block"]
    back = load_intnet(sep.save(tmp_path / "sep.intnet.npz"))
    assert [(l, j) for l, j in _pooled(back)] == _pooled(sep)
    assert back.header()["version"] == 3
    x = _images(sep, 3)
    _assert_same(simulate(sep, x, [4], progress=False), simulate(back, x, [4], progress=False), [4])
    # a network without pool stages is written as version 2, without the "pool" key, and loads as before
    hdr = comp.header()
    assert hdr["version"] == 2
    assert all("pool" not in sh for lh in hdr["layers"] for sh in lh["synapses"])
    arrays = dict(np.load(comp.save(tmp_path / "c.intnet.npz"), allow_pickle=False))
    arrays["__header__"] = np.frombuffer(json.dumps(hdr).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v2.npz", **arrays)
    old = load_intnet(tmp_path / "v2.npz")
    assert not _pooled(old)


def test_bad_pool_field_is_one_line(nets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, sep = nets["digits"]
    hdr = sep.header()
    layer, j = _pooled(sep)[0]
    lh = next(l for l in hdr["layers"] if l["name"] == layer)
    lh["synapses"][j]["pool"]["kernel"] = [0, 2]
    arrays = dict(np.load(sep.save(tmp_path / "s.npz"), allow_pickle=False))
    arrays["__header__"] = np.frombuffer(json.dumps(hdr).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(QCFSError) as err:
        load_intnet(tmp_path / "bad.npz")
    msg = str(err.value)
    assert "\n" not in msg and layer in msg and "pool kernel" in msg


def test_netx_refuses_in_one_line_and_nir_writes_sumpool2d(nets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("h5py")
    from qcfs.exporters.netx_export import export_netx

    _, sep = nets["digits"]
    layer, _ = _pooled(sep)[0]
    with pytest.raises(QCFSError) as err:
        export_netx(sep, tmp_path / "x.net.h5")
    assert "\n" not in str(err.value) and layer in str(err.value) and "--pool compose" in str(err.value)
    pytest.importorskip("nir")
    from qcfs.exporters.nir_export import export_nir
    from qcfs.exporters.nir_import import load_nir_intnet, read_nir

    for name in ("digits", "resnet_block"):
        _, sep = nets[name]
        path = export_nir(sep, tmp_path / f"{name}.nir")
        kinds = {type(n).__name__ for n in read_nir(path).nodes.values()}
        assert "SumPool2d" in kinds
        back = load_nir_intnet(path)
        assert _pooled(back) == _pooled(sep)
        x = _images(sep, 3)
        _assert_same(simulate(sep, x, [4], progress=False), simulate(back, x, [4], progress=False), [4])


def test_narrow_vgg16_separate_equals_compose() -> None:
    """The paper's VGG-16 shape (13 conv, five 2×2 pools, three FC) as a narrow 32×32 copy with random
    weights: separate pooling stores far fewer synapses and gives identical integers."""
    import torch

    from qcfs.exporters.onnx_export import export_module
    from qcfs.frontend.models import ModelConfig, build_model
    from qcfs.report.resources import fit_report

    torch.manual_seed(0)
    cfg = ModelConfig("vgg16", 3, 10, 32, L=4, lam_init=2.0)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg.onnx"
        export_module(build_model(cfg, width_div=16).eval(), {"config": cfg, "dataset": "cifar10"}, path)
        comp, sep = _pair(canonical_onnx(path))
    assert len(_pooled(sep)) == 5
    x = _images(comp, 3)
    _assert_same(simulate(comp, x, [2, 4], progress=False), simulate(sep, x, [2, 4], progress=False), [2, 4])
    assert fit_report(sep).totals["synapses"] < fit_report(comp).totals["synapses"]


@requires_lava[0]
@requires_lava[1]
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["digits", "resnet_block"])
def test_lava_equals_numpy_with_separate_pooling(nets, name: str) -> None:  # type: ignore[no-untyped-def]
    """Lava (pool stage = a Conv with weights 1 sending graded window sums) ≡ NumPy pipelined, bit for bit."""
    from qcfs.runtime.lava.backend import simulate_lava

    _, sep = nets[name]
    x = _images(sep, 4)
    ref = simulate(sep, x, [1, 2, 4], timing="pipelined", progress=False)
    res = simulate_lava(sep, x, [1, 2, 4], progress=False, timeout_s=280)
    _assert_same(ref, res, [1, 2, 4])


def test_pool_flag_refused_where_nothing_is_converted(nets, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main

    src = nets["digits"][1].save(tmp_path / "d.intnet.npz")
    for argv in ([str(src), "--backend", "lava", "--pool", "compose", "-o", str(tmp_path / "d.lava.npz")],
                 [str(MODELS / "digits" / "model.pt"), "--backend", "onnx", "--pool", "separate",
                  "-o", str(tmp_path / "d.onnx")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--pool" in err
    assert not (tmp_path / "d.lava.npz").exists() and not (tmp_path / "d.onnx").exists()
