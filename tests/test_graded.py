"""Graded spikes (multi-spike IF, IntNet max_spikes_per_step = m): the neuron rule, the exact T = 1 identity
with m = L (logits and every layer equal the integer quantized ANN's), bit-exactness of every backend that runs
graded spikes (NumPy sync/step/pipelined, torch, onnxruntime, Lava), the file format, the hardware checks, the
honest counts (messages, payload bits, SOPs) and the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import lava_nets
from lava_helpers import lava_available
from qcfs.errors import HardwareFitError, ModelFileError
from qcfs.intnet import HardwareProfile, IntNet, load_intnet
from qcfs.runtime.numpy_snn import simulate
from qcfs.semantics import fire, payload_bits
from qcfs.toolchain.ann_equivalent import spike_counts
from qcfs.toolchain.graded import make_graded

NETS = [lava_nets.digits_net, lava_nets.fashion_net, lava_nets.residual_net]


def test_fire_emits_clipped_floor_and_subtracts_it() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(-50, 120, size=400).astype(np.int64)
    for m in (1, 2, 3, 7):
        got = v.copy()
        s = np.empty(v.shape, dtype=bool if m == 1 else np.uint8)
        fire(got, 10, (-64, 63), s, m)
        sat = np.clip(v, -64, 63)
        n = np.clip(sat // 10, 0, m)
        assert np.array_equal(s.astype(np.int64), n) and np.array_equal(got, sat - 10 * n)
    assert [payload_bits(m) for m in (1, 2, 3, 4, 7, 8, 255)] == [0, 2, 2, 3, 3, 4, 8]


def _assert_same(a, b, Ts) -> None:  # type: ignore[no-untyped-def]
    assert a.max_spikes == b.max_spikes
    for t in Ts:
        assert np.array_equal(a.logits[t], b.logits[t]), t
        for k in a.spikes[t]:
            assert np.array_equal(a.spikes[t][k], b.spikes[t][k]), (t, k)
            assert np.array_equal(a.spike_values(t)[k], b.spike_values(t)[k]), (t, k)


@pytest.mark.parametrize("make", NETS, ids=lambda f: f.__name__)
def test_T1_with_m_equal_L_is_the_quantized_ann_layer_by_layer(make) -> None:  # type: ignore[no-untyped-def]
    """θ' = θ/L (kept integral as currents × L), m = L, one step: s = clip(floor((W·c + L·b + θ/2)/θ), 0, L)
    for every neuron of every layer, so each layer's payload sum and the logits equal the integer ANN's."""
    net = make()
    x = lava_nets.images(net, 48, seed=2)
    ann = spike_counts(net, x)
    g = make_graded(net, net.L)
    for timing, order in (("sync", "layer"), ("sync", "step"), ("pipelined", "layer")):
        res = simulate(g, x, [1], timing=timing, order=order, progress=False)
        assert np.array_equal(res.logits[1], ann[net.readout.name].reshape(len(x), -1).astype(np.int64))
        for layer in net.if_layers:
            c = ann[layer.name].reshape(len(x), -1)
            assert np.array_equal(res.values[1][layer.name], c.sum(axis=1).astype(np.int64)), layer.name
            assert np.array_equal(res.spikes[1][layer.name], np.count_nonzero(c, axis=1)), layer.name
    # and the binary network at T = 1 is not (the identity is the graded neuron's, not a coincidence)
    assert not np.array_equal(simulate(net, x, [1], progress=False).logits[1] * net.L,
                              ann[net.readout.name].reshape(len(x), -1))


def test_calibrated_per_channel_v_init_keeps_the_identity() -> None:
    net = lava_nets.residual_net()
    for layer in net.if_layers:
        layer.v_init = (np.arange(layer.channels) * 4 + int(layer.threshold) // 4).astype(np.int64)
    x = lava_nets.images(net, 24, seed=3)
    res = simulate(make_graded(net, net.L), x, [1], progress=False)
    assert np.array_equal(res.logits[1], spike_counts(net, x)[net.readout.name].reshape(len(x), -1))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_numpy_torch_ort_agree_bit_for_bit(m: int) -> None:
    from qcfs.runtime.ort_snn import simulate_ort
    from qcfs.runtime.torch_snn import simulate_torch

    Ts = [1, 2, 3]
    for make in (lava_nets.digits_net, lava_nets.residual_net):
        g = make_graded(make(), m)
        x = lava_nets.images(g, 12, seed=4)
        ref = simulate(g, x, Ts, order="step", progress=False)
        assert ref.max_spikes == m and any(int(v.max()) > 0 for v in ref.values[3].values())
        assert any(np.any(ref.values[3][k] > ref.spikes[3][k]) for k in ref.spikes[3])  # some s > 1 really
        for res in (simulate(g, x, Ts, progress=False), simulate(g, x, Ts, timing="pipelined", progress=False),
                    simulate(g, x, Ts, precision="float64", progress=False),
                    simulate_torch(g, x, Ts, progress=False), simulate_torch(g, x, Ts, precision="float64",
                                                                             progress=False),
                    simulate_ort(g, x, Ts, progress=False, kernels="int8")):
            _assert_same(ref, res, Ts)
        try:
            f32 = simulate_ort(g, x, Ts, progress=False, kernels="float32")
        except ValueError:  # not provably exact in float32: refused, never approximate
            continue
        _assert_same(ref, f32, Ts)


def test_two_phase_counts_the_pre_steps() -> None:
    from qcfs.runtime.metrics import net_stats, per_t_rows
    from qcfs.runtime.torch_snn import simulate_torch

    g = make_graded(lava_nets.digits_net(), 2)
    x = lava_nets.images(g, 8, seed=5)
    a = simulate(g, x, [2], pre_steps=2, progress=False)
    b = simulate_torch(g, x, [2], pre_steps=2, progress=False)
    _assert_same(a, b, [2])
    assert all(np.array_equal(a.pre_spikes[k], b.pre_spikes[k]) for k in a.pre_spikes)
    full = simulate(g, x, [2], order="step", progress=False)  # the pre-steps' spikes = the first 2 steps'
    assert all(np.array_equal(a.pre_spikes[k], full.spikes[2][k]) for k in a.pre_spikes)
    stats = net_stats(g)
    row = per_t_rows(a, stats, None)[0]
    window = sum(float(np.mean(a.spikes[2][k])) * stats.fanout[k] for k in a.spikes[2])
    pre = sum(float(np.mean(a.pre_spikes[k])) * stats.fanout[k] for k in a.pre_spikes)
    assert row["synops_per_sample"] == pytest.approx(window + pre) and pre > 0
    assert row["latency_steps"] == 2 + 2 + g.readout.depth
    assert row["payload_bits_per_sample"] == pytest.approx(row["spikes_per_sample"] * 2)
    assert row["max_spikes_per_step"] == 2


def test_energy_table_counts_pre_steps_and_prices_graded_sops() -> None:
    from qcfs.report.energy import HOROWITZ_FP32_ADD, HOROWITZ_FP32_MAC, energy_table, network_ops

    net = lava_nets.digits_net()
    spikes = {layer.name: 10.0 for layer in net.if_layers}
    (plain,) = energy_table(net, {4: spikes})
    (two,) = energy_table(net, {4: spikes}, pre_steps=3, pre_spikes={4: spikes})
    ops = network_ops(net)
    assert two.latency_steps == plain.latency_steps + 3 and two.snn_sops == pytest.approx(2 * plain.snn_sops)
    assert two.snn_input_macs == 7 * ops.input_macs_per_step
    g = make_graded(net, 4)
    (gr,) = energy_table(g, {4: spikes})
    assert gr.max_spikes_per_step == 4
    assert gr.energy_snn_pj == pytest.approx(gr.snn_sops * HOROWITZ_FP32_MAC.pj + gr.snn_input_macs *
                                             HOROWITZ_FP32_MAC.pj)
    assert plain.energy_snn_pj == pytest.approx(plain.snn_sops * HOROWITZ_FP32_ADD.pj + plain.snn_input_macs *
                                                HOROWITZ_FP32_MAC.pj)


# --- format and hardware checks ---------------------------------------------------------------------------
def _header(net: IntNet) -> dict:
    return json.loads(np.load(io.BytesIO(net.to_bytes()))["__header__"].tobytes())


def test_version_3_only_when_needed_and_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = lava_nets.residual_net()
    hdr = _header(net)
    assert hdr["version"] == 2 and "max_spikes_per_step" not in hdr and "spike_payload_bits" not in hdr["profile"]
    g = make_graded(net, 3)
    hdr = _header(g)
    assert hdr["version"] == 3 and hdr["max_spikes_per_step"] == 3 and hdr["profile"]["spike_payload_bits"] == 24
    back = load_intnet(g.save(tmp_path / "g.intnet.npz"))
    assert back.max_spikes_per_step == 3 and back.readout_scale == g.readout_scale
    assert back.to_bytes() == g.to_bytes()
    x = lava_nets.images(g, 6)
    _assert_same(simulate(g, x, [1, 2], progress=False), simulate(back, x, [1, 2], progress=False), [1, 2])


def test_make_graded_changes_only_what_the_identity_says() -> None:
    net = lava_nets.residual_net()
    g = make_graded(net, 4)
    for a, b in zip(net.layers, g.layers):
        input_fed = all(s.source == "input" for s in a.synapses) and a.kind == "if"
        k = int(a.threshold) // int(b.threshold) if input_fed else 1
        assert (4 // k) * np.asarray(a.bias) == pytest.approx(np.asarray(b.bias))
        for sa, sb in zip(a.synapses, b.synapses):
            want = sa.weight * (4 // k) if sa.source == "input" else sa.weight
            assert np.array_equal(want, sb.weight)
    assert g.readout_scale == 4 * net.readout_scale and net.max_spikes_per_step == 1
    same = make_graded(net, 4, scale=False)
    assert all(np.array_equal(a.bias, b.bias) and a.threshold == b.threshold for a, b in zip(net.layers, same.layers))


def _digits_file_with(path, **header_fields):  # type: ignore[no-untyped-def]
    """The digits IntNet written to `path` with `header_fields` set in its JSON header (nothing else changed)."""
    from intnet_mutations import read, write

    header, arrays = read(lava_nets.digits_net().to_bytes())
    header.update(header_fields)
    path.write_bytes(write(header, arrays))
    return path


def test_a_version_2_file_claiming_graded_spikes_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _digits_file_with(tmp_path / "v2.intnet.npz", max_spikes_per_step=4)
    with pytest.raises(ModelFileError, match="max_spikes_per_step in a version-2 file"):
        load_intnet(path)


@pytest.mark.parametrize("version", [True, 2.0, "2", None])
def test_a_header_version_that_is_not_an_integer_version_is_refused(tmp_path, version) -> None:  # type: ignore[no-untyped-def]
    """JSON true equals 1 in Python (`True in (1, 2, 3)`): it must not pass as version 1."""
    path = _digits_file_with(tmp_path / "bad.intnet.npz", version=version)
    with pytest.raises(ModelFileError, match="version"):
        load_intnet(path)


def test_payload_and_scaled_weights_are_checked_against_the_profile() -> None:
    net = lava_nets.digits_net()
    net.profile = HardwareProfile(spike_payload_bits=2)
    make_graded(net, 3)  # 3 needs 2 bits
    with pytest.raises(HardwareFitError, match=r"max_spikes_per_step 4 needs 3-bit graded spikes.*spike_payload_bits"):
        make_graded(net, 4)
    net = lava_nets.digits_net()
    c1 = net.layer("c1")
    c1.threshold = 2 * 3 * 5 * 7  # θ/2 odd-ish: gcd(105, 2) = 1, so the input weights must double
    c1.v_init = c1.threshold // 2
    c1.synapses[0].weight[0, 0, 0, 0] = 127
    with pytest.raises(HardwareFitError, match=r"layer 'c1'.*weight.*does not fit 8 bits"):
        make_graded(net, 2)


def test_netx_and_nir_refuse_graded_spikes_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.exporters.netx_export import NetxFormatError, export_netx
    from qcfs.exporters.nir_export import NirFormatError, export_nir

    g = make_graded(lava_nets.digits_net(), 2)
    with pytest.raises(NetxFormatError, match="graded spikes"):
        export_netx(g, tmp_path / "g.net.h5")
    with pytest.raises(NirFormatError, match="graded spikes"):
        export_nir(g, tmp_path / "g.nir")
    assert not (tmp_path / "g.nir").exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("make", [lava_nets.digits_net, lava_nets.residual_net], ids=lambda f: f.__name__)
@pytest.mark.lava
@pytest.mark.skipif(not lava_available(), reason="lava-nc not installed (scripts/setup_env.sh installs it)")
def test_lava_runs_graded_spikes_bit_for_bit(make, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Graded output ports (s ∈ 0..m as int32 messages) into Conv/Dense with num_message_bits = ⌈log2(m+1)⌉."""
    from qcfs.exporters.lava_export import export_lava, load_lava_file
    from qcfs.runtime.lava.backend import simulate_lava

    g = make_graded(make(), 4)
    path = export_lava(g, tmp_path / "g.lava.npz")
    lf = load_lava_file(path)
    assert lf.header["max_spikes_per_step"] == 4
    assert {s["num_message_bits"] for lh in lf.layers for s in lh["synapses"] if s["source"] != "input"} == {3}
    x = lava_nets.images(g, 6, seed=7)
    got = simulate_lava(path, x, [1, 2, 3], progress=False, timeout_s=240)
    ref = simulate(g, x, [1, 2, 3], timing="pipelined", progress=False)
    _assert_same(ref, got, [1, 2, 3])
    assert any(np.any(ref.values[3][k] > ref.spikes[3][k]) for k in ref.spikes[3])


# --- CLI --------------------------------------------------------------------------------------------------
def test_cli_exports_and_runs_a_graded_network(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main as export_main
    from qcfs.cli.run import main as run_main

    src = lava_nets.digits_net().save(tmp_path / "d.intnet.npz")
    out = tmp_path / "g.intnet.npz"
    assert export_main([str(src), "--backend", "intnet", "-o", str(out), "--spikes-per-step", "4"]) == 0
    g = load_intnet(out)
    assert g.max_spikes_per_step == 4 and g.metadata["graded"]["current_scale"] == 4
    capsys.readouterr()
    js = tmp_path / "r.json"
    rc = run_main(["--model", str(out), "--dataset", "digits", "--T", "1,2", "--limit", "20", "--json", str(js),
                   "--no-progress"])
    assert rc == 0
    table = capsys.readouterr().out.splitlines()
    head = next(line for line in table if "latency" in line)
    assert head.split()[-3:] == ["m", "payload", "bits"]
    row = next(line for line in table[table.index(head) + 1:] if line.split()[0] == "1")
    assert row.split()[-2] == "4"
    doc = json.loads(js.read_text())
    assert doc["max_spikes_per_step"] == 4
    for r in doc["results"]:
        assert r["max_spikes_per_step"] == 4 and r["payload_bits_per_sample"] == pytest.approx(
            3 * r["spikes_per_sample"])


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "nir", "--spikes-per-step", "2"], "--spikes-per-step applies to --backend intnet, lava or snn-onnx"),
    (["--backend", "intnet", "--spikes-per-step", "0"], "spikes per step in 1..255"),
    (["--backend", "intnet", "--spikes-per-step", "2", "--snn-calib", "bias", "--target-T", "2", "--dataset",
      "digits"], "cannot be combined with --spikes-per-step"),
])
def test_cli_graded_flags_fail_in_one_line(capsys, tmp_path, argv, needle) -> None:  # type: ignore[no-untyped-def]
    from qcfs.cli.export import main as export_main

    src = lava_nets.digits_net().save(tmp_path / "d.intnet.npz")
    try:
        code = export_main([str(src), "-o", str(tmp_path / "o.out"), *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
