"""NIR: export, lossless import (identical IntNet), the NumPy NIR interpreter (qcfs semantics = NumPy runtime bit
for bit, stock semantics as the NIR spec says), CLI round trips and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lava_nets

nir = pytest.importorskip("nir")

from qcfs.errors import ModelFileError  # noqa: E402
from qcfs.exporters.nir_export import NirFormatError, export_nir, to_nir_graph  # noqa: E402
from qcfs.exporters.nir_import import load_nir_intnet  # noqa: E402
from qcfs.intnet import IntNet, load_intnet  # noqa: E402
from qcfs.runtime.nir_stock import simulate_nir, strip_qcfs_metadata  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS_ONNX = ROOT / "models" / "digits" / "model.onnx"


@pytest.fixture(scope="module")
def digits_net() -> IntNet:
    from qcfs import pipeline

    return pipeline.to_intnet(pipeline.canonical_onnx(DIGITS_ONNX))


def residual_pc() -> IntNet:
    """lava_nets' residual net (delays, grouped conv, skip into the readout) with per-channel v_init and the
    one asymmetric padding made symmetric (NIR cannot pad asymmetrically; same output shape)."""
    net = lava_nets.residual_net()
    net.layer("c4").synapses[0].padding = (1, 1, 1, 1)
    for layer in net.if_layers:
        layer.v_init = (np.arange(layer.channels) * 7 + int(layer.threshold) // 3).astype(np.int64)
    return net


def assert_identical(a: IntNet, b: IntNet) -> None:
    assert a.header() == b.header()
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert np.asarray(la.bias).dtype == np.asarray(lb.bias).dtype and np.array_equal(la.bias, lb.bias), la.name
        assert la.per_channel_v_init == lb.per_channel_v_init
        assert np.array_equal(la.v_init_per_channel(), lb.v_init_per_channel()), la.name
        for sa, sb in zip(la.synapses, lb.synapses, strict=True):
            assert sa.weight.shape == sb.weight.shape and sa.weight.dtype == sb.weight.dtype, la.name
            assert np.array_equal(sa.weight, sb.weight), la.name
    assert a.to_bytes() == b.to_bytes()


def saved(net: IntNet, tmp_path: Path) -> IntNet:
    """The net as every backend sees it: through its own file (int64 arrays)."""
    return load_intnet(net.save(tmp_path / "ref.intnet.npz"))


@pytest.mark.parametrize("which", ["digits", "residual"])
def test_round_trip_is_identical(which, digits_net, tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = saved(digits_net if which == "digits" else residual_pc(), tmp_path)
    path = export_nir(net, tmp_path / "m.nir")
    graph = nir.read(path, type_check=False)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Input", "IF", "I", "Output"} <= kinds
    assert ("Conv2d" in kinds) and ("Affine" in kinds)
    if which == "residual":
        assert "Delay" in kinds
        preds = [b for _, b in graph.edges]
        assert preds.count("c3") == 2 and preds.count("out") == 2  # residual adds: two edges into one node
        assert net.layer("c1").per_channel_v_init
    assert_identical(net, load_nir_intnet(path))


def test_if_nodes_carry_qcfs_semantics(digits_net) -> None:  # type: ignore[no-untyped-def]
    graph = to_nir_graph(digits_net)
    layer = digits_net.if_layers[0]
    node = graph.nodes[layer.name]
    assert type(node).__name__ == "IF"
    assert np.all(node.v_threshold == layer.threshold) and np.all(node.r == 1) and np.all(node.v_reset == 0)
    assert node.metadata["qcfs_reset"] == "subtract" and node.metadata["qcfs_dt"] == 1
    assert np.array_equal(node.metadata["qcfs_v_init"], layer.v_init_per_channel())
    assert graph.metadata["qcfs_format"] == "qcfs-nir"
    w = graph.nodes[f"{layer.name}.syn0"].weight
    assert np.array_equal(w, np.rint(w))  # integer weights


@pytest.mark.parametrize("which", ["digits", "residual"])
def test_qcfs_interpretation_equals_numpy_runtime(which, digits_net, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The interpreter used for the stock numbers reproduces the reference exactly under qcfs semantics."""
    from qcfs.data import load_split

    net = digits_net if which == "digits" else residual_pc()
    x = load_split("digits", "test", None)[0][:40] if which == "digits" else lava_nets.images(net, 12)
    Ts = [1, 2, 4, 8]
    ref = simulate(net, x, Ts, progress=False)
    got = simulate_nir(export_nir(net, tmp_path / "m.nir"), x, Ts, semantics="qcfs", progress=False)
    for T in Ts:
        assert np.array_equal(got.logits[T], ref.logits[T]), T
        for name, c in ref.spikes[T].items():
            assert np.array_equal(got.spikes[T][name], c), (T, name)
    assert ref.spikes[8][net.if_layers[0].name].sum() > 0


def test_stock_reader_graph_runs_with_stock_semantics(digits_net, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A graph without any qcfs metadata (what a stock reader gets) runs with NIR's own IF semantics: spike on
    v > θ, reset to v_reset, v(0) = 0; checked on one neuron, and it differs from qcfs on the digits model."""
    from qcfs.data import load_split

    g = strip_qcfs_metadata(to_nir_graph(digits_net))
    assert not g.metadata and all(not any(k.startswith("qcfs_") for k in (n.metadata or {})) for n in g.nodes.values())
    path = tmp_path / "stock.nir"
    nir.write(path, g)
    with pytest.raises(ModelFileError, match="without qcfs metadata"):
        load_nir_intnet(path)
    x = load_split("digits", "test", None)[0][:30]
    stock = simulate_nir(path, x, [4, 8], input_spec=digits_net.input, progress=False)
    qcfs = simulate(digits_net, x, [4, 8], progress=False)
    assert any(not np.array_equal(stock.spikes[8][k], qcfs.spikes[8][k]) for k in qcfs.spikes[8])
    # one IF neuron, constant input 3, θ = 5: v = 3, 6>5 spike->0, 3, 6 spike, ... -> spikes at t = 2, 4, 6, 8
    from qcfs.runtime.stock_snn import NirIFRule

    rule = NirIFRule(r=np.ones(1), v_threshold=np.full(1, 5.0), v_reset=np.zeros(1))
    st = rule.init((1, 1))
    spikes = [bool(rule.step(st, np.full((1, 1), 3))[0, 0]) for _ in range(8)]
    assert spikes == [False, True] * 4
    rule = NirIFRule(r=np.ones(1), v_threshold=np.full(1, 6.0), v_reset=np.zeros(1))  # v = 6 is not > 6
    st = rule.init((1, 1))
    assert [bool(rule.step(st, np.full((1, 1), 3))[0, 0]) for _ in range(3)] == [False, False, True]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from qcfs.cli.%s import main; sys.exit(main(sys.argv[1:]))"
                           % args[0], *args[1:]], capture_output=True, text=True, timeout=300)


def test_cli_export_run_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    nirp, back, ref = tmp_path / "d.nir", tmp_path / "back.intnet.npz", tmp_path / "d.intnet.npz"
    assert _cli("export", str(DIGITS_ONNX), "--backend", "intnet", "-o", str(ref)).returncode == 0
    r = _cli("export", str(ref), "--backend", "nir", "-o", str(nirp))
    assert r.returncode == 0, r.stderr
    r = _cli("export", str(nirp), "--backend", "intnet", "-o", str(back))
    assert r.returncode == 0, r.stderr
    assert_identical(load_intnet(ref), load_intnet(back))
    outs = []
    for m in (ref, nirp):
        j = tmp_path / f"{m.name}.json"
        r = _cli("run", "--model", str(m), "--dataset", "digits", "--T", "1,4", "--limit", "50", "--no-progress",
                 "--json", str(j))
        assert r.returncode == 0, r.stderr
        outs.append(__import__("json").loads(j.read_text())["results"])
    assert outs[0] == outs[1]


def test_errors_are_one_line(tmp_path, digits_net) -> None:  # type: ignore[no-untyped-def]
    garbage = tmp_path / "g.nir"
    garbage.write_text("not hdf5")
    r = _cli("run", "--model", str(garbage), "--dataset", "digits", "--T", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not a readable NIR graph" in r.stderr
    foreign = tmp_path / "f.nir"
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}),
                            "a": nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
                            "lif": nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
                            "output": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("input", "a"), ("a", "lif"), ("lif", "output")])
    nir.write(foreign, g)
    r = _cli("export", str(foreign), "--backend", "intnet", "-o", str(tmp_path / "x.intnet.npz"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "qcfs metadata" in r.stderr
    with pytest.raises(ModelFileError, match="node lif: type LIF"):
        simulate_nir(foreign, np.zeros((1, 1, 2, 2)), [1], input_spec=digits_net.input)
    # tampered: a threshold that disagrees with the header names the node
    graph = to_nir_graph(digits_net)
    name = digits_net.if_layers[1].name
    graph.nodes[name].v_threshold = graph.nodes[name].v_threshold + 1
    nir.write(tmp_path / "t.nir", graph)
    with pytest.raises(ModelFileError, match=f"node {name}: v_threshold"):
        load_nir_intnet(tmp_path / "t.nir")
    # a network NIR cannot express: asymmetric padding names the layer
    with pytest.raises(NirFormatError, match="layer c4: asymmetric padding"):
        to_nir_graph(lava_nets.residual_net())
