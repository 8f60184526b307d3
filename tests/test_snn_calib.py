"""SNN calibration (qcfs.toolchain.snn_calib): invariants of every method, determinism, bit widths, the
IntNet v2 round trip, bit-exactness of calibrated networks across backends, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lava_nets
from lava_helpers import lava_available
from qcfs.errors import HardwareFitError
from qcfs.intnet import HardwareProfile, load_intnet
from qcfs.runtime.numpy_snn import simulate
from qcfs.toolchain.snn_calib import METHODS, calibrate
from qcfs.toolchain.snn_calib.trains import layer_current, run_if

T_CAL = 2


def _calibrated(method: str, make=lava_nets.residual_net, T: int = T_CAL, n: int = 48):  # type: ignore[no-untyped-def]
    net = make()
    return net, *calibrate(net, lava_nets.images(net, n, seed=1), T=T, method=method, progress=False)


@pytest.mark.parametrize("method", [m for m in METHODS if not m.startswith("neuron")])  # neuron: test_neuron_calib
def test_method_changes_only_bias_and_v_init_and_lowers_the_rate_error(method: str) -> None:
    net, cal, report = _calibrated(method)
    assert len(cal.layers) == len(net.layers)
    for a, b in zip(net.layers, cal.layers):
        assert a.threshold == b.threshold and a.shape == b.shape and a.depth == b.depth
        for sa, sb in zip(a.synapses, b.synapses):
            assert np.array_equal(sa.weight, sb.weight)  # calibration never changes weights
        assert np.asarray(b.bias).dtype.kind == "i"
        if b.kind == "if":
            assert b.v_init_per_channel().shape == (b.channels,)
            assert np.array_equal(b.v_init_per_channel(), np.rint(b.v_init_per_channel()))
    if method.startswith("bias"):
        assert all(np.all(b.v_init_per_channel() == a.v_init_per_channel()) for a, b in zip(net.if_layers, cal.if_layers))
    else:
        assert all(np.array_equal(a.bias, b.bias) for a, b in zip(net.if_layers, cal.if_layers))
    # the per-channel search includes "no shift", so no layer's mean rate error can grow
    for r in report.layers:
        assert r.mean_abs_after <= r.mean_abs_before + 1e-12, r
    assert any(r.mean_abs_after < r.mean_abs_before for r in report.layers)
    meta = cal.metadata["snn_calibration"]
    assert meta["method"] == method and meta["target_T"] == T_CAL and meta["samples"] == 48
    assert "snn_calibration" not in net.metadata  # the input network is untouched


def test_calibration_is_deterministic() -> None:
    _, a, _ = _calibrated("potential-snn")
    _, b, _ = _calibrated("potential-snn")
    assert a.to_bytes() == b.to_bytes()  # metadata included: it records no wall time


def test_calibration_trains_equal_the_numpy_runtime() -> None:
    """The layer-major trains calibration reasons about are exactly what the runtime simulates."""
    net, cal, _ = _calibrated("potential-snn")
    x = lava_nets.images(net, 16, seed=5)
    from qcfs.semantics import encode_input

    enc = encode_input(x, net.input.mean, net.input.std, net.input.scale, net.input.bits).transpose(0, 2, 3, 1)
    trains: dict[str, np.ndarray] = {}
    counts = {}
    for layer in cal.if_layers:
        cur = layer_current(cal, layer, trains, np.ascontiguousarray(enc))
        tr, cnt = run_if(cur, 3, np.asarray(layer.bias), layer.v_init_per_channel().astype(np.int64),
                         int(layer.threshold), cal.profile.membrane_bits)
        trains[layer.name] = tr
        counts[layer.name] = cnt.reshape(len(x), -1).sum(axis=1)
    ref = simulate(cal, x, [3], progress=False)
    for name, c in counts.items():
        assert np.array_equal(c, ref.spikes[3][name]), name


def test_calibrated_network_round_trips_as_version_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, cal, _ = _calibrated("potential")
    path = cal.save(tmp_path / "c.intnet.npz")
    back = load_intnet(path)
    assert json.loads(np.load(path)["__header__"].tobytes())["version"] >= 2  # per-channel v_init: version 2 on
    for a, b in zip(cal.layers, back.layers):
        assert np.array_equal(np.asarray(a.bias), np.asarray(b.bias))
        if a.kind == "if":
            assert np.array_equal(a.v_init_per_channel(), b.v_init_per_channel())
    assert back.metadata["snn_calibration"]["method"] == "potential"
    x = lava_nets.images(cal, 8)
    r1, r2 = simulate(cal, x, [1, 2], progress=False), simulate(back, x, [1, 2], progress=False)
    assert all(np.array_equal(r1.logits[t], r2.logits[t]) for t in (1, 2))


def test_version_1_files_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from intnet_mutations import read, write

    net = lava_nets.digits_net()
    header, arrays = read(net.to_bytes())
    header["version"] = 1
    path = tmp_path / "v1.intnet.npz"
    path.write_bytes(write(header, arrays))
    back = load_intnet(path)
    assert [lay.v_init for lay in back.if_layers] == [lay.v_init for lay in net.if_layers]


def test_bias_that_does_not_fit_its_bit_width_names_the_layer() -> None:
    net = lava_nets.digits_net()
    net.profile = HardwareProfile(bias_bits=2)  # [-2, 1]: any real correction overflows
    with pytest.raises(HardwareFitError, match=r"layer \w+: calibrated bias .* does not fit 2-bit"):
        calibrate(net, lava_nets.images(net, 32), T=1, method="bias", progress=False)


def test_v_init_that_does_not_fit_the_membrane_names_the_layer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qcfs.toolchain.snn_calib import methods

    class Overshoot(methods.CalibrationMethod):
        """(test) shifts every v_init past the top of a 24-bit membrane."""

        name = "overshoot"

        def solve(self, p):  # type: ignore[no-untyped-def]
            return np.zeros(p.channels, np.int64), np.full(p.channels, 1 << 24, np.int64)

    monkeypatch.setitem(methods.METHODS, "overshoot", Overshoot)
    net = lava_nets.digits_net()
    with pytest.raises(HardwareFitError, match=r"layer c1: calibrated v_init .* does not fit the 24-bit"):
        calibrate(net, lava_nets.images(net, 8), T=1, method="overshoot", progress=False)


def test_calibrated_networks_are_bit_exact_on_torch() -> None:
    from qcfs.runtime.torch_snn import simulate_torch

    for make in (lava_nets.digits_net, lava_nets.residual_net):
        _, cal, _ = _calibrated("potential-snn", make=make)
        x = lava_nets.images(cal, 12, seed=3)
        a = simulate(cal, x, [1, 2, 4], progress=False)
        b = simulate_torch(cal, x, [1, 2, 4], progress=False)
        for t in (1, 2, 4):
            assert np.array_equal(a.logits[t], b.logits[t])
            assert all(np.array_equal(a.spikes[t][k], b.spikes[t][k]) for k in a.spikes[t])
        pipelined = simulate(cal, x, [1, 2, 4], timing="pipelined", progress=False)
        for t in (1, 2, 4):
            assert np.array_equal(a.logits[t], pipelined.logits[t])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("make", [lava_nets.digits_net, lava_nets.residual_net], ids=lambda f: f.__name__)
@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="lava-nc not installed (scripts/setup_env.sh installs it)")
def test_calibrated_networks_are_bit_exact_on_lava(make, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Per-channel v_init and shifted biases reach Lava's IF processes unchanged: counts ≡ NumPy."""
    from qcfs.exporters.lava_export import export_lava
    from qcfs.runtime.lava.backend import simulate_lava

    _, cal, _ = _calibrated("potential-snn", make=make)
    assert any(np.ptp(lay.v_init_per_channel()) > 0 for lay in cal.if_layers)  # really per channel
    x = lava_nets.images(cal, 10, seed=4)
    path = export_lava(cal, tmp_path / "cal.lava.npz")
    res = simulate_lava(path, x, [1, 2, 4], progress=False, timeout_s=200)
    ref = simulate(cal, x, [1, 2, 4], progress=False)
    for t in (1, 2, 4):
        assert np.array_equal(res.logits[t], ref.logits[t])
        assert all(np.array_equal(res.spikes[t][k], ref.spikes[t][k]) for k in ref.spikes[t])


# --- CLI --------------------------------------------------------------------------------------------------
REPO_MODEL = Path(__file__).resolve().parent.parent / "models" / "digits" / "model.onnx"


@pytest.fixture(scope="module")
def paper_start_digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits cnn trained with the paper's fixed λ start (8): at chance at T = 1 before calibration."""
    from qcfs.frontend.train import TrainConfig, train_model
    from qcfs.pipeline import checkpoint_to_onnx

    d = tmp_path_factory.mktemp("paper-start")
    train_model(TrainConfig(model="cnn", dataset="digits", output=str(d / "cnn.pt"), epochs=15, lam_init=8.0,
                            lam_from_data=False, progress=False), log=lambda _: None)
    return checkpoint_to_onnx(d / "cnn.pt", d / "cnn.onnx")


def _one_line_error(capsys, main, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "intnet", "--snn-calib", "potential", "--dataset", "digits"], "needs --target-T"),
    (["--backend", "onnx", "--snn-calib", "potential", "--target-T", "2", "--dataset", "digits"], "--backend intnet, lava or snn-onnx"),
    (["--backend", "intnet", "--snn-calib", "potential", "--target-T", "2"], "needs --dataset"),
    (["--backend", "intnet", "--snn-calib", "nope", "--target-T", "2", "--dataset", "digits"], "invalid choice"),
    (["--backend", "intnet", "--target-T", "2"], "--target-T applies to --snn-calib only"),
    (["--backend", "intnet", "--snn-calib", "bias", "--target-T", "0", "--dataset", "digits"], "--target-T in 1..1024"),
    (["--backend", "intnet", "--snn-calib", "bias", "--target-T", "2", "--dataset", "digits", "--calib-samples", "0"],
     "--calib-samples"),
    (["--backend", "intnet", "--snn-calib", "bias", "--target-T", "2", "--dataset", "digits", "--mode", "float"],
     "integer networks only"),
])
def test_export_calibration_flags_fail_in_one_line(capsys, tmp_path, argv, needle) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli import export as export_cli

    _one_line_error(capsys, export_cli.main, [str(REPO_MODEL), "-o", str(tmp_path / "x.intnet.npz"), *argv], needle)
    assert not (tmp_path / "x.intnet.npz").exists()


def test_export_and_run_a_calibrated_digits_network(capsys, tmp_path, paper_start_digits_onnx) -> None:  # type: ignore[no-untyped-def]
    """`qcfs-export --snn-calib` writes a calibrated IntNet with provenance; `qcfs-run` reports it in its JSON
    and the calibrated network beats the plain one at its target T on the whole digits test split."""
    from qcfs.cli import export as export_cli
    from qcfs.cli import run as run_cli

    model = str(paper_start_digits_onnx)
    plain, cal = tmp_path / "plain.intnet.npz", tmp_path / "cal.intnet.npz"
    assert export_cli.main([model, "--backend", "intnet", "-o", str(plain)]) == 0
    assert export_cli.main([model, "--backend", "intnet", "-o", str(cal), "--snn-calib", "potential-snn",
                            "--target-T", "1", "--dataset", "digits", "--calib-samples", "512", "--show-passes",
                            "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "snn-calib potential-snn at T=1 on 512 training images" in out and "->" in out
    meta = load_intnet(cal).metadata["snn_calibration"]
    assert (meta["method"], meta["target_T"], meta["samples"], meta["seed"], meta["split"]) == \
        ("potential-snn", 1, 512, 0, "train")
    acc = {}
    for name, path in (("plain", plain), ("cal", cal)):
        js = tmp_path / f"{name}.json"
        assert run_cli.main(["--model", str(path), "--dataset", "digits", "--T", "1,2", "--json", str(js),
                             "--no-progress"]) == 0
        doc = json.loads(js.read_text())
        acc[name] = {r["T"]: r["accuracy"] for r in doc["results"]}
        assert all(r["latency_steps"] == r["T"] + load_intnet(path).readout.depth for r in doc["results"])
        if name == "cal":
            assert doc["snn_calibration"]["method"] == "potential-snn" and "rate_error" not in doc["snn_calibration"]
        else:
            assert doc["snn_calibration"] is None
    assert acc["plain"][1] < 0.3  # the paper's λ start: no first-layer neuron reaches θ/2 in one step
    assert acc["cal"][1] > acc["plain"][1] + 0.4  # measured with the old shipped model: 9.7 % -> 91.4 %


def test_auto_keeps_the_candidate_that_classifies_the_training_images_best() -> None:
    from qcfs.toolchain.snn_calib import AUTO_CANDIDATES, calibrate_auto
    from qcfs.toolchain.snn_calib.calibrate import hold_out_split

    net = lava_nets.residual_net()
    x = lava_nets.images(net, 40, seed=1)
    labels = simulate(net, x, [8], progress=False).predictions(8)  # "labels" a long window agrees with
    cal, report = calibrate_auto(net, x, labels, T=1, progress=False)
    auto = cal.metadata["snn_calibration"]["auto"]
    assert set(auto["candidates"]) == set(AUTO_CANDIDATES)
    assert auto["candidates"][auto["chosen"]] == max(auto["candidates"].values())
    assert report.method == f"auto -> {auto['chosen']}"
    # the accuracy calibration reports is the one the runtime measures on the images it was fitted on
    fit, _ = hold_out_split(len(x))
    assert np.mean(simulate(cal, x[fit], [1], progress=False).predictions(1) == labels[fit]) == pytest.approx(
        report.train_accuracy)


def test_calibrated_networks_are_bit_exact_on_ort_and_layer_major() -> None:
    """The SNN-as-ONNX backend and the layer-major NumPy path take per-channel v_init and shifted biases too."""
    from qcfs.runtime.ort_snn import simulate_ort

    for make in (lava_nets.digits_net, lava_nets.residual_net):
        _, cal, _ = _calibrated("bias-snn", make=make)
        x = lava_nets.images(cal, 12, seed=6)
        ref = simulate(cal, x, [1, 2, 4], progress=False, order="step")
        for res in (simulate_ort(cal, x, [1, 2, 4], progress=False), simulate(cal, x, [1, 2, 4], progress=False)):
            for t in (1, 2, 4):
                assert np.array_equal(res.logits[t], ref.logits[t])
                assert all(np.array_equal(res.spikes[t][k], ref.spikes[t][k]) for k in ref.spikes[t])
