"""The spike-driven (sparse) synapse path and the sliced IF update give the NumPy reference's integers bit for bit.

Why these cases: the sparse im2col must reproduce every geometry the dense plan handles (strides, asymmetric
padding, factored sum-pools, separate sum-pool stages, 1×1 shortcuts, dense layers, graded payloads), at the
density extremes (no event, every input an event), in every loop (layer-major, step-major, pipelined) and
when chunked; "auto" may take either path per call, so it must agree too. The layer-major loop's float
membranes (membrane_dtype) and cache-sized slices (numpy_neuron) are checked against the step-major loop's
int64 membranes, including saturation and the int64 fallback.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphs_by_hand
import lava_nets
from snn_reference import brute_force, random_net
from qcfs.intnet import Synapse, SumPool
from qcfs.runtime import numpy_neuron, numpy_sparse, synapse_choice
from qcfs.runtime.numpy_snn import compile_net, membrane_dtype, simulate
from qcfs.runtime.numpy_synapse import SynapsePlan
from qcfs.toolchain.graded import make_graded

MODES = ("dense", "sparse", "auto")


def _same(a, b, Ts) -> None:  # type: ignore[no-untyped-def]
    """Logits, per-layer spike messages and (graded) payload sums identical at every T."""
    assert a.Ts == b.Ts == sorted(Ts)
    for t in Ts:
        assert a.logits[t].dtype == b.logits[t].dtype
        np.testing.assert_array_equal(a.logits[t], b.logits[t], err_msg=f"logits T={t}")
        assert set(a.spikes[t]) == set(b.spikes[t])
        for k in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][k], b.spikes[t][k], err_msg=f"{k} T={t}")
            np.testing.assert_array_equal(a.spike_values(t)[k], b.spike_values(t)[k], err_msg=f"{k} T={t}")


def _runs(net, x, Ts, **kw):  # type: ignore[no-untyped-def]
    return {mode: simulate(net, x, Ts, synapse=mode, progress=False, **kw) for mode in MODES}


def _assert_all_equal(net, x, Ts, **kw) -> None:  # type: ignore[no-untyped-def]
    ref = simulate(net, x, Ts, synapse="dense", order="step", progress=False)
    assert sum(int(c.sum()) for c in ref.spikes[Ts[-1]].values()) > 0, "the test net must spike"
    for mode, res in _runs(net, x, Ts, **kw).items():
        _same(ref, res, Ts)


# --- one synapse: sparse current == dense current ----------------------------------------------------------
def _conv(o: int, c: int, k: int, stride: int, padding, seed: int, groups: int = 1) -> Synapse:
    w = np.random.default_rng(seed).integers(-5, 6, size=(o, c // groups, k, k)).astype(np.int64)
    return Synapse("a", "conv", w, stride=(stride, stride), padding=tuple(padding), groups=groups)


SYNAPSES = {
    "3x3 pad 1": (_conv(5, 3, 3, 1, (1, 1, 1, 1), 0), (3, 7, 6)),
    "3x3/s2 asymmetric pad": (_conv(4, 3, 3, 2, (0, 1, 2, 0), 1), (3, 9, 8)),
    "1x1/s2 shortcut": (_conv(6, 4, 1, 2, (0, 0, 0, 0), 2), (4, 6, 6)),
    "1x1 pointwise": (_conv(3, 4, 1, 1, (0, 0, 0, 0), 3), (4, 5, 5)),
    "5x5 no pad": (_conv(2, 2, 5, 1, (0, 0, 0, 0), 4), (2, 6, 7)),
    "pool-composed 4x4/s2": (Synapse("a", "conv", np.repeat(np.repeat(
        np.random.default_rng(5).integers(-3, 4, size=(3, 2, 2, 2)), 2, axis=2), 2, axis=3).astype(np.int64),
        stride=(2, 2), padding=(2, 0, 0, 2)), (2, 8, 8)),
    "sum-pool stage + 3x3": (Synapse("a", "conv", np.random.default_rng(6).integers(-4, 5, size=(3, 2, 3, 3)),
                                     padding=(1, 1, 1, 1), pool=SumPool((2, 2), (2, 2))), (2, 8, 8)),
    "dense from a map": (Synapse("a", "dense", np.random.default_rng(7).integers(-6, 7, size=(9, 2 * 3 * 4))),
                         (2, 3, 4)),
}


@pytest.mark.parametrize("name", list(SYNAPSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scatter", [True, False], ids=["stride-1 scatter", "row gather only"])
def test_sparse_current_equals_dense(name: str, dtype: type, scatter: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(numpy_sparse, "SCATTER_STRIDE1", scatter)
    syn, shape = SYNAPSES[name]
    dense = SynapsePlan(syn, shape, np.dtype(dtype), "dense")
    sparse = SynapsePlan(syn, shape, np.dtype(dtype), "sparse")
    assert sparse.sparse_ok
    rng = np.random.default_rng(11)
    cl = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    maps = {f"bool p={p}": rng.random((5, *cl)) < p for p in (0.0, 0.1, 0.5, 1.0)}
    maps["graded m=3"] = (rng.random((5, *cl)) < 0.3) * rng.integers(1, 4, size=(5, *cl)).astype(np.uint8)
    maps["graded all 7"] = np.full((2, *cl), 7, dtype=np.uint8)
    for label, src in maps.items():
        want = np.array(dense(src))
        got = np.array(sparse(src))
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want, err_msg=f"{name}, {label}")
        if label == "bool p=1.0":
            assert np.any(want != 0)
    monkeypatch.setattr(numpy_sparse, "SPARSE_CHUNK_ENTRIES", 1)  # one image per chunk
    monkeypatch.setattr(numpy_sparse, "SCATTER_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(np.array(sparse(maps["bool p=0.1"])), np.array(dense(maps["bool p=0.1"])))


def test_grouped_conv_stays_dense() -> None:
    plan = SynapsePlan(_conv(4, 4, 3, 1, (1, 1, 1, 1), 8, groups=2), (4, 5, 5), np.dtype(np.float32), "sparse")
    assert not plan.sparse_ok  # CSR @ W needs one weight matrix; the plan falls back to its dense GEMMs
    src = np.random.default_rng(0).random((3, 5, 5, 4)) < 0.2
    ref = SynapsePlan(_conv(4, 4, 3, 1, (1, 1, 1, 1), 8, groups=2), (4, 5, 5), np.dtype(np.float32), "dense")
    np.testing.assert_array_equal(np.array(plan(src)), np.array(ref(src)))


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="synapse"):
        simulate(random_net(0), np.zeros((1, 2, 8, 8)), [1], synapse="csr", progress=False)


# --- whole networks: every mode and loop gives the same integers --------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("membrane_bits", [24, 10])  # 10 bits: membranes saturate
def test_random_nets_plain_pooled_residual(seed: int, membrane_bits: int) -> None:
    """random_net: pool-composed conv, grouped conv + strided 1×1 residual with delay, dense, skip readout."""
    net = random_net(seed, "int", membrane_bits=membrane_bits)
    x = np.random.default_rng(seed).uniform(0, 1, (6, 2, 8, 8))
    _assert_all_equal(net, x, [1, 3, 7], batch_size=4)
    for mode in ("sparse", "auto"):
        _same(simulate(net, x, [1, 3, 7], synapse="dense", order="step", progress=False),
              simulate(net, x, [1, 3, 7], synapse=mode, order="step", progress=False), [1, 3, 7])
    logits, counts = brute_force(net, x[:2], 3)
    res = simulate(net, x[:2], [3], synapse="sparse", progress=False)
    np.testing.assert_array_equal(res.logits[3], logits)
    for name, c in counts.items():
        np.testing.assert_array_equal(res.spikes[3][name], c, err_msg=name)


@pytest.mark.parametrize("make", [lava_nets.digits_net, lava_nets.fashion_net, lava_nets.vgg_net,
                                  lava_nets.residual_net], ids=lambda f: f.__name__)
def test_lava_nets_every_mode_and_pipelined(make) -> None:  # type: ignore[no-untyped-def]
    net = make()
    x = lava_nets.images(net, 6, seed=1)
    _assert_all_equal(net, x, [1, 4])
    ref = simulate(net, x, [1, 4], timing="pipelined", synapse="dense", progress=False)
    _same(ref, simulate(net, x, [1, 4], timing="pipelined", synapse="sparse", progress=False), [1, 4])


@pytest.mark.parametrize("m", [2, 3])
def test_graded_spikes(m: int) -> None:
    for make in (lava_nets.digits_net, lava_nets.residual_net):
        g = make_graded(make(), m)
        x = lava_nets.images(g, 8, seed=4)
        ref = simulate(g, x, [1, 3], synapse="dense", order="step", progress=False)
        assert any(np.any(ref.values[3][k] > ref.spikes[3][k]) for k in ref.spikes[3])  # payloads > 1 occur
        for mode, res in _runs(g, x, [1, 3]).items():
            _same(ref, res, [1, 3])


@pytest.mark.parametrize("name", ["vgg_block", "resnet_block"])
def test_separate_pool_stages(name: str) -> None:
    from qcfs.toolchain.convert import convert

    net = convert(getattr(graphs_by_hand, name)(), pool="separate")
    assert any(s.pool is not None for layer in net.layers for s in layer.synapses)
    x = np.random.default_rng(3).random((5, *net.input.shape))
    _assert_all_equal(net, x, [1, 2, 5])


@pytest.mark.parametrize("bias", [-100_000, 1000], ids=["silent", "every neuron every step"])
def test_no_events_and_all_events(bias: int) -> None:
    """Biases far below (above) anything the synapses can add: no neuron ever spikes (empty CSR matrices
    everywhere) resp. every neuron spikes every step (density 1, the worst case for the sparse path)."""
    net = random_net(1, "int")
    for layer in net.if_layers:
        layer.bias = np.full_like(np.asarray(layer.bias), bias * (1 if bias < 0 else int(layer.threshold)))
    x = np.random.default_rng(1).uniform(0, 1, (3, 2, 8, 8))
    ref = simulate(net, x, [1, 4], synapse="dense", order="step", progress=False)
    for layer in net.if_layers:
        want = 0 if bias < 0 else 4 * int(np.prod(layer.shape))
        np.testing.assert_array_equal(ref.spikes[4][layer.name], want, err_msg=layer.name)
    for res in _runs(net, x, [1, 4]).values():
        _same(ref, res, [1, 4])


def test_auto_crossover_is_measured_once_and_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(synapse_choice, "_CROSSOVER", {})
    net = random_net(2, "int")
    x = np.random.default_rng(2).uniform(0, 1, (4, 2, 8, 8))
    simulate(net, x, [3], synapse="auto", progress=False)
    found = synapse_choice.crossovers()
    assert found and all(0.0 <= d <= synapse_choice.SAFETY for d in found.values())
    calls = []
    monkeypatch.setattr(synapse_choice, "_best_time", lambda f, reps=2: calls.append(f) or 1.0)
    simulate(net, x, [3], synapse="auto", progress=False)
    assert not calls  # cached per process: no second calibration


def test_crossover_from_timings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The crossover is where the sparse time (linear in the density, two measurements) meets the dense
    time, times SAFETY; 0 when sparse loses even at the low density; measured once per key."""
    monkeypatch.setattr(synapse_choice, "_CROSSOVER", {})
    times = iter([1.0, 0.2, 2.0, 1.0, 1.5, 3.0])  # per calibration: dense, sparse at d_lo, sparse at d_hi
    monkeypatch.setattr(synapse_choice, "_best_time", lambda f, reps=2: next(times))
    lo, hi = synapse_choice.DENSITIES
    args = ((1000,), np.dtype(bool), 1 << 20, lambda x: None, lambda x: None)  # 32 samples × 1000 inputs
    got = synapse_choice.crossover(("a",), *args)
    assert got == pytest.approx(synapse_choice.SAFETY * (lo + (1.0 - 0.2) * (hi - lo) / (2.0 - 0.2)), rel=0.05)
    assert synapse_choice.crossover(("a",), *args) == got  # cached: no timing consumed
    assert synapse_choice.crossover(("b",), *args) == 0.0  # sparse slower at d_lo already: never sparse
    assert synapse_choice.crossovers() == {("a",): got, ("b",): 0.0}


@pytest.mark.parametrize("cross", [0.0, 1.0])
def test_auto_follows_the_crossover(cross: float, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Crossover 0: every call dense; 1: every call with any zero input sparse. Same integers either way."""
    used: list[bool] = []
    real = SynapsePlan._sparse
    monkeypatch.setattr(synapse_choice, "crossover", lambda *a, **k: cross)
    monkeypatch.setattr("qcfs.runtime.numpy_synapse.crossover", lambda *a, **k: cross)
    monkeypatch.setattr(SynapsePlan, "_sparse", lambda self, x, *rest: used.append(True) or real(self, x, *rest))
    net = random_net(0, "int")
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, 8, 8))
    ref = simulate(net, x, [2, 5], synapse="dense", progress=False)
    assert not used
    _same(ref, simulate(net, x, [2, 5], synapse="auto", progress=False), [2, 5])
    assert bool(used) == (cross > 0)


# --- the layer-major membrane: float where proved exact, sliced ---------------------------------------------
def test_membrane_dtype_is_proved() -> None:
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert membrane_dtype(f32, 1000.0, 5, 10, 24) == f32
    assert membrane_dtype(f32, 2.0**23, 5, 10, 24) == f64  # 2^23 + 2^23 is not below 2^24
    assert membrane_dtype(f64, 10.0, 5, 10, 24) == f64
    assert membrane_dtype(f32, 10.0, 5, 2**25, 16) == f64  # θ itself beyond float32's integers
    assert membrane_dtype(f32, 10.0, np.array([1, -2**30]), 10, 16) == f64  # a per-channel v_init
    assert membrane_dtype(f64, 2.0**53, 0, 10, 24) == np.dtype(np.int64)
    plans = compile_net(random_net(0, "int"))
    assert {lp.mem_dtype for lp in plans[:-1]} == {f32}  # the fast path is what the other tests exercise


@pytest.mark.parametrize("slice_bytes", [8, 8 * 37, 1 << 30])
def test_sliced_if_update_equals_step_major(slice_bytes: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(numpy_neuron, "IF_SLICE_BYTES", slice_bytes)
    for bits in (24, 10):
        net = random_net(3, "int", membrane_bits=bits)
        x = np.random.default_rng(3).uniform(0, 1, (5, 2, 8, 8))
        ref = simulate(net, x, [1, 4, 9], order="step", progress=False)
        _same(ref, simulate(net, x, [1, 4, 9], progress=False), [1, 4, 9])


def test_int64_membrane_fallback(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Where no float dtype is proved exact the layer-major loop keeps int64 membranes (converting currents)."""
    monkeypatch.setattr("qcfs.runtime.numpy_snn.membrane_dtype", lambda *a: np.dtype(np.int64))
    net = random_net(4, "int", membrane_bits=12)
    x = np.random.default_rng(4).uniform(0, 1, (5, 2, 8, 8))
    assert {lp.mem_dtype for lp in compile_net(net)[:-1]} == {np.dtype(np.int64)}
    ref = simulate(net, x, [2, 6], order="step", progress=False)
    _same(ref, simulate(net, x, [2, 6], progress=False), [2, 6])
