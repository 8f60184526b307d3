"""Report package: exact operation counts on hand-built IntNets (checked by brute force), energy arithmetic,
figures (inspected before saving), and the report folder."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from qcfs.errors import QCFSError
from qcfs.intnet import InputSpec, IntNet, Layer, Synapse
from qcfs.report import energy, plots
from qcfs.report.writer import write_report


def _conv(source: str, c_out: int, c_in: int, k: int, stride: int = 1, pad: tuple[int, ...] = (0, 0, 0, 0),
          groups: int = 1, seed: int = 0) -> Synapse:
    w = np.random.default_rng(seed).integers(-3, 4, size=(c_out, c_in // groups, k, k))
    return Synapse(source, "conv", w, stride=(stride, stride), padding=tuple(pad), groups=groups)


def _layer(name: str, shape: tuple[int, ...], syns: list[Synapse], kind: str = "if", depth: int = 1) -> Layer:
    return Layer(name, kind, shape, np.zeros(shape[0], dtype=np.int64), 8, 4, syns, depth=depth)


def tiny_net() -> IntNet:
    """input 2×6×6 → conv3×3 pad 1 → c1 4×6×6 → conv3×3 stride 2 pad (1,1,0,0) → c2 4×3×3 → dense → out 3,
    plus a skip dense c1 → out so one source has two outgoing stages."""
    c1 = _layer("c1", (4, 6, 6), [_conv("input", 4, 2, 3, pad=(1, 1, 1, 1))], depth=1)
    c2 = _layer("c2", (4, 3, 3), [_conv("c1", 4, 4, 3, stride=2, pad=(1, 1, 0, 0), seed=1)], depth=2)
    w_out = np.arange(3 * 36, dtype=np.int64).reshape(3, 36) % 5 - 2
    w_skip = np.ones((3, 144), dtype=np.int64)
    out = _layer("out", (3,), [Synapse("c2", "dense", w_out), Synapse("c1", "dense", w_skip)], "readout", 3)
    return IntNet("int", InputSpec((2, 6, 6), (0.5, 0.5), (0.25, 0.25), 16.0), [c1, c2, out], L=4)


def brute_conv_fanout(src_shape, dst_shape, syn: Synapse) -> np.ndarray:
    """Count, by explicit loops over every output neuron and kernel tap, the synapses leaving each input."""
    c_in, h_in, w_in = src_shape
    c_out, h_out, w_out = dst_shape
    _, ci_g, kh, kw = syn.weight.shape
    cpg_out = c_out // syn.groups
    fan = np.zeros(src_shape, dtype=np.int64)
    for co, oy, ox, ci, ky, kx in itertools.product(range(c_out), range(h_out), range(w_out), range(ci_g),
                                                    range(kh), range(kw)):
        y = oy * syn.stride[0] - syn.padding[0] + ky
        x = ox * syn.stride[1] - syn.padding[1] + kx
        if 0 <= y < h_in and 0 <= x < w_in:
            fan[(co // cpg_out) * ci_g + ci, y, x] += 1
    return fan


@pytest.mark.parametrize("stride,pad,groups", [(1, (1, 1, 1, 1), 1), (2, (1, 1, 0, 0), 1), (1, (0, 2, 1, 0), 2),
                                               (2, (1, 0, 1, 0), 4)])
def test_conv_fanout_matches_brute_force_on_4x4(stride, pad, groups):
    syn = _conv("input", 4, 4, 3, stride=stride, pad=pad, groups=groups)
    h_out = (4 + pad[0] + pad[2] - 3) // stride + 1
    w_out = (4 + pad[1] + pad[3] - 3) // stride + 1
    src, dst = (4, 4, 4), (4, h_out, w_out)
    got = energy.synapse_fanout(syn, src, dst)
    np.testing.assert_array_equal(got, brute_conv_fanout(src, dst, syn))
    if stride == 1 and pad == (1, 1, 1, 1):  # interior neurons reach every tap of every output channel
        assert got[0, 1, 1] == 4 * 9 and got[0, 0, 0] == 4 * 4


def test_nonzero_fanout_skips_zero_weights():
    syn = Synapse("input", "dense", np.array([[1, 0], [2, 0], [0, 3]]))
    np.testing.assert_array_equal(energy.synapse_fanout(syn, (2,), (3,)), [3, 3])
    np.testing.assert_array_equal(energy.synapse_fanout(syn, (2,), (3,), nonzero_only=True), [2, 1])


def test_macs_of_known_conv_and_dense():
    net = tiny_net()
    ops = energy.network_ops(net)
    macs = {(s.layer, s.source): s.macs for s in ops.synapses}
    assert macs[("c1", "input")] == 4 * 6 * 6 * 2 * 3 * 3  # C_out·H_out·W_out·C_in·kh·kw
    assert macs[("c2", "c1")] == 4 * 3 * 3 * 4 * 3 * 3
    assert macs[("out", "c2")] == 3 * 36 and macs[("out", "c1")] == 3 * 144
    assert energy.ann_macs(net) == 2592 + 1296 + 108 + 432  # readout counted
    assert ops.input_macs_per_step == 2592
    assert ops.neurons == {"c1": 144, "c2": 36, "out": 3}
    # grouped conv: C_in/groups weights per output neuron
    assert energy.synapse_macs(_conv("input", 4, 4, 3, groups=2), (4, 2, 2)) == 4 * 2 * 2 * 2 * 9


def test_fanout_map_sums_all_outgoing_stages():
    net = tiny_net()
    fo = energy.fanout_map(net, "c1")
    conv_part = brute_conv_fanout((4, 6, 6), (4, 3, 3), net.layer("c2").synapses[0])
    np.testing.assert_array_equal(fo, conv_part + 3)  # + the skip dense to 3 readout units
    ops = energy.network_ops(net)
    assert ops.fanout_total["c1"] == fo.sum() and ops.fanout_mean["c1"] == pytest.approx(fo.mean())
    assert ops.fanout_total["c2"] == 36 * 3
    inp = brute_conv_fanout((2, 6, 6), (4, 6, 6), net.layer("c1").synapses[0])
    assert ops.input_connections_per_step == inp.sum() < ops.input_macs_per_step  # padding taps excluded


def test_synops_per_neuron_counts_are_exact_and_totals_use_mean_fanout():
    net = tiny_net()
    ops = energy.network_ops(net)
    rng = np.random.default_rng(0)
    c1 = rng.integers(0, 5, size=(4, 6, 6))
    c2 = rng.integers(0, 5, size=(4, 3, 3))
    exact = energy.synops(ops, {"c1": c1, "c2": c2}, net)
    brute = (c1 * energy.fanout_map(net, "c1")).sum() + (c2 * 3).sum()
    assert exact == brute
    uniform = energy.synops(ops, {"c1": 144.0, "c2": 36.0})  # one spike per neuron: exact too
    assert uniform == pytest.approx(ops.fanout_total["c1"] + ops.fanout_total["c2"])
    with pytest.raises(QCFSError, match="nope"):
        energy.synops(ops, {"nope": 1.0})


def test_energy_table_arithmetic():
    net = tiny_net()
    ops = energy.network_ops(net)
    rows = energy.energy_table(net, {8: {"c1": 100.0, "c2": 20.0}, 2: {"c1": 30.0, "c2": 5.0}})
    assert [r.T for r in rows] == [2, 8]
    r = rows[1]
    sops = 100.0 * ops.fanout_mean["c1"] + 20.0 * 3
    assert r.snn_sops == pytest.approx(sops)
    assert r.snn_input_macs == 8 * 2592
    assert r.energy_ann_pj == pytest.approx(ops.ann_macs * 4.6)
    assert r.energy_snn_pj == pytest.approx(sops * 0.9 + 8 * 2592 * 4.6)
    assert r.loihi_synop_pj == pytest.approx((sops + 8 * ops.input_connections_per_step) * 23.6)
    assert r.loihi_neuron_pj == pytest.approx(8 * 183 * energy.LOIHI_NEURON_UPDATE.pj)
    assert r.energy_loihi_pj == pytest.approx(r.loihi_synop_pj + r.loihi_neuron_pj)
    assert r.latency_steps == 8 + 3
    assert energy.HOROWITZ_FP32_MAC.pj == pytest.approx(energy.HOROWITZ_FP32_MULT.pj + energy.HOROWITZ_FP32_ADD.pj)
    assert all(f.source and f.verified for f in energy.FIGURES)


def run_json(Ts=(1, 2, 4, 8), mode="int", backend="numpy", acc_scale=1.0) -> dict:
    res = [{"T": T, "accuracy": acc_scale * (0.5 + 0.05 * i), "spikes_per_sample": 30.0 * T,
            "spikes_per_layer": {"c1": 25.0 * T, "c2": 5.0 * T}, "synops_per_sample": 0.0}
           for i, T in enumerate(Ts)]
    return {"model": "tiny", "dataset": "digits", "backend": backend, "mode": mode, "samples": 16,
            "ann_accuracy": 0.7 * acc_scale, "results": res, "command": "qcfs-run tiny.npz --T 1,2,4,8"}


def test_accuracy_plot_has_one_point_per_T_and_ann_line():
    fig = plots.plot_accuracy(run_json(), run_json(mode="float"), run_json(Ts=(4, 8), backend="lava"))
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert len(lines["integer SNN (numpy)"].get_xdata()) == 4
    assert len(lines["float SNN (numpy)"].get_xdata()) == 4
    lava = [ln for lbl, ln in lines.items() if lbl.startswith("Lava")][0]
    assert list(lava.get_xdata()) == [4, 8] and lava.get_linestyle() == "None"
    assert list(lines["ANN (QCFS)"].get_ydata()) == pytest.approx([70.0, 70.0])  # fraction → percent
    assert ax.get_xscale() == "log" and "%" in ax.get_ylabel() and ax.get_title()
    # percent input stays percent
    pct = plots.plot_accuracy(run_json(acc_scale=100.0)).axes[0].get_lines()[0].get_ydata()
    assert pct[0] == pytest.approx(50.0)


def test_spike_bars_and_firing_rate():
    fig = plots.plot_spikes_per_layer(run_json())
    assert len(fig.axes[0].patches) == 2 * 4  # layers × T
    assert fig.axes[0].get_ylabel()
    fr = plots.plot_firing_rate(run_json(), {"c1": 144, "c2": 36, "out": 3})
    lines = fr.axes[0].get_lines()
    assert len(lines) == 4
    assert list(lines[0].get_ydata()) == pytest.approx([25.0 / 144, 5.0 / 36])  # T=1


def test_raster_three_layers(tmp_path):
    rng = np.random.default_rng(1)
    raster = {name: rng.random((16, 5)) < 0.3 for name in ("c1", "c2", "c3")}
    fig = plots.plot_raster(raster)
    assert len(fig.axes) == 3
    n_spikes = sum(len(ax.collections[0].get_offsets()) for ax in fig.axes)
    assert n_spikes == sum(int(r.sum()) for r in raster.values())
    path = plots.save_png(fig, tmp_path / "raster.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_energy_plot_lines():
    rows = energy.energy_table(tiny_net(), {T: {"c1": 25.0 * T, "c2": 5.0 * T} for T in (1, 2, 4)})
    ax = plots.plot_energy(rows).axes[0]
    assert len(ax.get_lines()) == 3 and all(len(ln.get_xdata()) == 3 for ln in ax.get_lines())
    assert ax.get_yscale() == "log" and "µJ" in ax.get_ylabel()


def test_write_report_lists_every_png(tmp_path):
    raster = {n: np.eye(8, 4, dtype=bool) for n in ("c1", "c2")}
    paths = write_report(tmp_path / "rep", run_json=run_json(), float_json=run_json(mode="float"),
                         lava_json=run_json(Ts=(4,), backend="lava"), net=tiny_net(), raster=raster)
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["accuracy.png", "energy.png", "firing_rate.png", "raster.png", "spikes_per_layer.png"]
    assert all((tmp_path / "rep" / p).stat().st_size > 2000 for p in pngs)
    assert {p.name for p in paths} == {*pngs, "report.json", "report.md"}
    md = (tmp_path / "rep" / "report.md").read_text()
    for p in pngs:
        assert f"]({p})" in md
    assert "qcfs-run tiny.npz --T 1,2,4,8" in md and "Horowitz" in md and "Davies" in md
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["T"] for r in rep["energy"]] == [1, 2, 4, 8]
    assert rep["operations"]["ann_macs_per_sample"] == energy.ann_macs(tiny_net())
    assert rep["runs"]["snn"]["results"][0]["spikes_per_layer"] == {"c1": 25.0, "c2": 5.0}  # counts as given
    assert sorted(rep["figures"]) == pngs


def test_write_report_without_spikes_or_raster(tmp_path):
    run = run_json()
    for r in run["results"]:
        del r["spikes_per_layer"]
    paths = write_report(tmp_path, run_json=run, net=tiny_net())
    assert [p.name for p in paths] == ["report.json", "accuracy.png", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["energy"] == []
