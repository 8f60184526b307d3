"""Build the Lava process graph of a .lava.npz for N samples run back to back with window T.

Graph: RingBuffer (8-bit image, one column per step) -> [Delay] -> [sum-pool Conv] -> Conv/Dense -> IF -> ...
-> Readout. A sum-pool stage (IntNet Synapse.pool) is a Conv with weights 1 whose graded a_out (the window
sums) feeds the synapse's s_in, one more step.
Every Conv/Dense adds one step, a Delay adds `delay` steps, neuron -> synapse adds none; so a layer at
depth d sees sample n during steps n·T + d + 1 ... n·T + d + T (qcfs.semantics, pipelined), and a run of
N samples takes N·T + depth(readout) steps. Several synapses into one layer share its InPort (Lava sums
the messages of all connected ports).
Imports Lava: call only inside the worker subprocess, after compat.ensure_lava().
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcfs.exporters.lava_export import LavaFile, pool_weight
from qcfs.runtime.lava.compat import ensure_lava

ensure_lava()

from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.conv.process import Conv  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

from qcfs.runtime.lava.conv_model import PyConvIm2colModelFixed  # noqa: E402
from qcfs.runtime.lava.if_neuron.models import (  # noqa: E402
    PyDelayModelFixed,
    PyIFModelFixed,
    PyReadoutModelFixed,
)
from qcfs.runtime.lava.if_neuron.process import IF, Delay, Readout  # noqa: E402

# /dev/shm is small on many machines and Lava fills it silently (then hangs) with its default 64-deep
# channels; 2 slots are enough for a strictly synchronous pipeline.
COMPILE_CONFIG = {"pypy_channel_size": 2}


@dataclass
class Network:
    """The built graph: processes to run/read and the step count for the whole batch."""

    source: RingBuffer
    neurons: dict[str, IF]
    readout: Readout
    synapses: list[AbstractProcess] = field(default_factory=list)
    num_steps: int = 0

    @property
    def anchor(self) -> AbstractProcess:
        """Any process of the graph; run()/stop() on it act on the whole graph."""
        return self.readout


def run_config(stock_conv: bool = False, extra: dict[Any, Any] | None = None) -> Loihi2SimCfg:
    """fixed_pt run config with our models pinned (no reliance on folder discovery)."""
    mapping: dict[Any, Any] = {IF: PyIFModelFixed, Readout: PyReadoutModelFixed, Delay: PyDelayModelFixed}
    if not stock_conv:
        mapping[Conv] = PyConvIm2colModelFixed
    mapping.update(extra or {})
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=mapping)


def _synapse(lf: LavaFile, layer: str, j: int, syn: dict[str, Any]) -> AbstractProcess:
    w = lf.weight(layer, j)
    if syn["kind"] == "conv":
        conv = Conv(weight=w.astype(np.int32), input_shape=tuple(syn["input_shape"]),
                    padding=tuple(syn["padding"]), stride=tuple(syn["stride"]), groups=syn["groups"],
                    num_message_bits=syn["num_message_bits"], weight_exp=syn["weight_exp"],
                    name=f"{layer}.syn{j}")
        conv.proc_params["qcfs_padding"] = tuple(syn["padding_tlbr"])
        return conv
    # sign_mode pinned to MIXED: Lava then clips to [-256, 255] and clears bit 0 -- a no-op on 2w.
    return Dense(weights=w.astype(np.int32), num_message_bits=syn["num_message_bits"],
                 weight_exp=syn["weight_exp"], num_weight_bits=syn["num_weight_bits"],
                 sign_mode=SignMode.MIXED, name=f"{layer}.syn{j}")


def _pool(layer: str, j: int, entry: dict[str, Any]) -> Conv:
    """The Conv (weights 1, groups = C, binary input) that sums each pooling window of a synapse's source."""
    conv = Conv(weight=pool_weight(entry).astype(np.int32), input_shape=tuple(entry["input_shape"]),
                padding=tuple(entry["padding"]), stride=tuple(entry["stride"]), groups=entry["channels"],
                num_message_bits=0, weight_exp=0, name=f"{layer}.pool{j}")
    conv.proc_params["qcfs_padding"] = tuple(entry["padding_tlbr"])
    return conv


def build(lf: LavaFile, images_whc: np.ndarray, T: int) -> Network:
    """images_whc: int (N, W, H, C) (or (N, k) for 1-D inputs) already encoded by qcfs.semantics."""
    n = int(images_whc.shape[0])
    data = np.repeat(np.moveaxis(images_whc.astype(np.int32), 0, -1), T, axis=-1)  # (..., N·T)
    source = RingBuffer(data=data)
    outs: dict[str, Any] = {"input": source.s_out}
    neurons: dict[str, IF] = {}
    synapses: list[AbstractProcess] = []
    readout = None
    for lh in lf.layers:
        shape = tuple(lh["lava_shape"])
        common = dict(bias=lf.bias(lh["name"]), reset_interval=T, reset_offset=lh["depth"] + 1,
                      num_samples=n, name=lh["name"])
        if lh["kind"] == "if":
            proc = IF(shape=shape, vth=lh["threshold"], v_init=lf.v_init(lh), v_min=lh["v_min"],
                      v_max=lh["v_max"], max_spikes=int(lf.header.get("max_spikes_per_step", 1)), **common)
        else:
            proc = readout = Readout(shape=shape, **common)
        for j, syn in enumerate(lh["synapses"]):
            port = outs[syn["source"]]
            if syn["delay"] > 0:
                dl = Delay(shape=tuple(port.shape), delay=syn["delay"], name=f"{lh['name']}.delay{j}")
                port.connect(dl.s_in)
                port = dl.s_out
                synapses.append(dl)
            if "pool" in syn:  # the sum-pool stage: binary spikes in, graded window sums out (one step)
                pool = _pool(lh["name"], j, syn["pool"])
                port.connect(pool.s_in)  # the source's (W, H, C) spikes, as the pool's input_shape
                port = pool.a_out
                synapses.append(pool)
            sp = _synapse(lf, lh["name"], j, syn)
            port.connect(sp.s_in) if tuple(port.shape) == tuple(sp.s_in.shape) else \
                port.flatten().connect(sp.s_in)
            a_out = sp.a_out if tuple(sp.a_out.shape) == shape else sp.a_out.reshape(shape)
            a_out.connect(proc.a_in)
            synapses.append(sp)
        if lh["kind"] == "if":
            neurons[lh["name"]] = proc
            outs[lh["name"]] = proc.s_out
    assert readout is not None
    steps = n * T + int(lf.readout["depth"])
    return Network(source=source, neurons=neurons, readout=readout, synapses=synapses, num_steps=steps)


def collect(lf: LavaFile, net: Network) -> dict[str, np.ndarray]:
    """Read the per-sample counters once: {layer: counts (N, T)} and "logits" (N, T, classes) with the
    classes in IntNet (C, H, W) flatten order."""
    out = {name: np.asarray(p.counts.get()).astype(np.int64) for name, p in net.neurons.items()}
    if int(lf.header.get("max_spikes_per_step", 1)) > 1:  # graded: the payload sums as well
        out.update({f"values:{name}": np.asarray(p.values.get()).astype(np.int64) for name, p in net.neurons.items()})
    logits = np.asarray(net.readout.logits.get()).astype(np.int64)
    shape = tuple(lf.readout["shape"])
    if len(shape) == 3:  # Lava (W, H, C) flatten -> IntNet (C, H, W) flatten
        n, t = logits.shape[:2]
        logits = logits.reshape(n, t, shape[2], shape[1], shape[0]).transpose(0, 1, 4, 3, 2).reshape(n, t, -1)
    out["logits"] = logits
    return out
