"""IF process on one layer vs qcfs.semantics (Theorem 1 at T = L), and the im2col Conv model vs Lava's."""

from __future__ import annotations

import numpy as np
import pytest

from lava_helpers import requires_lava
from qcfs.intnet import InputSpec, IntNet, Layer, Synapse
from qcfs.semantics import constant_input_spike_count

pytestmark = requires_lava


def _one_layer_net(k: int, theta: int, bias: np.ndarray, L: int) -> IntNet:
    """input (1, 1, k) -> identity dense -> k IF neurons -> identity readout; current = x_int + bias."""
    eye = np.eye(k, dtype=np.int64)
    return IntNet(
        mode="int",
        input=InputSpec(shape=(1, 1, k), mean=(0.0,), std=(1.0,), scale=127.0, bits=8),
        layers=[
            Layer("if1", "if", (k,), bias, theta, theta // 2, [Synapse("input", "dense", eye)], depth=1),
            Layer("out", "readout", (k,), np.zeros(k, np.int64), 1, 0, [Synapse("if1", "dense", eye)], depth=2),
        ],
        L=L,
    )


@pytest.mark.timeout(120)
def test_theorem1_one_layer_and_readout() -> None:
    from qcfs.runtime.lava.backend import simulate_lava

    L, theta, k = 8, 200, 64
    rng = np.random.default_rng(0)
    bias = rng.integers(-250, 250, size=k)
    x01 = rng.random((3, 1, 1, k))  # x_int = rint(127 x) in [0, 127]
    res = simulate_lava(_one_layer_net(k, theta, bias, L), x01, [1, L // 2, L], progress=False, timeout_s=100)
    x_int = np.rint(x01.reshape(3, k) * 127).astype(np.int64)
    current = x_int + bias
    for n in range(3):
        for T in (1, L // 2, L):
            per_neuron = [constant_input_spike_count(float(c), theta, T) for c in current[n]]
            assert res.spikes[T]["if1"][n] == sum(per_neuron)
            if T == L:  # Theorem 1: count = clip(floor(x·T/θ + φ), 0, T), readout accumulates the spikes
                closed = np.clip(np.floor(current[n] * T / theta + 0.5), 0, T).astype(np.int64)
                assert np.array_equal(res.logits[T][n], closed)
    counts = res.spikes[L]["if1"]
    assert 0 < counts.min() and counts.max() < L * k  # neither silent nor saturated


def test_im2col_plan_matches_lava_conv_utils() -> None:
    """Our Conv model's arithmetic equals Lava's own conv (scipy) in Lava's layout, incl. groups/stride."""
    from qcfs.runtime.lava.compat import ensure_lava

    ensure_lava()
    from lava.proc.conv import utils

    from qcfs.runtime.lava.conv_model import Im2colPlan

    rng = np.random.default_rng(1)
    for (cin, cout, k, s, p, g) in [(3, 8, 3, 1, 1, 1), (8, 8, 6, 2, 2, 1), (8, 8, 3, 1, 1, 2), (4, 6, 1, 1, 0, 1)]:
        x = rng.integers(-128, 128, size=(9, 10, cin))  # (W, H, C), graded
        w = rng.integers(-128, 128, size=(cout, k, k, cin // g))
        ref = utils.conv_scipy(x, w, (k, k), (s, s), (p, p), (1, 1), g)
        got = Im2colPlan(w, x.shape, (s, s), (p, p, p, p), g, max_abs_input=128)(x)
        assert np.array_equal(got, ref.astype(np.int64))
