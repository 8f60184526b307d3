"""Hand-built integer IntNets with random weights for the Lava tests (trained models come later).

Thresholds are set from the fan-in so that layers fire at realistic rates; the tests assert it.
"""

from __future__ import annotations

import numpy as np

from qcfs.intnet import InputSpec, IntNet, Layer, Synapse


class NetBuilder:
    """Adds layers in topological order and fills in depths (depth = depth(source) + 1 + delay)."""

    def __init__(self, in_shape: tuple[int, int, int], seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        c = in_shape[0]
        self.input = InputSpec(shape=in_shape, mean=(0.5,) * c, std=(0.5,) * c, scale=100.0, bits=8)
        self.shapes: dict[str, tuple[int, ...]] = {"input": in_shape}
        self.depths: dict[str, int] = {"input": 0}
        self.layers: list[Layer] = []

    def _w(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.integers(-7, 9, size=shape).astype(np.int64)

    def conv_syn(self, src: str, cout: int, k: int, stride: int = 1, pad=(0, 0, 0, 0), groups: int = 1,
                 delay: int = 0) -> tuple[Synapse, tuple[int, int, int]]:
        cin, h, w = self.shapes[src]
        pad = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
        ho = (h + pad[0] + pad[2] - k) // stride + 1
        wo = (w + pad[1] + pad[3] - k) // stride + 1
        syn = Synapse(source=src, kind="conv", weight=self._w((cout, cin // groups, k, k)),
                      stride=(stride, stride), padding=pad, groups=groups, delay=delay)
        return syn, (cout, ho, wo)

    def dense_syn(self, src: str, units: int, delay: int = 0) -> tuple[Synapse, tuple[int]]:
        n = int(np.prod(self.shapes[src]))
        return Synapse(source=src, kind="dense", weight=self._w((units, n)), delay=delay), (units,)

    def add(self, name: str, syns: list[tuple[Synapse, tuple[int, ...]]], kind: str = "if",
            gain: float = 1.0) -> str:
        shape = syns[0][1]
        assert all(s[1] == shape for s in syns), "synapses into one layer must agree on its shape"
        depths = {self.depths[s.source] + 1 + s.delay for s, _ in syns}
        assert len(depths) == 1, f"{name}: inconsistent depths {depths}"
        fan = sum(int(np.prod(s.weight.shape[1:])) for s, _ in syns)
        graded = any(s.source == "input" for s, _ in syns)
        theta = int(2 * max(1, round(gain * 3.0 * np.sqrt(fan) * (40 if graded else 1))))
        bias_shape = (shape[0],)
        bias = self.rng.integers(0, max(2, theta // 8), size=bias_shape).astype(np.int64)
        self.layers.append(Layer(name=name, kind=kind, shape=shape, bias=bias, threshold=theta,
                                 v_init=theta // 2, synapses=[s for s, _ in syns], depth=depths.pop()))
        self.shapes[name] = shape
        self.depths[name] = self.layers[-1].depth
        return name

    def net(self, L: int = 4) -> IntNet:
        return IntNet(mode="int", input=self.input, layers=self.layers, L=L, metadata={"test": "lava_nets"})


def digits_net(seed: int = 0) -> IntNet:
    """(a) small conv net for 8×8 digits."""
    b = NetBuilder((1, 8, 8), seed)
    b.add("c1", [b.conv_syn("input", 4, 3, pad=1)])
    b.add("c2", [b.conv_syn("c1", 8, 3, stride=2, pad=1)])
    b.add("f1", [b.dense_syn("c2", 16)])
    b.add("out", [b.dense_syn("f1", 10)], kind="readout")
    return b.net()


def fashion_net(seed: int = 1) -> IntNet:
    """(b) 28×28 fashion-mnist-shaped conv net, with a pooled-and-folded 6×6/stride-2 conv."""
    b = NetBuilder((1, 28, 28), seed)
    b.add("c1", [b.conv_syn("input", 6, 3, pad=1)])
    b.add("c2", [b.conv_syn("c1", 8, 6, stride=2, pad=2)])
    b.add("c3", [b.conv_syn("c2", 8, 3, stride=2, pad=1)])
    b.add("f1", [b.dense_syn("c3", 24)])
    b.add("out", [b.dense_syn("f1", 10)], kind="readout")
    return b.net()


def vgg_net(seed: int = 2) -> IntNet:
    """(c) VGG-style: 3×3 convs, pooling folded into 6×6/stride-2/pad-2 convs, dense classifier."""
    b = NetBuilder((3, 16, 16), seed)
    b.add("c1", [b.conv_syn("input", 8, 3, pad=1)])
    b.add("c2", [b.conv_syn("c1", 8, 3, pad=1)])
    b.add("c3", [b.conv_syn("c2", 12, 6, stride=2, pad=2)])
    b.add("c4", [b.conv_syn("c3", 12, 3, pad=1)])
    b.add("c5", [b.conv_syn("c4", 16, 6, stride=2, pad=2)])
    b.add("f1", [b.dense_syn("c5", 32)])
    b.add("f2", [b.dense_syn("f1", 32)])
    b.add("out", [b.dense_syn("f2", 10)], kind="readout")
    return b.net()


def residual_net(seed: int = 3) -> IntNet:
    """(d) residual: shortcut synapses with delay, grouped and asymmetric-padded convs, skip into readout."""
    b = NetBuilder((3, 8, 8), seed)
    b.add("c1", [b.conv_syn("input", 8, 3, pad=1)])
    b.add("c2", [b.conv_syn("c1", 8, 3, pad=1, groups=2)])
    b.add("c3", [b.conv_syn("c2", 8, 3, pad=1), b.conv_syn("c1", 8, 1, delay=1)], gain=1.3)
    b.add("c4", [b.conv_syn("c3", 8, 3, stride=2, pad=(0, 0, 1, 1))])  # TF-style "same"
    b.add("out", [b.dense_syn("c4", 10), b.dense_syn("c2", 10, delay=2)], kind="readout")
    return b.net()


def images(net: IntNet, n: int, seed: int = 10) -> np.ndarray:
    """Smooth random images in [0, 1] (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    c, h, w = net.input.shape
    base = rng.random((n, c, (h + 1) // 2, (w + 1) // 2))
    return np.clip(base.repeat(2, axis=2).repeat(2, axis=3)[:, :, :h, :w] + 0.1 * rng.standard_normal((n, c, h, w)),
                   0, 1)
