"""A NumPy model of what stock lava-dl netx does with a `.net.h5`: read `layer/` as
`lava.lib.dl.netx.hdf5.Network` does and run Lava's CUBA/LIF fixed-point neurons (qcfs.runtime.stock_snn).

Why read the file and not the IntNet: this is the reference for "what a lava-dl user gets from this file";
only what netx itself reads (types, shapes, weights, biases, conv geometry, neuron/{iDecay, vDecay, vThMant})
enters. The input encoding (8-bit integer image, fed with input_message_bits=8) and the readout (membrane of
the last layer) come from the `qcfs/` group. Chain networks only (netx has no edges).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.exporters.netx_export import _h5py, load_netx_intnet
from qcfs.intnet import IntNet, Layer, Synapse
from qcfs.runtime.result import SimResult
from qcfs.runtime.stock_snn import LavaCubaRule, channel_last, simulate_rules

SUPPORTED = ("input", "conv", "flatten", "dense")


def _scalar(g, key: str, where: str) -> int:  # type: ignore[no-untyped-def]
    try:
        v = np.asarray(g[key][()]).reshape(-1)
        return int(v[0])
    except (KeyError, IndexError, ValueError, TypeError):
        raise ModelFileError(f"group {where}: missing or non-numeric {key}") from None


def _type(g, where: str) -> str:  # type: ignore[no-untyped-def]
    try:
        v = g["type"][()]
        v = v[0] if np.ndim(v) else v
        return v.decode("ascii") if isinstance(v, bytes) else str(v)
    except (KeyError, IndexError, UnicodeDecodeError):
        raise ModelFileError(f"group {where}: no readable type") from None


def read_stock(path: str | Path) -> tuple[IntNet, dict[str, LavaCubaRule]]:
    """(network structure as netx reads it, Lava LIF rule per layer); ModelFileError naming the group."""
    h5py = _h5py()
    path = Path(path)
    ref = load_netx_intnet(path)  # input spec, readout identity, and a check that this is our file
    layers: list[Layer] = []
    rules: dict[str, LavaCubaRule] = {}
    try:
        with h5py.File(path, "r") as f:
            grp = f["layer"]
            keys = sorted(grp.keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if not keys or not all(k.isdigit() for k in keys) or [int(k) for k in keys] != list(range(len(keys))):
                raise ModelFileError(f"{path}: group layer/ must hold groups 0, 1, ... (found {list(grp.keys())})")
            prev = "input"
            names = iter(layer.name for layer in ref.layers)
            for k in keys:
                g, where = grp[k], f"{path}: layer/{k}"
                typ = _type(g, where)
                if typ not in SUPPORTED:
                    raise ModelFileError(f"{where}: type {typ!r}; qcfs reads {', '.join(SUPPORTED)}")
                if typ in ("input", "flatten"):
                    continue
                name = next(names, None)
                if name is None:
                    raise ModelFileError(f"{where}: more layers than qcfs/intnet describes")
                shape = tuple(int(s) for s in np.asarray(g["shape"][()]).reshape(-1))
                w = np.asarray(g["weight"][()]).astype(np.int64)
                bias = np.asarray(g["bias"][()]).astype(np.int64) if "bias" in g else np.zeros(shape[0], np.int64)
                if typ == "conv":
                    stride = tuple(int(s) for s in np.broadcast_to(np.asarray(g["stride"][()]), (2,)))
                    ph, pw = (int(s) for s in np.broadcast_to(np.asarray(g["padding"][()]), (2,)))
                    dil = np.asarray(g["dilation"][()]) if "dilation" in g else np.ones(2)
                    if np.any(dil != 1):
                        raise ModelFileError(f"{where}: dilation {dil.tolist()}; qcfs reads dilation 1 only")
                    syn = Synapse(prev, "conv", w.reshape(w.shape[:4]), stride=stride, padding=(ph, pw, ph, pw),
                                  groups=_scalar(g, "groups", where))
                else:
                    syn = Synapse(prev, "dense", w.reshape(w.shape[0], -1))
                if "neuron" not in g:
                    raise ModelFileError(f"{where}: no neuron/ group")
                ng, nwhere = g["neuron"], f"{where}/neuron"
                if _type(ng, nwhere) not in ("CUBA", "LOIHI"):
                    raise ModelFileError(f"{nwhere}: neuron type {_type(ng, nwhere)!r}; the stock model covers CUBA")
                is_readout = name == ref.readout.name
                layer = Layer(name=name, kind="readout" if is_readout else "if", shape=shape, bias=bias,
                              threshold=0, v_init=0, synapses=[syn])
                rules[name] = LavaCubaRule(vth_mant=_scalar(ng, "vThMant", nwhere),
                                           du=_scalar(ng, "iDecay", nwhere) - 1, dv=_scalar(ng, "vDecay", nwhere),
                                           bias_mant=channel_last(bias, shape), spikes=not is_readout)
                layers.append(layer)
                prev = name
    except KeyError as err:
        raise ModelFileError(f"{path}: layer/ group incomplete ({err})") from None
    if [layer.name for layer in layers] != [layer.name for layer in ref.layers]:
        raise ModelFileError(f"{path}: layer/ has {len(layers)} neuron layers, qcfs/intnet {len(ref.layers)}")
    net = IntNet(mode="int", input=ref.input, layers=layers, L=ref.L, phi=ref.phi, profile=ref.profile,
                 readout_scale=ref.readout_scale, metadata=dict(ref.metadata))
    return net, rules


def simulate_netx_stock(path: str | Path, images01: np.ndarray, Ts: list[int], *, batch_size: int = 256,
                        progress: bool = True) -> SimResult:
    """Stock netx semantics of the file; logits in Lava's units (membrane v = 2^6 · accumulated current)."""
    net, rules = read_stock(path)
    return simulate_rules(net, rules, images01, Ts, add_bias=False, batch_size=batch_size, progress=progress,
                          backend="netx-stock-numpy")
