"""The public API (qcfs.convert/load/Network): a torch module defined here, converted in memory, gives the
integers `qcfs-run` gives for the same model; calibrate equals `qcfs-export --snn-calib`; save/load round
trips; bad input is one QCFSError line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import qcfs
from qcfs.cli import export as export_cli
from qcfs.cli import run as run_cli
from qcfs.data import load_split


class TinyQCFSNet(nn.Module):
    """A user's own network (not a zoo model): conv-BN-QCFS, average pool, QCFS hidden layer, readout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act1 = qcfs.QCFS(L=4, lam_init=1.0)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.act2 = qcfs.QCFS(L=4, lam_init=1.5)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act1(self.bn(self.conv(x))))
        return self.fc2(self.act2(self.fc1(torch.flatten(x, 1))))


@pytest.fixture(scope="module")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    return load_split("digits", "test")


@pytest.fixture(scope="module")
def user_net() -> qcfs.Network:
    torch.manual_seed(0)
    model = TinyQCFSNet()
    with torch.no_grad():  # non-trivial BN statistics, so folding BN is exercised
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    return qcfs.convert(model, example_input=torch.zeros(1, 1, 8, 8))


def test_user_module_equals_qcfs_run(user_net: qcfs.Network, digits_test, tmp_path: Path) -> None:
    images, labels = digits_test
    res = user_net.simulate(images, T=[4])
    onnx_path = user_net.save(tmp_path / "tiny.onnx")
    counts = tmp_path / "counts.npz"
    assert run_cli.main(["--model", str(onnx_path), "--dataset", "digits", "--T", "4", "--counts", str(counts),
                         "--no-progress"]) == 0
    cli = dict(np.load(counts))
    api = res.counts_arrays()
    assert sorted(cli) == sorted(api)
    for key in api:
        assert np.array_equal(cli[key], api[key]), key
    assert sum(int(v.sum()) for k, v in api.items() if k != "logits") > 0, "no spikes: the comparison is vacuous"
    assert api["logits"].dtype == np.int64 and np.any(api["logits"] != 0)
    acc = res.accuracy(labels)
    assert list(acc) == [4] and acc[4] == float(np.mean(api["logits"].argmax(1) == labels))


def test_proto_and_path_convert_alike(user_net: qcfs.Network, digits_test, tmp_path: Path) -> None:
    images = digits_test[0][:20]
    path = user_net.save(tmp_path / "tiny.onnx")
    ref = user_net.simulate(images, T=[1, 2]).counts_arrays()
    for model in (path, str(path), user_net.canonical_onnx):
        got = qcfs.convert(model).simulate(images, T=[1, 2]).counts_arrays()
        assert all(np.array_equal(ref[k], got[k]) for k in ref)


@pytest.mark.parametrize("fmt", ["intnet", "nir", "snn-onnx", "lava"])
def test_save_load_round_trip(user_net: qcfs.Network, digits_test, tmp_path: Path, fmt: str) -> None:
    images = digits_test[0][:16]
    path = user_net.save(tmp_path / f"tiny{qcfs.api.SAVE_FORMATS[fmt]}")
    back = qcfs.load(path)
    assert back.canonical_onnx is None and back.source == str(path)
    ref, got = user_net.simulate(images, T=[3]).counts_arrays(), back.simulate(images, T=[3]).counts_arrays()
    assert all(np.array_equal(ref[k], got[k]) for k in ref)
    with pytest.raises(qcfs.QCFSError, match="refusing to overwrite an input"):
        back.save(path)


def test_load_mode_and_normalize_as_qcfs_run(user_net: qcfs.Network, digits_test, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """qcfs.load(path, mode=, normalize=) is what `qcfs-run --model --mode --normalize` runs: same counts, and
    the same one-line refusal for a mode the exported file does not hold."""
    images = digits_test[0][:16]
    onnx_path = user_net.save(tmp_path / "tiny.onnx")
    mean_std = ((0.25,), (0.5,))
    net = qcfs.load(onnx_path, mode="float", normalize=mean_std)
    assert net.mode == "float" and net.intnet.input.mean == (0.25,) and net.intnet.input.std == (0.5,)
    counts = tmp_path / "counts.npz"
    assert run_cli.main(["--model", str(onnx_path), "--dataset", "digits", "--T", "2", "--mode", "float",
                         "--normalize", "0.25,0.5", "--limit", "16", "--subset", "prefix", "--counts", str(counts),
                         "--no-progress"]) == 0
    cli, api = dict(np.load(counts)), net.simulate(images, T=[2]).counts_arrays()
    assert sorted(cli) == sorted(api) and all(np.array_equal(cli[k], api[k]) for k in api)
    intnet_path = user_net.save(tmp_path / "tiny.intnet.npz")
    with pytest.raises(qcfs.QCFSError) as info:
        qcfs.load(intnet_path, mode="float")
    capsys.readouterr()
    assert run_cli.main(["--model", str(intnet_path), "--dataset", "digits", "--mode", "float"]) == 2
    err = capsys.readouterr().err
    assert err == f"qcfs-run: error: {info.value}\n" and "is a int-mode IntNet" in err, err


def test_calibrate_equals_export_cli(tmp_path: Path) -> None:
    from qcfs.toolchain.snn_calib.sampling import calibration_images01

    model = Path(__file__).resolve().parent.parent / "models" / "digits" / "model.onnx"
    out = tmp_path / "cal.intnet.npz"
    assert export_cli.main([str(model), "--backend", "intnet", "-o", str(out), "--snn-calib", "bias",
                            "--target-T", "2", "--dataset", "digits", "--calib-samples", "64", "--no-progress"]) == 0
    net = qcfs.convert(model)
    images, labels, _ = calibration_images01("digits", None, net.input_shape, 64, 0)
    cal = net.calibrate(images, target_T=2, method="bias", labels=labels)
    cli = qcfs.load(out).intnet
    assert cal is not net and net.intnet.metadata.get("snn_calibration") is None
    assert cal.intnet.metadata["snn_calibration"]["method"] == cli.metadata["snn_calibration"]["method"]
    for a, b in zip(cal.intnet.layers, cli.layers):
        assert np.array_equal(a.bias, b.bias) and np.array_equal(a.v_init_per_channel(), b.v_init_per_channel())
    assert any(not np.array_equal(a.bias, b.bias) for a, b in zip(cal.intnet.layers, net.intnet.layers))


@pytest.mark.parametrize("call, needle", [
    (lambda n: qcfs.convert(TinyQCFSNet()), "needs example_input"),
    (lambda n: qcfs.convert(nn.Sequential(nn.Linear(4, 2)), example_input=torch.zeros(1, 1, 2, 2)),
     "no QCFS activation"),
    (lambda n: qcfs.convert(42), "cannot convert a int"),
    (lambda n: n.simulate(np.zeros((2, 1, 8, 8), np.float32), T=[0]), "positive integer"),
    (lambda n: n.simulate(np.zeros((2, 3, 8, 8), np.float32)), "images must be float [N, 1, 8, 8]"),
    (lambda n: n.simulate(np.full((2, 1, 8, 8), 255.0, np.float32)), "in [0, 1]"),
    (lambda n: n.simulate(np.zeros((2, 1, 8, 8), np.float32), backend="loihi"), "backend must be"),
    (lambda n: n.simulate(np.zeros((2, 1, 8, 8), np.float32), speed=3), "unknown option(s) speed"),
    (lambda n: n.save("model.bin"), "cannot tell the format"),
    (lambda n: n.calibrate(np.zeros((2, 1, 8, 8), np.float32), target_T=2), "pass their labels"),
    (lambda n: n.calibrate(np.zeros((2, 1, 8, 8), np.float32), target_T=0, method="bias"), "target_T"),
    (lambda n: qcfs.train(epochs=1, speed=2), "unknown option(s) speed"),
])
def test_bad_input_is_one_line(user_net: qcfs.Network, call, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(qcfs.QCFSError) as info:
        call(user_net)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg, msg


def test_public_names() -> None:
    """What qcfs/__init__.py's docstring promises is there."""
    for name in qcfs.__all__:
        assert getattr(qcfs, name) is not None, name
    assert qcfs.QCFS.__name__ == "QCFS"


def test_fit_report_is_the_resource_model(user_net: qcfs.Network) -> None:
    """Network.fit_report is qcfs.report.resources.fit_report on the network it holds."""
    from qcfs.report.resources import fit_report

    got, want = user_net.fit_report("loihi2", chips=1), fit_report(user_net.intnet, "loihi2", 1)
    assert got.totals == want.totals and got.chips_needed == want.chips_needed >= 1
    assert got.fits and got.refusal is None  # a small digits net fits one chip
    assert got.totals["synapses"] > 0 and got.totals["neurons"] >= sum(
        int(np.prod(layer.shape)) for layer in user_net.intnet.if_layers)
