"""NumPy reference runtime: exact against a per-neuron brute force, both timings agree, Theorem 1, saturation."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from snn_reference import brute_force, random_net  # noqa: E402

from qcfs.intnet import HardwareProfile, InputSpec, IntNet, Layer, Synapse  # noqa: E402
from qcfs.runtime.metrics import net_stats, per_t_rows  # noqa: E402
from qcfs.runtime.numpy_snn import compile_net, simulate  # noqa: E402
from qcfs.semantics import fire  # noqa: E402
from qcfs.runtime.numpy_synapse import synapse_fanout  # noqa: E402
from qcfs.semantics import if_step, membrane_limits  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _images(n: int, seed: int = 0, shape=(2, 8, 8)) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape))


def _assert_same(a, b, exact: bool = True) -> None:  # type: ignore[no-untyped-def]
    assert a.Ts == b.Ts
    for t in a.Ts:
        for name in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][name], b.spikes[t][name], err_msg=f"T={t} {name}")
        if exact:
            np.testing.assert_array_equal(a.logits[t], b.logits[t])
        else:
            np.testing.assert_allclose(a.logits[t], b.logits[t], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("mode", ["int", "float"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(mode: str, seed: int) -> None:
    net = random_net(seed, mode, membrane_bits=12)  # 12 bits: saturation does happen in c1
    imgs = _images(3, seed)
    T = 6
    logits, counts = brute_force(net, imgs, T)
    res = simulate(net, imgs, [T], progress=False, batch_size=2)  # 2: a partial last batch too
    assert sum(int(c.sum()) for c in counts.values()) > 0
    for name, c in counts.items():
        np.testing.assert_array_equal(res.spikes[T][name], c, err_msg=name)
        assert 0 < c.sum() < np.prod(net.layer(name).shape) * T * len(imgs), f"{name}: degenerate spike rate"
    if mode == "int":
        assert res.logits[T].dtype == np.int64
        np.testing.assert_array_equal(res.logits[T], logits)
    else:
        np.testing.assert_allclose(res.logits[T], logits, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("mode", ["int", "float"])
def test_sync_equals_pipelined_stream(mode: str) -> None:
    net = random_net(3, mode, membrane_bits=12)
    imgs = _images(5, 3)
    Ts = [1, 3, 5]
    sync = simulate(net, imgs, Ts, progress=False, raster_neurons=7)
    pipe = simulate(net, imgs, Ts, timing="pipelined", batch_size=4, progress=False, raster_neurons=7)
    assert pipe.timing == "pipelined" and sync.timing == "sync"
    _assert_same(sync, pipe, exact=mode == "int")  # float: BLAS batch 1 vs 5 may round differently
    for name in sync.raster:
        assert sync.raster[name].shape == (5, 7)
        np.testing.assert_array_equal(sync.raster[name], pipe.raster[name])


def test_pipelined_rejects_misaligned_delays() -> None:
    net = random_net(0)
    net.layer("c3").synapses[1].delay = 0  # residual path now one step short
    simulate(net, _images(1), [2], progress=False)  # sync ignores delays
    with pytest.raises(ValueError, match="depth"):
        simulate(net, _images(1), [2], timing="pipelined", progress=False)


def test_multiple_T_equal_separate_runs() -> None:
    net = random_net(4)
    imgs = _images(4, 4)
    together = simulate(net, imgs, [2, 7, 4], progress=False)
    assert together.Ts == [2, 4, 7]
    for t in (2, 4, 7):
        alone = simulate(net, imgs, [t], progress=False)
        np.testing.assert_array_equal(alone.logits[t], together.logits[t])
        for name in alone.spikes[t]:
            np.testing.assert_array_equal(alone.spikes[t][name], together.spikes[t][name])


def test_float32_path_equals_float64_path() -> None:
    net = random_net(5, float32_exact=True)
    dtypes = {lp.name: lp.dtype for lp in compile_net(net, "auto")}
    assert dtypes["c2"] == np.float32 and dtypes["d1"] == np.float32
    assert all(lp.dtype == np.float64 for lp in compile_net(net, "float64"))
    imgs = _images(6, 5)
    _assert_same(simulate(net, imgs, [3, 8], progress=False),
                 simulate(net, imgs, [3, 8], progress=False, precision="float64"))


def test_float32_needs_flag_and_bound() -> None:
    net = random_net(6, float32_exact=False)
    assert all(lp.dtype == np.float64 for lp in compile_net(net))
    net = random_net(6, float32_exact=True)
    net.layer("d1").synapses[0].weight[0, 0] = 2**24  # flag claims float32 but the bound says no
    assert {lp.name: lp.dtype for lp in compile_net(net)}["d1"] == np.float64


# --- Theorem 1 -----------------------------------------------------------------------------------------
def _single_neuron(theta: float, mode: str, L: int) -> IntNet:
    integer = mode == "int"
    one = np.ones((1, 1), dtype=np.int64 if integer else np.float64)
    layers = [
        Layer("if1", "if", (1,), np.zeros(1, one.dtype), theta, theta / 2, [Synapse("input", "dense", one)]),
        Layer("out", "readout", (1,), np.zeros(1, one.dtype), 1, 0, [Synapse("if1", "dense", one)], depth=2),
    ]
    return IntNet(mode=mode, input=InputSpec((1, 1, 1), (0.0,), (1.0,), 1.0 if integer else None, bits=16),  # type: ignore[arg-type]
                  layers=layers, L=L)


@settings(max_examples=60, deadline=None)
@given(L=st.integers(1, 32), half_theta=st.integers(1, 200), x=st.integers(-500, 3000))
def test_theorem1_integer(L: int, half_theta: int, x: int) -> None:
    theta = 2 * half_theta  # integer mode: θ even so v_init = θ/2 is exact
    res = simulate(_single_neuron(theta, "int", L), np.full((1, 1, 1, 1), float(x)), [L], progress=False)
    expected = min(max((2 * x * L + theta) // (2 * theta), 0), L)  # clip(floor(x·T/θ + 1/2), 0, T)
    assert res.spikes[L]["if1"][0] == expected
    assert res.logits[L][0, 0] == expected  # readout weight 1: accumulated spikes


@settings(max_examples=60, deadline=None)
@given(L=st.integers(1, 32), theta_q=st.integers(1, 400), x_q=st.integers(-400, 4000))
def test_theorem1_float(L: int, theta_q: int, x_q: int) -> None:
    theta, x = theta_q / 4, x_q / 16  # dyadic values: every float64 sum on the way is exact
    res = simulate(_single_neuron(theta, "float", L), np.full((1, 1, 1, 1), x), [L], progress=False)
    q = Fraction(x_q, 16) * L / Fraction(theta_q, 4) + Fraction(1, 2)
    expected = min(max(q.numerator // q.denominator, 0), L)
    assert res.spikes[L]["if1"][0] == expected


# --- neuron update and saturation ------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(v0=st.lists(st.integers(-600, 600), min_size=1, max_size=20), seed=st.integers(0, 2**16),
       half_theta=st.integers(1, 100))
def test_fire_is_if_step(v0: list[int], seed: int, half_theta: int) -> None:
    cur = np.random.default_rng(seed).integers(-400, 400, len(v0))
    lim = membrane_limits(10)
    ref_v, v = np.array(v0, dtype=np.int64), np.array(v0, dtype=np.int64)
    ref_s = if_step(ref_v, cur.copy(), 2 * half_theta, lim)
    v += cur
    s = np.zeros(len(v0), dtype=bool)
    fire(v, 2 * half_theta, lim, s)
    np.testing.assert_array_equal(v, ref_v)
    np.testing.assert_array_equal(s, ref_s)


def _saturation_net(bits: int) -> IntNet:
    """a: fires first at step 5 (v_init 50 + 10/step reaches θ=100); b: -600/step from the input, +1200 per
    spike of a. With a 10-bit membrane b sits at -512 by step 5 and -512-600+1200 = 88 ≥ 20 fires; without
    saturation b is at 10-5·600+1200 < 0 and stays silent."""
    one = np.ones((1, 1), dtype=np.int64)
    z = np.zeros(1, dtype=np.int64)
    layers = [
        Layer("a", "if", (1,), z, 100, 50, [Synapse("input", "dense", one)], depth=1),
        Layer("b", "if", (1,), z, 20, 10, [Synapse("input", "dense", -60 * one, delay=1),
                                           Synapse("a", "dense", 1200 * one)], depth=2),
        Layer("out", "readout", (1,), z, 1, 0, [Synapse("b", "dense", one)], depth=3),
    ]
    return IntNet(mode="int", input=InputSpec((1, 1, 1), (0.0,), (1.0,), 1.0, bits=16), layers=layers, L=4,
                  profile=HardwareProfile(membrane_bits=bits))


@pytest.mark.parametrize("timing", ["sync", "pipelined"])
def test_saturation_at_negative_limit(timing: str) -> None:
    x = np.full((2, 1, 1, 1), 10.0)
    sat = simulate(_saturation_net(10), x, [4, 5, 10], timing=timing, progress=False)
    assert list(sat.spikes[10]["a"]) == [1, 1]
    assert list(sat.spikes[4]["b"]) == [0, 0] and list(sat.spikes[5]["b"]) == [1, 1]
    assert list(sat.spikes[10]["b"]) == [1, 1]
    wide = simulate(_saturation_net(24), x, [10], timing=timing, progress=False)
    assert list(wide.spikes[10]["b"]) == [0, 0]
    _, counts = brute_force(_saturation_net(10), x, 10)
    assert list(counts["b"]) == [1, 1]


def test_saturation_changes_spikes_like_brute_force() -> None:
    """A network where the negative limit binds: runtime == brute force, and differs from 24-bit."""
    net12 = random_net(7, membrane_bits=8)
    imgs = _images(2, 7)
    logits, counts = brute_force(net12, imgs, 5)
    res = simulate(net12, imgs, [5], progress=False)
    for name in counts:
        np.testing.assert_array_equal(res.spikes[5][name], counts[name])
    np.testing.assert_array_equal(res.logits[5], logits)
    wide = simulate(random_net(7, membrane_bits=24), imgs, [5], progress=False)
    assert any(not np.array_equal(wide.spikes[5][n], res.spikes[5][n]) for n in counts)


# --- metrics ---------------------------------------------------------------------------------------------
def test_fanout_dense_and_conv() -> None:
    dense = Synapse("a", "dense", np.zeros((7, 12)))
    assert synapse_fanout(dense, (3, 2, 2), (7,)) == 7.0
    conv = Synapse("a", "conv", np.zeros((5, 3, 3, 3)), padding=(1, 1, 1, 1))
    # 4x4 image, 3x3 same conv: interior neurons reach 9·5 targets, corners 4·5, edges 6·5
    expected = 5 * (4 * 9 + 8 * 6 + 4 * 4) / 16
    assert synapse_fanout(conv, (3, 4, 4), (5, 4, 4)) == pytest.approx(expected)
    strided = Synapse("a", "conv", np.zeros((2, 1, 2, 2)), stride=(2, 2))
    assert synapse_fanout(strided, (1, 4, 4), (2, 2, 2)) == pytest.approx(2.0)  # each input in one window


def test_metrics_rows() -> None:
    net = random_net(8)
    imgs = _images(4, 8)
    res = simulate(net, imgs, [2, 4], progress=False)
    stats = net_stats(net)
    labels = res.predictions(4).copy()
    rows = per_t_rows(res, stats, labels)
    assert [r["T"] for r in rows] == [2, 4]
    assert rows[1]["accuracy"] == 1.0
    total = sum(float(np.mean(c)) for c in res.spikes[4].values())
    assert rows[1]["spikes_per_sample"] == pytest.approx(total)
    assert rows[1]["spikes_per_neuron_per_step"] == pytest.approx(total / stats.total_neurons / 4)
    syn = sum(float(np.mean(res.spikes[4][n])) * stats.fanout[n] for n in stats.neurons)
    assert rows[1]["synops_per_sample"] == pytest.approx(syn)
    assert stats.fanout["d1"] == 5.0  # d1 feeds only the 5-unit readout
    assert stats.ann_macs > 0


def test_numpy_runtime_does_not_import_torch(tmp_path: Path) -> None:
    net_path = random_net(0).save(tmp_path / "net.intnet.npz")
    code = (
        "import sys, numpy as np\n"
        "from qcfs.intnet import load_intnet\n"
        "from qcfs.runtime.numpy_snn import simulate\n"
        "from qcfs.runtime.metrics import net_stats\n"
        f"net = load_intnet({str(net_path)!r})\n"
        "r = simulate(net, np.random.default_rng(0).uniform(0, 1, (2, 2, 8, 8)), [2], progress=True)\n"
        "net_stats(net)\n"
        "assert r.logits[2].shape == (2, 5)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_saved_intnet_round_trip_same_result(tmp_path: Path) -> None:
    from qcfs.intnet import load_intnet

    net = random_net(9)
    imgs = _images(2, 9)
    _assert_same(simulate(net, imgs, [3], progress=False),
                 simulate(load_intnet(net.save(tmp_path / "n.intnet.npz")), imgs, [3], progress=False))
