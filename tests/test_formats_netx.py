"""lava-dl netx HDF5: the file stock netx loads, the qcfs netx run (our IF via a Network subclass) equal to the
NumPy runtime bit for bit, the stock netx run equal to the NumPy model of stock CUBA/LIF bit for bit, errors.
Lava runs are kept small (a few samples, T ≤ 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lava_nets
from lava_helpers import requires_lava

h5py = pytest.importorskip("h5py")

from qcfs.errors import ModelFileError  # noqa: E402
from qcfs.exporters.netx_export import NetxFormatError, export_netx, load_netx_intnet  # noqa: E402
from qcfs.intnet import IntNet, load_intnet  # noqa: E402
from qcfs.runtime.lava.compat import netx_available  # noqa: E402
from qcfs.runtime.netx_stock import simulate_netx_stock  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS_ONNX = ROOT / "models" / "digits" / "model.onnx"
def lava_test(f):  # type: ignore[no-untyped-def]
    """Marks and skips of a test that runs Lava with lava-dl's netx."""
    for mark in [*requires_lava, pytest.mark.skipif(not netx_available(), reason="lava-dl not installed")]:
        f = mark(f)
    return f


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory) -> tuple[IntNet, Path]:  # type: ignore[no-untyped-def]
    from qcfs import pipeline

    d = tmp_path_factory.mktemp("netx")
    net = load_intnet(pipeline.to_intnet(pipeline.canonical_onnx(DIGITS_ONNX)).save(d / "d.intnet.npz"))
    return net, export_netx(net, d / "d.net.h5")


def per_channel_net() -> IntNet:
    """lava_nets' digits net (stride-2 conv, dense) with per-channel v_init (IntNet v2)."""
    net = lava_nets.digits_net()
    for layer in net.if_layers:
        layer.v_init = (np.arange(layer.channels) * 3 + int(layer.threshold) // 4).astype(np.int64)
    return net


def digits_images(n: int) -> np.ndarray:
    from qcfs.data import load_split

    return load_split("digits", "test", None)[0][:n]


def test_file_layout_is_what_netx_reads(digits_file) -> None:  # type: ignore[no-untyped-def]
    net, path = digits_file
    with h5py.File(path, "r") as f:
        types = [f[f"layer/{k}/type"][0].decode() for k in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "flatten", "dense", "dense"]
        conv = f["layer/1"]
        assert {"shape", "weight", "bias", "stride", "padding", "dilation", "groups", "neuron"} <= set(conv)
        assert conv["weight"].dtype.kind == "i" and conv["weight"].shape == net.layers[0].synapses[0].weight.shape
        neuron = conv["neuron"]
        assert neuron["type"][0] == b"CUBA" and int(neuron["iDecay"][()]) == 4096 and int(neuron["vDecay"][()]) == 0
        assert int(neuron["vThMant"][()]) == int(net.layers[0].threshold) - 1  # v > θ−1 ⇔ v ≥ θ
        q = f["qcfs"]
        assert q.attrs["format"] == "qcfs-netx"
        assert np.array_equal(q["layers/1/v_init"][()], net.layers[0].v_init_per_channel())
        assert int(q["layers/1/threshold"][()]) == int(net.layers[0].threshold)
    back = load_netx_intnet(path)
    assert back.to_bytes() == net.to_bytes()


def test_per_channel_v_init_travels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = per_channel_net()
    path = export_netx(net, tmp_path / "p.net.h5")
    from qcfs.exporters.netx_export import read_qcfs_layers

    params = read_qcfs_layers(path)
    by_name = {p["name"]: p for p in params.values()}
    for layer in net.if_layers:
        assert np.array_equal(by_name[layer.name]["v_init"], layer.v_init_per_channel())
    assert load_netx_intnet(path).to_bytes() == load_intnet(net.save(tmp_path / "p.intnet.npz")).to_bytes()


def test_stock_numpy_model_single_neuron() -> None:
    """Lava LIF as netx configures it (du = 4095, dv = 0, bias_exp = 6): v = 2^6·Σ(a + b), spike when
    v > vThMant·2^6, hard reset to 0. Constant a = 3, vThMant = 4 (θ = 5): spikes at t = 2, 4, 6."""
    from qcfs.runtime.stock_snn import LavaCubaRule

    rule = LavaCubaRule(vth_mant=4, du=4095, dv=0, bias_mant=np.zeros(1, np.int64))
    st = rule.init((1, 1))
    spikes = [bool(rule.step(st, np.full((1, 1), 3, np.int64))[0, 0]) for _ in range(6)]
    assert spikes == [False, True] * 3
    leaky = LavaCubaRule(vth_mant=1000, du=4095, dv=2048, bias_mant=np.zeros(1, np.int64))  # v halves each step
    st = leaky.init((1, 1))
    for _ in range(2):
        leaky.step(st, np.full((1, 1), 64, np.int64))
    assert int(st["v"][0, 0]) == 4096 // 2 + 4096


def test_gap_is_real_on_digits(digits_file) -> None:  # type: ignore[no-untyped-def]
    net, path = digits_file
    x = digits_images(60)
    stock = simulate_netx_stock(path, x, [8], progress=False)
    exact = simulate(net, x, [8], progress=False)
    assert stock.spikes[8][net.layers[0].name].sum() > 0
    assert any(not np.array_equal(stock.spikes[8][k], exact.spikes[8][k]) for k in exact.spikes[8])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from qcfs.cli.%s import main; sys.exit(main(sys.argv[1:]))"
                           % args[0], *args[1:]], capture_output=True, text=True, timeout=300)


def test_errors_name_group_or_layer(tmp_path, digits_file) -> None:  # type: ignore[no-untyped-def]
    _, path = digits_file
    with pytest.raises(NetxFormatError, match="layer c3: 2 incoming synapses .*residual"):
        export_netx(lava_nets.residual_net(), tmp_path / "r.net.h5")
    foreign = tmp_path / "f.net.h5"
    with h5py.File(foreign, "w") as f:
        f.create_group("layer/0")
    r = _cli("run", "--model", str(foreign), "--dataset", "digits", "--T", "1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no qcfs/ group" in r.stderr.replace(
        "without a qcfs/ group", "no qcfs/ group")
    garbage = tmp_path / "g.net.h5"
    garbage.write_bytes(b"\x00" * 64)
    r = _cli("export", str(garbage), "--backend", "nir", "-o", str(tmp_path / "x.nir"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "HDF5" in r.stderr
    tampered = tmp_path / "t.net.h5"
    tampered.write_bytes(path.read_bytes())
    with h5py.File(tampered, "r+") as f:
        del f["qcfs/layers/2/v_init"]
    with pytest.raises(ModelFileError, match=r"qcfs/layers/2/v_init \(missing\) \(layer '.*'\) differs"):
        load_netx_intnet(tampered)
    r = _cli("export", str(path), "--backend", "netx", "-o", str(path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(300)
@lava_test
def test_stock_netx_loads_the_file(digits_file) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys; from qcfs.runtime.lava.compat import ensure_netx; netx = ensure_netx(); "
            "from lava.proc.lif.process import LIF; n = netx.hdf5.Network(net_config=sys.argv[1]); "
            "print(len(n), [type(b).__name__ for b in n.layers], all(isinstance(b.neuron, LIF) for b in n.layers), "
            "int(n.layers[0].neuron.vth.init))")
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(digits_file[1])], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    theta = int(digits_file[0].layers[0].threshold)
    assert r.stdout.split("\n")[0] == f"4 ['Conv', 'Conv', 'Dense', 'Dense'] True {theta - 1}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", ["digits-model", "per-channel"])
@lava_test
def test_qcfs_netx_run_equals_numpy(case, digits_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.runtime.lava.netx_backend import simulate_netx

    if case == "digits-model":
        net, path, x, Ts = *digits_file, digits_images(4), [1, 4, 8]
    else:
        net = per_channel_net()
        path, x, Ts = export_netx(net, tmp_path / "p.net.h5"), lava_nets.images(per_channel_net(), 5), [1, 2, 4]
    got = simulate_netx(path, x, Ts, semantics="qcfs", progress=False, timeout_s=240)
    ref = simulate(net, x, Ts, progress=False)
    assert got.backend == "netx-qcfs"
    for T in Ts:
        assert np.array_equal(got.logits[T], ref.logits[T]), T
        for name, c in ref.spikes[T].items():
            assert np.array_equal(got.spikes[T][name], c), (T, name)
    assert all(c.sum() > 0 for c in ref.spikes[Ts[-1]].values())


@pytest.mark.timeout(300)
@lava_test
def test_stock_netx_run_equals_stock_numpy_model(digits_file) -> None:  # type: ignore[no-untyped-def]
    from qcfs.runtime.lava.netx_backend import simulate_netx

    _, path = digits_file
    x, Ts = digits_images(3), [4, 8]
    got = simulate_netx(path, x, Ts, semantics="stock", progress=False, timeout_s=240)
    ref = simulate_netx_stock(path, x, Ts, progress=False)
    for T in Ts:
        assert np.array_equal(got.logits[T], ref.logits[T]), T
        for name, c in ref.spikes[T].items():
            assert np.array_equal(got.spikes[T][name], c), (T, name)
    assert all(c.sum() > 0 for c in ref.spikes[8].values())  # every layer spikes by T = 8
    assert len({tuple(r) for r in ref.logits[8]}) == 3  # samples differ


@pytest.mark.timeout(300)
@lava_test
def test_cli_backend_netx_counts_equal_numpy(digits_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, path = digits_file
    common = ["--dataset", "digits", "--T", "2,4", "--limit", "3", "--no-progress"]
    r = _cli("run", "--model", str(path), "--backend", "netx", *common, "--counts", str(tmp_path / "netx.npz"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "backend netx-qcfs" in r.stdout
    r = _cli("run", "--model", str(path), *common, "--counts", str(tmp_path / "np.npz"))
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(tmp_path / "netx.npz") as a, np.load(tmp_path / "np.npz") as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
