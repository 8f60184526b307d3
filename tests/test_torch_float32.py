"""torch runtime's float32 path: chosen per layer only where the 2^24 bound proves it exact, and then
bit-identical to the NumPy reference (on CPU: the same code path the GPU runs, less the cuDNN bypass)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from snn_reference import random_net  # noqa: E402
from test_layer_major import _per_channel  # noqa: E402
from test_torch_runtime import _assert_identical  # noqa: E402

from qcfs.runtime.numpy_snn import simulate  # noqa: E402
from qcfs.runtime.torch_snn import layer_dtypes, simulate_torch  # noqa: E402

pytestmark = pytest.mark.kernels  # exact by proof on any kernel set: `make test` checks it under a second one


def test_float32_chosen_only_where_proved() -> None:
    net = random_net(0, "int", membrane_bits=24)
    dts = {layer.name: layer_dtypes(net, layer) for layer in net.layers}
    assert all(d.current == torch.float32 for d in dts.values())
    assert dts["c2"].membrane == torch.float32 and dts["out"].membrane == torch.float64
    assert all(layer_dtypes(net, l, "float64").current == torch.float64 for l in net.layers)
    net.layer("d1").synapses[0].weight[0, 0] = 2**24  # bound fails: float64 for that layer only
    assert layer_dtypes(net, net.layer("d1")).current == torch.float64
    assert layer_dtypes(net, net.layer("c4")).current == torch.float32
    wide = random_net(0, "int", membrane_bits=25)  # |v| up to 2^24: float32 current, float64 membrane
    d = layer_dtypes(wide, wide.layer("c2"))
    assert d.current == torch.float32 and d.membrane == torch.float64
    unflagged = random_net(0, "int", float32_exact=False)
    assert all(layer_dtypes(unflagged, l).current == torch.float64 for l in unflagged.layers)


@pytest.mark.parametrize("membrane_bits", [24, 12, 25])  # 12: saturation; 25: float64 membranes
@pytest.mark.parametrize("seed", [0, 1])
def test_float32_path_bit_identical(seed: int, membrane_bits: int) -> None:
    net = random_net(seed, "int", membrane_bits=membrane_bits)
    images = np.random.default_rng(seed).uniform(0, 1, (7, 2, 8, 8))
    ref = simulate(net, images, [1, 3, 8], batch_size=3, progress=False, order="step")
    got = simulate_torch(net, images, [1, 3, 8], batch_size=3, device="cpu", progress=False)
    assert sum(int(c.sum()) for c in ref.spikes[8].values()) > 0
    _assert_identical(ref, got)
    _assert_identical(ref, simulate_torch(net, images, [1, 3, 8], batch_size=3, progress=False,
                                          precision="float64"))


def test_float32_path_per_channel_v_init_and_mixed_dtypes() -> None:
    net = _per_channel(random_net(2, "int", membrane_bits=12), 2)
    net.layer("c3").synapses[0].weight[0, 0, 0, 0] = 2**24  # c3 float64 between float32 layers
    images = np.random.default_rng(2).uniform(0, 1, (5, 2, 8, 8))
    _assert_identical(simulate(net, images, [2, 6], progress=False),
                      simulate_torch(net, images, [2, 6], progress=False))


def test_float_mode_stays_float64() -> None:
    net = random_net(3, "float")
    assert all(layer_dtypes(net, l).current == torch.float64 for l in net.layers)
