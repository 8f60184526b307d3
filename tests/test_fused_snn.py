"""fused backend (onnxruntime int8 GEMMs + numba gather and IF loops): counts and logits bit-identical to the
NumPy reference on residual/grouped/pooled synapses, saturating membranes, per-channel v_init, graded spikes,
separate sum-pool stages and the shipped models, for every chunking; refusals are ValueErrors (one line in
the CLI), never an inexact run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import lava_nets  # noqa: E402
from snn_reference import random_net  # noqa: E402
from test_layer_major import _per_channel  # noqa: E402
from test_ort_snn import _identical, _images, _one_line  # noqa: E402

from qcfs.cli import run as run_cli  # noqa: E402
from qcfs.intnet import IntNet  # noqa: E402
from qcfs.runtime.fused_snn import FusedPlan, simulate_fused  # noqa: E402
from qcfs.runtime.numpy_snn import simulate  # noqa: E402

pytest.importorskip("numba")
pytestmark = pytest.mark.isa  # every test here: make test reruns them on an emulated AVX2-only CPU

MODELS = Path(__file__).resolve().parents[1] / "models"


def _check(net: IntNet, images: np.ndarray, Ts: list[int], batch: int = 3) -> None:
    ref = simulate(net, images, Ts, progress=False, order="step")
    got = simulate_fused(net, images, Ts, batch_size=batch, progress=False)
    assert got.backend == "fused" and got.timing == "sync" and got.max_spikes == ref.max_spikes
    assert sum(int(c.sum()) for c in ref.spikes[max(Ts)].values()) > 0, "degenerate net: no spikes"
    _identical(ref, got)
    for t in Ts:
        for name, v in ref.values.get(t, {}).items():
            np.testing.assert_array_equal(v, got.values[t][name], err_msg=f"values T={t} {name}")


@pytest.mark.parametrize("membrane_bits", [24, 10])  # 10 bits: membranes saturate
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_net_bit_identical(seed: int, membrane_bits: int) -> None:
    """Pool-composed stride-2 conv, asymmetric padding, grouped conv + 1×1/s2 residual into one GEMM, dense."""
    _check(random_net(seed, "int", membrane_bits=membrane_bits), _images(7, seed), [1, 3, 8])


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_chunking_does_not_change_the_result(batch: int) -> None:
    _check(random_net(1, "int"), _images(7, 11), [2, 5], batch=batch)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_data_parallel_shares_do_not_change_the_result(threads: int) -> None:
    """Each worker runs the whole net on its share of a chunk (FusedPlan.run): 1 share, and 3 uneven shares of 7."""
    net, images = random_net(2, "int"), _images(7, 12)
    ref = simulate(net, images, [2, 5], progress=False, order="step")
    _identical(ref, simulate_fused(net, images, [2, 5], batch_size=7, threads=threads, progress=False))


def test_per_channel_v_init_and_wide_input_bits() -> None:
    _check(_per_channel(random_net(3, "int", membrane_bits=12), 3), _images(5, 3), [2, 6])
    net = random_net(6, "int")
    net.input.bits, net.input.scale = 12, 512.0  # 12-bit input: the constant current is not int8
    _check(net, _images(4, 6), [3])


@pytest.mark.parametrize("m", [2, 3])
def test_graded_spikes_and_per_neuron_v_init(m: int) -> None:
    from qcfs.toolchain.graded import make_graded

    for make in (lava_nets.digits_net, lava_nets.residual_net):
        g = make_graded(make(), m)
        _check(g, lava_nets.images(g, 9, seed=4), [1, 2, 3])
    net = lava_nets.residual_net()
    for layer in net.if_layers:  # one v_init per neuron, as per-neuron calibration writes it
        rng = np.random.default_rng(5)
        layer.v_init = rng.integers(0, int(layer.threshold), int(np.prod(layer.shape))).astype(np.float64)
    _check(net, lava_nets.images(net, 9, seed=5), [1, 4])


def test_separate_sum_pool_stages() -> None:
    import graphs_by_hand
    from qcfs.toolchain.convert import convert

    for model in (graphs_by_hand.vgg_block(), graphs_by_hand.resnet_block()):
        sep = convert(model, mode="int", pool="separate")
        assert any(s.pool is not None for layer in sep.layers for s in layer.synapses)
        x = np.random.default_rng(3).uniform(0, 1, (6, *sep.input.shape))
        _check(sep, x, [1, 3, 5])


def test_refusals_are_value_errors() -> None:
    net = random_net(5, "int")
    net.layer("c4").synapses[0].weight[0, 0, 0, 0] = 300  # beyond int8: the int8 GEMM cannot hold it
    with pytest.raises(ValueError, match="exceed int8"):
        FusedPlan(net)
    with pytest.raises(ValueError, match="integer-mode"):
        FusedPlan(random_net(0, "float"))
    net = random_net(0, "int")
    net.layer("c2").bias = net.layer("c2").bias + 0.5
    with pytest.raises(ValueError, match="non-integer bias"):
        FusedPlan(net)


def test_qcfs_run_default_is_fused_only_where_it_runs() -> None:
    """qcfs-run without --backend (qcfs.simulate.fused_or_numpy): fused where FusedPlan accepts the network,
    the NumPy reference for each refusal above."""
    from qcfs.simulate import fused_or_numpy

    assert fused_or_numpy(random_net(5, "int")) == "fused"
    wide = random_net(5, "int")
    wide.layer("c4").synapses[0].weight[0, 0, 0, 0] = 300
    assert fused_or_numpy(wide) == fused_or_numpy(random_net(0, "float")) == "numpy"


def test_an_input_current_beyond_float64_is_refused_as_by_numpy() -> None:
    """Both runtimes compute the input-fed current as one float64 GEMM (numpy_synapse.input_current_bound)."""
    from qcfs.runtime.numpy_snn import compile_net

    net = random_net(0, "int")
    syn = next(s for layer in net.layers for s in layer.synapses if s.source == "input")
    syn.weight = np.full(syn.weight.shape, 2**50, dtype=np.int64)  # × 2^(input bits − 1) per input: beyond 2^53
    with pytest.raises(ValueError, match="not exact in float64"):
        compile_net(net)
    with pytest.raises(ValueError, match="not exact in float64"):
        FusedPlan(net)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10", "cifar10-resnet20"])
def test_shipped_models_bit_identical(dataset: str) -> None:
    from qcfs import pipeline

    net = pipeline.to_intnet(pipeline.canonical_onnx(MODELS / dataset / "model.onnx"), mode="int")
    _check(net, _images(4, 7, tuple(net.input.shape)), [1, 4], batch=4)


def test_cli_run_equals_numpy_and_refuses_pipelined(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = {}
    for backend in ("fused", "numpy"):
        path = tmp_path / f"{backend}.npz"
        assert run_cli.main(["--model", str(MODELS / "digits" / "model.onnx"), "--backend", backend,
                             "--dataset", "digits", "--T", "1,6", "--limit", "40", "--batch", "16",
                             "--counts", str(path), "--no-progress"]) == 0
        with np.load(path) as npz:
            out[backend] = {k: npz[k] for k in npz.files}
    assert "backend fused" in capsys.readouterr().out
    for key, arr in out["numpy"].items():
        np.testing.assert_array_equal(arr, out["fused"][key], err_msg=key)
    _one_line(capsys, run_cli.main, ["--model", str(MODELS / "digits" / "model.onnx"), "--backend", "fused",
                                     "--dataset", "digits", "--timing", "pipelined"], "layer-synchronous")


@pytest.mark.parametrize("m", [1, 3])
def test_if_kernel_is_semantics_fire_with_saturation(m: int) -> None:
    """The numba IF loop against qcfs.semantics.fire step by step, with currents that drive the membranes
    into both ends of an 8-bit register (whole-network tests rarely reach them)."""
    from qcfs.runtime.fused_snn import kernels
    from qcfs.semantics import fire, membrane_limits

    _, _, if_layer = kernels()
    rng = np.random.default_rng(m)
    T, B, n, theta = 9, 4, 50, 20
    lo, hi = membrane_limits(8)
    cur = rng.integers(-90, 90, (T, B, n)).astype(np.int32)
    const = rng.integers(-30, 30, (B, n)).astype(np.int64)
    v0 = rng.integers(0, theta, n).astype(np.int64)
    spikes = np.empty((T, B, n), np.uint8)
    counts, values = np.empty((T, B), np.int64), np.empty((T, B), np.int64)
    if_layer(cur, True, const, True, v0, theta, lo, hi, m, spikes, counts, values)
    v = np.broadcast_to(v0, (B, n)).copy()
    saturated = 0
    for t in range(T):
        v += cur[t]
        v += const
        saturated += int(np.sum((v < lo) | (v > hi)))
        s = np.zeros((B, n), bool if m == 1 else np.uint8)
        fire(v, theta, (lo, hi), s, m)
        np.testing.assert_array_equal(spikes[t], s, err_msg=f"t={t}")
        np.testing.assert_array_equal(counts[t], np.count_nonzero(s, axis=1))
        np.testing.assert_array_equal(values[t], s.sum(axis=1, dtype=np.int64))
    assert saturated > 50, "the test must drive membranes into saturation"
