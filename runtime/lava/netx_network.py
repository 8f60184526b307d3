"""Run a `.net.h5` through lava-dl's own loader in Lava's fixed-point simulator, in one of two semantics.

  * "qcfs": `QcfsNetwork`, a subclass of `lava.lib.dl.netx.hdf5.Network` whose create_conv/create_dense
    build netx's own blocks (its Conv/Dense synapses, weight layout and optimize_weight_bits) but with our IF
    process (and our readout) as the neuron, parameterised from the file's `qcfs/` group. netx looks neuron
    parameters up by class name (`Network.get_neuron_params`), so overriding the create_* methods is the one
    extension point that needs no edit of netx. Equals qcfs.runtime.numpy_snn bit for bit.
  * "stock": `Network` unmodified (CUBA → Lava LIFReset, hard reset); Monitors record every layer's spikes
    and the last layer's membrane. Equals qcfs.runtime.netx_stock bit for bit.
Both run N samples back to back with window T (netx's reset_interval/reset_offset give every layer the same
window as the qcfs pipelined discipline). Imports Lava: call only inside the worker subprocess.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from qcfs.exporters.netx_export import INPUT_MESSAGE_BITS, read_qcfs_layers
from qcfs.runtime.lava.compat import ensure_netx

ensure_netx()

from lava.lib.dl.netx.blocks.process import Conv as ConvBlock  # noqa: E402
from lava.lib.dl.netx.blocks.process import Dense as DenseBlock  # noqa: E402
from lava.lib.dl.netx.hdf5 import Network, PyNetworkModel  # noqa: E402
from lava.lib.dl.netx.utils import optimize_weight_bits  # noqa: E402
from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402
from lava.proc.monitor.process import Monitor  # noqa: E402

from qcfs.runtime.lava import build as B  # noqa: E402
from qcfs.runtime.lava.netx_readout.models import PyNetxReadoutModelFixed  # noqa: E402
from qcfs.runtime.lava.netx_readout.process import NetxReadout  # noqa: E402

SEMANTICS = ("qcfs", "stock")


def _index(layer_config) -> int:  # type: ignore[no-untyped-def]
    """netx hands each create_* a NetDict over h5 group /layer/<k>."""
    return int(layer_config.f.name.rsplit("/", 1)[-1])


class QcfsNetwork(Network):
    """netx Network whose neurons are qcfs IF (subtractive reset, per-channel v_init) and readout."""

    def __init__(self, net_config: str, *, num_samples: int, reset_interval: int, **kwargs: Any) -> None:
        self.qcfs_layers = read_qcfs_layers(net_config)
        self.num_samples = int(num_samples)
        super().__init__(net_config, reset_interval=reset_interval, **kwargs)

    def _neuron_params(self, layer_config, shape: tuple[int, ...], reset_interval: int,  # type: ignore[no-untyped-def]
                       reset_offset: int) -> dict[str, Any]:
        k = _index(layer_config)
        if k not in self.qcfs_layers:
            raise ValueError(f"layer/{k} has no qcfs/layers/{k} entry")
        p = self.qcfs_layers[k]
        common = {"bias_key": "bias", "num_message_bits": 0, "bias": 0, "name": p["name"],
                  "reset_interval": reset_interval, "reset_offset": reset_offset, "num_samples": self.num_samples}
        if p["kind"] == "readout":
            return {"neuron_proc": NetxReadout, **common}
        return {"neuron_proc": B.IF, "vth": p["threshold"], "v_min": p["v_min"], "v_max": p["v_max"],
                "v_init": np.broadcast_to(p["v_init"], shape).astype(np.int64), **common}

    def _bias(self, layer_config) -> np.ndarray:  # type: ignore[no-untyped-def]
        return self.qcfs_layers[_index(layer_config)]["bias"]

    # netx's create_conv/create_dense, with the neuron from qcfs/ (same synapse construction as netx)
    def create_conv(self, layer_config, input_shape, input_message_bits=0, reset_interval=None,  # type: ignore[no-untyped-def, override]
                    reset_offset=0, spike_exp=6):
        def expand(x):  # type: ignore[no-untyped-def]
            return np.array([x, x]) if np.isscalar(x) else x[::-1]

        shape = tuple(layer_config["shape"][::-1])
        weight = layer_config["weight"][:, :, ::-1, ::-1]
        weight = weight.reshape(weight.shape[:4]).transpose((0, 3, 2, 1))
        block = ConvBlock(input_shape=input_shape, shape=shape,
                          neuron_params=self._neuron_params(layer_config, shape, reset_interval, reset_offset),
                          weight=weight, stride=expand(layer_config["stride"]),
                          padding=expand(layer_config["padding"]), dilation=expand(layer_config["dilation"]),
                          groups=layer_config["groups"], input_message_bits=input_message_bits,
                          bias=self._bias(layer_config))
        return block, f"|QCFS-Conv |{shape}|"

    def create_dense(self, layer_config, input_message_bits=0, reset_interval=None, reset_offset=0,  # type: ignore[no-untyped-def, override]
                     spike_exp=6, sparse_synapse=False, rec=False):
        if rec:
            raise ValueError("dense_rec layers are not part of qcfs netx files")
        shape = (int(np.prod(layer_config["shape"])),)
        weight = layer_config["weight"]
        if weight.ndim == 1:
            weight = weight.reshape(shape[0], -1)
        weight, num_weight_bits, weight_exponent, sign_mode = optimize_weight_bits(weight)
        block = DenseBlock(shape=shape, weight=weight, num_weight_bits=num_weight_bits,
                           weight_exponent=weight_exponent, sign_mode=sign_mode,
                           input_message_bits=input_message_bits, sparse_synapse=sparse_synapse,
                           neuron_params=self._neuron_params(layer_config, shape, reset_interval, reset_offset),
                           bias=self._bias(layer_config))
        return block, f"|QCFS-Dense|{shape}|"


def run_config(net) -> Any:  # type: ignore[no-untyped-def]
    """fixed_pt; netx's Conv synapses run on the exact im2col model (as the Lava backend's), our neurons
    pinned for the qcfs semantics. The compiler looks the Network *instance* up first (model discovery
    would search this folder for a QcfsNetwork model), so that entry is per instance."""
    extra: dict[Any, Any] = {}
    if isinstance(net, QcfsNetwork):
        extra = {NetxReadout: PyNetxReadoutModelFixed, net: PyNetworkModel}
    return B.run_config(extra=extra)


def build_network(path: str, semantics: str, num_samples: int, T: int):  # type: ignore[no-untyped-def]
    # reset_offset=1: netx gives block i the offset i + 2 = depth + 1, the qcfs pipelined window start
    kwargs = dict(input_message_bits=INPUT_MESSAGE_BITS, reset_interval=T, reset_offset=1)
    if semantics == "qcfs":
        return QcfsNetwork(path, num_samples=num_samples, **kwargs)
    if semantics == "stock":
        return Network(path, **kwargs)
    raise ValueError(f"netx semantics must be one of {SEMANTICS}, got {semantics!r}")


def run_netx(path: str, semantics: str, images_whc: np.ndarray, T: int,
             report: Callable[[int, int], None] = lambda done, total: None) -> dict[str, np.ndarray]:
    """Run N samples back to back; {layer name: counts (N, T)} and "logits" (N, T, classes)."""
    n = int(images_whc.shape[0])
    names = {k: p["name"] for k, p in read_qcfs_layers(path).items()}
    net = build_network(path, semantics, n, T)
    depth = len(net.layers)
    steps = n * T + depth
    data = np.repeat(np.moveaxis(images_whc.astype(np.int32), 0, -1), T, axis=-1)
    source = RingBuffer(data=data)
    source.s_out.connect(net.inp)
    monitors = []
    if semantics == "stock":
        for i, blk in enumerate(net.layers):
            mon = Monitor()
            mon.probe(blk.neuron.v if i == depth - 1 else blk.neuron.s_out, steps)
            monitors.append(mon)
    cfg = run_config(net)
    chunk = max(T, min(64 * T, steps // 20 or 1))
    ran = 0
    try:
        while ran < steps:
            k = min(chunk, steps - ran)
            net.run(condition=RunSteps(num_steps=k), run_cfg=cfg, compile_config=B.COMPILE_CONFIG)
            ran += k
            report(ran, steps)
        if semantics == "qcfs":
            out = {names[k]: np.asarray(blk.neuron.counts.get()).astype(np.int64)
                   for k, blk in zip(sorted(names), net.layers) if names[k] != names[max(names)]}
            out["logits"] = np.asarray(net.layers[-1].neuron.logits.get()).astype(np.int64)
        else:
            out = _stock_windows(net, monitors, [names[k] for k in sorted(names)], n, T)
    finally:
        net.stop()
    out["logits"] = _chw_order(out["logits"], tuple(net.layers[-1].neuron.a_in.shape))
    return out


def _chw_order(logits: np.ndarray, shape_whc: tuple[int, ...]) -> np.ndarray:
    """(N, T, W·H·C) in Lava's flatten order -> the IntNet's C, H, W order (a conv readout); 1-D unchanged."""
    if len(shape_whc) != 3:
        return logits
    n, t = logits.shape[:2]
    return logits.reshape(n, t, *shape_whc).transpose(0, 1, 4, 3, 2).reshape(n, t, -1)


def _stock_windows(net, monitors, names: list[str], n: int, T: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Monitor traces (global step g = 1 … N·T + depth) -> per-sample windows: the block at depth d works on
    sample s during steps s·T + d + 1 … s·T + d + T (netx reset_offset)."""
    out: dict[str, np.ndarray] = {}
    for d, (blk, mon, name) in enumerate(zip(net.layers, monitors, names), start=1):
        readout = d == len(net.layers)
        rec = mon.get_data()
        trace = np.asarray(next(iter(next(iter(rec.values())).values())))  # (steps, *shape)
        trace = trace.reshape(trace.shape[0], -1).astype(np.int64)
        idx = np.arange(n)[:, None] * T + d + np.arange(T)[None, :]  # 0-based row of step s·T + d + 1 + k
        win = trace[idx]  # (n, T, neurons)
        if readout:
            out["logits"] = win
        else:
            out[name] = np.cumsum(win.sum(axis=2), axis=1)
    return out
