"""Per-neuron initial membranes (`--snn-calib neuron`, `neuron-snn`; IntNet version 3): the method's invariants
(weights, θ and biases unchanged, deterministic, rate error per neuron not worse, bit widths named by layer),
the file round trip, and bit-exactness of every backend against the NumPy reference (torch, onnxruntime with
both kernel sets, Lava, netx with qcfs semantics, NIR qcfs metadata); `auto` picks on held-out training images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import lava_nets
from lava_helpers import lava_available
from qcfs.errors import HardwareFitError
from qcfs.intnet import IntNet, load_intnet
from qcfs.runtime.numpy_snn import simulate
from qcfs.semantics import encode_input
from qcfs.toolchain.ann_equivalent import spike_counts
from qcfs.toolchain.snn_calib import calibrate
from qcfs.toolchain.snn_calib.calibrate import v_init_channel_last
from qcfs.toolchain.snn_calib.trains import layer_current, run_if

T_CAL = 2


def _neuron_cal(make=lava_nets.residual_net, method: str = "neuron", n: int = 48):  # type: ignore[no-untyped-def]
    net = make()
    return net, *calibrate(net, lava_nets.images(net, n, seed=1), T=T_CAL, method=method, progress=False)


def per_neuron_net(make=lava_nets.digits_net) -> IntNet:  # type: ignore[no-untyped-def]
    """A net whose conv layers hold one (distinct) v_init per neuron."""
    net = make()
    rng = np.random.default_rng(5)
    for layer in net.if_layers:
        n = int(np.prod(layer.shape))
        layer.v_init = (int(layer.threshold) // 2 + rng.integers(-int(layer.threshold) // 3,
                                                                  int(layer.threshold) // 3, n)).astype(np.int64)
    return net


def _same(a, b, Ts) -> None:  # type: ignore[no-untyped-def]
    for t in Ts:
        assert np.array_equal(a.logits[t], b.logits[t]), t
        assert all(np.array_equal(a.spikes[t][k], b.spikes[t][k]) for k in a.spikes[t]), t


@pytest.mark.parametrize("method", ["neuron", "neuron-snn"])
def test_neuron_method_changes_only_v_init_per_neuron(method: str) -> None:
    net, cal, report = _neuron_cal(method=method)
    assert any(layer.per_neuron_v_init for layer in cal.if_layers)
    for a, b in zip(net.layers, cal.layers):
        assert a.threshold == b.threshold and a.shape == b.shape and a.depth == b.depth
        assert all(np.array_equal(sa.weight, sb.weight) for sa, sb in zip(a.synapses, b.synapses))
        if b.kind == "if":
            assert np.array_equal(a.bias, b.bias)
            v = b.v_init_full()
            assert v.shape == tuple(b.shape) and np.array_equal(v, np.rint(v))
    assert any(r.mean_abs_after < r.mean_abs_before for r in report.layers)  # (RMS is not the objective)
    # the first layer sees the same input before and after: "no shift" is a candidate for every neuron, so no
    # neuron's mean count can move away from its target
    first = cal.if_layers[0]
    x = lava_nets.images(net, 48, seed=1)
    enc = encode_input(x, net.input.mean, net.input.std, net.input.scale, net.input.bits).transpose(0, 2, 3, 1)
    cur = layer_current(net, net.if_layers[0], {}, np.ascontiguousarray(enc))
    args = (T_CAL, np.asarray(first.bias))
    _, before = run_if(cur, *args, v_init_channel_last(net.if_layers[0]).astype(np.int64), int(first.threshold), 24,
                       False)
    _, after = run_if(cur, *args, v_init_channel_last(first).astype(np.int64), int(first.threshold), 24, False)
    if method == "neuron":
        c = spike_counts(net, x)[first.name].transpose(0, 2, 3, 1) * (T_CAL / net.L)
        tgt = c.mean(axis=0)
        assert np.all(np.abs(after.mean(axis=0) - tgt) <= np.abs(before.mean(axis=0) - tgt) + 1e-9)
        assert np.any(np.abs(after.mean(axis=0) - tgt) < np.abs(before.mean(axis=0) - tgt))
    assert cal.metadata["snn_calibration"]["v_init"] == "per-neuron"
    with pytest.raises(ValueError, match="per neuron"):
        next(lay for lay in cal.if_layers if lay.per_neuron_v_init).v_init_per_channel()


def test_neuron_calibration_is_deterministic() -> None:
    assert _neuron_cal()[1].to_bytes() == _neuron_cal()[1].to_bytes()


def test_per_neuron_round_trip_is_version_3(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, cal, _ = _neuron_cal()
    path = cal.save(tmp_path / "n.intnet.npz")
    assert json.loads(np.load(path)["__header__"].tobytes())["version"] == 3
    back = load_intnet(path)
    assert back.to_bytes() == cal.to_bytes()
    for a, b in zip(cal.if_layers, back.if_layers):
        assert np.array_equal(a.v_init_full(), b.v_init_full())
    x = lava_nets.images(cal, 8)
    _same(simulate(cal, x, [1, 2], progress=False), simulate(back, x, [1, 2], progress=False), [1, 2])


def test_per_neuron_v_init_that_does_not_fit_names_the_layer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qcfs.toolchain.snn_calib import methods

    class Overshoot(methods.CalibrationMethod):
        """(test) shifts one neuron's v_init past the top of a 24-bit membrane."""

        name = "overshoot-neuron"

        def solve(self, p):  # type: ignore[no-untyped-def]
            dv = np.zeros(p.neuron_shape, np.int64)
            dv.reshape(-1)[-1] = 1 << 24
            return np.zeros(p.channels, np.int64), dv

    monkeypatch.setitem(methods.METHODS, "overshoot-neuron", Overshoot)
    net = lava_nets.digits_net()
    with pytest.raises(HardwareFitError, match=r"layer c1: calibrated v_init .* does not fit the 24-bit membrane"):
        calibrate(net, lava_nets.images(net, 8), T=1, method="overshoot-neuron", progress=False)


@pytest.mark.parametrize("make", [lava_nets.digits_net, lava_nets.residual_net], ids=lambda f: f.__name__)
def test_every_numpy_discipline_torch_and_ort_agree(make) -> None:  # type: ignore[no-untyped-def]
    from qcfs.runtime.ort_snn import simulate_ort
    from qcfs.runtime.torch_snn import simulate_torch

    Ts = [1, 2, 4]
    for net in (per_neuron_net(make), _neuron_cal(make=make)[1]):
        x = lava_nets.images(net, 10, seed=3)
        ref = simulate(net, x, Ts, order="step", progress=False)
        for res in (simulate(net, x, Ts, progress=False), simulate(net, x, Ts, timing="pipelined", progress=False),
                    simulate_torch(net, x, Ts, progress=False), simulate_ort(net, x, Ts, progress=False,
                                                                             kernels="int8")):
            _same(ref, res, Ts)
        try:
            _same(ref, simulate_ort(net, x, Ts, progress=False, kernels="float32"), Ts)
        except ValueError:
            pass
        two = simulate(net, x, [2], pre_steps=2, progress=False)
        _same(two, simulate_torch(net, x, [2], pre_steps=2, progress=False), [2])


def test_nir_carries_per_neuron_v_init_in_its_metadata(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("nir")
    from qcfs.exporters.nir_export import export_nir
    from qcfs.exporters.nir_import import load_nir_intnet
    from qcfs.runtime.nir_stock import simulate_nir

    net = load_intnet(per_neuron_net().save(tmp_path / "p.intnet.npz"))
    path = export_nir(net, tmp_path / "p.nir")
    back = load_nir_intnet(path)
    assert back.to_bytes() == net.to_bytes()
    x = lava_nets.images(net, 6, seed=2)
    _same(simulate(net, x, [1, 3], progress=False), simulate_nir(path, x, [1, 3], semantics="qcfs", progress=False),
          [1, 3])


@pytest.mark.timeout(300)
@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="lava-nc not installed (scripts/setup_env.sh installs it)")
def test_lava_and_netx_run_per_neuron_v_init_bit_for_bit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.exporters.lava_export import export_lava
    from qcfs.exporters.netx_export import export_netx, load_netx_intnet
    from qcfs.runtime.lava.backend import simulate_lava
    from qcfs.runtime.lava.netx_backend import simulate_netx

    net = load_intnet(per_neuron_net().save(tmp_path / "p.intnet.npz"))
    x = lava_nets.images(net, 5, seed=4)
    ref = simulate(net, x, [1, 2, 4], progress=False)
    _same(ref, simulate_lava(export_lava(net, tmp_path / "p.lava.npz"), x, [1, 2, 4], progress=False,
                             timeout_s=240), [1, 2, 4])
    h5 = export_netx(net, tmp_path / "p.net.h5")
    assert load_netx_intnet(h5).to_bytes() == net.to_bytes()
    _same(ref, simulate_netx(h5, x, [1, 2, 4], semantics="qcfs", progress=False, timeout_s=240), [1, 2, 4])


def test_auto_picks_on_held_out_training_images_and_records_it() -> None:
    from qcfs.runtime.numpy_snn import simulate as sim
    from qcfs.toolchain.snn_calib import AUTO_CANDIDATES, calibrate_auto
    from qcfs.toolchain.snn_calib.calibrate import hold_out_split

    net = lava_nets.residual_net()
    x = lava_nets.images(net, 40, seed=1)
    labels = simulate(net, x, [8], progress=False).predictions(8)
    cal, report = calibrate_auto(net, x, labels, T=2, progress=False)
    auto = cal.metadata["snn_calibration"]["auto"]
    assert set(auto["candidates"]) == set(AUTO_CANDIDATES) and {"neuron", "neuron-snn"} <= set(AUTO_CANDIDATES)
    assert auto["candidates"][auto["chosen"]] == max(auto["candidates"].values())
    assert auto["calibrated_for_T"] == 2 and cal.metadata["snn_calibration"]["target_T"] == 2
    fit, held = hold_out_split(len(x))
    assert auto["held_out_images"] == len(held) == 10 and not set(fit) & set(held)
    got = float(np.mean(sim(cal, x[held], [2], progress=False).predictions(2) == labels[held]))
    assert got == pytest.approx(auto["candidates"][auto["chosen"]])
