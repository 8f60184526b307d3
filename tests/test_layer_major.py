"""Layer-major sync evaluation (the NumPy default): identical integers to the literal step-major loop.

Why a separate check: layer-major reorders the (layer, step) grid and batches T·B spike maps into one GEMM;
the step-major loop is the reference it must reproduce, on residual/grouped/pooled nets, per-channel v_init,
saturating membranes, memory-bounded chunks and rasters.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from snn_reference import brute_force, random_net  # noqa: E402

from qcfs.runtime import numpy_snn  # noqa: E402
from qcfs.runtime.numpy_snn import compile_net, layer_major_batch, simulate  # noqa: E402

pytestmark = pytest.mark.isa  # every test here: make test reruns them on an emulated AVX2-only CPU


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 2, 8, 8))


def _same(a, b, exact: bool = True) -> None:  # type: ignore[no-untyped-def]
    assert a.Ts == b.Ts
    for t in a.Ts:
        for name in a.spikes[t]:
            np.testing.assert_array_equal(a.spikes[t][name], b.spikes[t][name], err_msg=f"T={t} {name}")
        if exact:
            assert a.logits[t].dtype == b.logits[t].dtype == np.int64
            np.testing.assert_array_equal(a.logits[t], b.logits[t], err_msg=f"logits T={t}")
        else:
            np.testing.assert_allclose(a.logits[t], b.logits[t], rtol=1e-12, atol=1e-9)


def _per_channel(net, seed: int):  # type: ignore[no-untyped-def]
    """Per-channel v_init (integer, around θ/2) on every IF layer, as calibration writes it."""
    rng = np.random.default_rng(seed)
    for layer in net.if_layers:
        th = int(layer.threshold)
        layer.v_init = rng.integers(-th // 2, th + 1, layer.channels).astype(np.int64)
    return net


@pytest.mark.parametrize("membrane_bits", [24, 10])  # 10 bits: membranes saturate
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_major_equals_step_major(seed: int, membrane_bits: int) -> None:
    net = random_net(seed, "int", membrane_bits=membrane_bits)
    imgs = _images(7, seed)
    Ts = [1, 2, 5, 9]
    layer = simulate(net, imgs, Ts, batch_size=3, progress=False, raster_neurons=6)
    step = simulate(net, imgs, Ts, batch_size=3, progress=False, raster_neurons=6, order="step")
    assert sum(int(c.sum()) for c in step.spikes[9].values()) > 0
    _same(layer, step)
    assert set(layer.raster) == set(step.raster)
    for name in step.raster:
        np.testing.assert_array_equal(layer.raster[name], step.raster[name], err_msg=name)


@pytest.mark.parametrize("seed", [3, 4])
def test_layer_major_per_channel_v_init(seed: int) -> None:
    net = _per_channel(random_net(seed, "int", membrane_bits=12), seed)
    assert all(layer.per_channel_v_init for layer in net.if_layers)
    imgs = _images(4, seed)
    layer = simulate(net, imgs, [3, 6], progress=False)
    _same(layer, simulate(net, imgs, [3, 6], progress=False, order="step"))
    logits, counts = brute_force(net, imgs, 6)
    np.testing.assert_array_equal(layer.logits[6], logits)
    for name, c in counts.items():
        np.testing.assert_array_equal(layer.spikes[6][name], c, err_msg=name)


def test_layer_major_float_mode() -> None:
    net = random_net(5, "float")
    imgs = _images(5, 5)
    _same(simulate(net, imgs, [2, 7], progress=False), simulate(net, imgs, [2, 7], progress=False, order="step"),
          exact=False)


def test_layer_major_chunks_within_budget(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    net = random_net(6, "int")
    plans = compile_net(net)
    neurons = sum(int(np.prod(lp.shape)) for lp in plans)
    assert layer_major_batch(plans, 10, np.int64, budget=10**12) > 1000
    tiny = 10 * neurons * 3  # room for about one sample
    assert layer_major_batch(plans, 10, np.int64, budget=tiny) == 1
    imgs = _images(5, 6)
    ref = simulate(net, imgs, [4, 10], progress=False, order="step")
    monkeypatch.setattr(numpy_snn, "LAYER_MAJOR_BYTES", tiny)  # one sample per chunk
    _same(simulate(net, imgs, [4, 10], batch_size=64, progress=False), ref)


def test_order_is_checked() -> None:
    with pytest.raises(ValueError, match="order"):
        simulate(random_net(0), _images(1, 0), [2], order="diagonal", progress=False)


@pytest.mark.parametrize("block_bytes", [1, 3 * 8 * 4 * 64, 1 << 40])  # one step, a few steps, all T
def test_time_blocks_equal_step_major(monkeypatch, block_bytes: int) -> None:  # type: ignore[no-untyped-def]
    net = _per_channel(random_net(7, "int", membrane_bits=12), 7)
    imgs = _images(3, 7)
    ref = simulate(net, imgs, [1, 4, 9], progress=False, order="step", raster_neurons=5)
    monkeypatch.setattr(numpy_snn, "LAYER_MAJOR_BLOCK_BYTES", block_bytes)
    got = simulate(net, imgs, [1, 4, 9], progress=False, raster_neurons=5)
    _same(got, ref)
    for name in ref.raster:
        np.testing.assert_array_equal(got.raster[name], ref.raster[name], err_msg=name)


@pytest.mark.parametrize("threads", [1, 3])
def test_worker_shares_equal_step_major(threads: int) -> None:
    """The chunk's samples split between worker threads (3 uneven shares of 7; each worker's scratch shared by
    all its plans and kept between calls) give the step-major integers and sample 0's raster, on every call,
    also after a net of other shapes has used the pooled scratch."""
    net = _per_channel(random_net(8, "int", membrane_bits=12), 8)
    imgs = _images(7, 8)
    ref = simulate(net, imgs, [2, 5], progress=False, order="step", raster_neurons=5)
    for other in (None, random_net(9, "int")):
        if other is not None:
            simulate(other, _images(5, 9), [3], progress=False, threads=threads)
        got = simulate(net, imgs, [2, 5], batch_size=7, progress=False, raster_neurons=5, threads=threads)
        _same(got, ref)
        for name in ref.raster:
            np.testing.assert_array_equal(got.raster[name], ref.raster[name], err_msg=name)


def test_saturation_free_bound() -> None:
    """|v| ≤ |v0| + t·B along random IF runs (binary and graded spikes, currents |c| ≤ B), the bound the
    layer-major loop uses to skip the clip; and the skip is taken or not as the bound says."""
    from qcfs.semantics import fire, saturation_free

    rng = np.random.default_rng(0)
    for _ in range(300):
        theta, bound, m = int(rng.integers(1, 40)), int(rng.integers(1, 90)), int(rng.choice([1, 3]))
        v = rng.integers(-2 * theta, 2 * theta + 1, 64)
        reach = int(np.abs(v).max())
        s = np.empty(64, bool if m == 1 else np.uint8)
        for t in range(1, 12):
            v += rng.integers(-bound, bound + 1, 64)
            reach += bound
            assert np.abs(v).max() <= reach
            fire(v, theta, None, s, m)
            assert np.abs(v).max() <= reach
    assert saturation_free(10, 5, 3, (-32, 31)) and not saturation_free(10, 5, 5, (-32, 31))
    assert saturation_free(10 ** 9, 10 ** 9, 10 ** 9, None)
    T = 9
    for bits, expect_clip in ((24, False), (10, True)):  # the nets of test_layer_major_equals_step_major
        plans = compile_net(random_net(0, "int", membrane_bits=bits))
        lim = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        clips = [not saturation_free(float(np.abs(lp.v_init).max()), lp.current_bound, T, lim) for lp in plans[:-1]]
        assert any(clips) == expect_clip, clips


def test_workers_wait_for_every_share_before_raising() -> None:
    """A failing share (here the caller's own) must not return control while another share still runs: the
    caller would hand its scratch buffers to the next call while they are being written."""
    import threading
    import time

    from qcfs.runtime.workers import Workers

    done = threading.Event()

    def share(j: int) -> None:
        if j == 0:
            raise RuntimeError("share 0 failed")
        time.sleep(0.2)
        done.set()

    workers = Workers(2)
    with pytest.raises(RuntimeError, match="share 0"):
        workers.each(share, 2)
    assert done.is_set()
    workers.close()
