"""Per-T numbers for tables and JSON: accuracy, spikes, spike rate, synaptic operations, ANN MACs.

Definitions (documented in qcfs-run --help and BENCHMARKS.md):
  * spikes/sample         spikes of all IF layers of one sample over its T steps (mean over samples); with
                          graded spikes (m = max_spikes_per_step > 1) spike *messages*: a neuron's step with s > 0
  * spike values/sample   graded: Σ of the payloads s (what a binary network would count); = spikes/sample at m = 1
  * payload bits/sample   graded: messages × ⌈log2(m+1)⌉ bits (qcfs.semantics.payload_bits); 0 for binary spikes
  * spikes/neuron/step    spikes/sample ÷ (number of IF neurons × T)
  * synops/sample         Σ_layers spikes(layer) × mean fan-out(layer): every spike is delivered to each
                          outgoing synapse of its neuron. Fan-out is structural (zero weights count) and
                          averaged over the layer's neurons (exact totals for dense, border-aware for conv:
                          numpy_synapse.synapse_fanout). The input is a constant current (direct encoding),
                          not spikes, so it adds no synops. A graded message is delivered once per synapse (one
                          synop, whose weight is multiplied by s). Two-phase inference: the ρ pre-steps' spikes
                          are added (they are delivered too), `pre_spikes_per_sample` shows them.
  * latency (steps)       hardware steps from a sample's first input step to its last readout step when run
                          pipelined as on Loihi/Lava: pre-steps ρ (two-phase inference) + T + depth(readout)
  * ANN MACs/sample       Σ over all synapse stages of outputs × fan-in, from the IntNet shapes. Average pools
                          composed into the next conv count at the composed kernel's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcfs.intnet import IntNet
from qcfs.runtime.numpy_synapse import synapse_fanout, synapse_macs
from qcfs.runtime.result import SimResult
from qcfs.semantics import payload_bits


@dataclass(frozen=True)
class NetStats:
    neurons: dict[str, int]  # IF layer -> neuron count
    fanout: dict[str, float]  # IF layer -> mean outgoing synapses per neuron (all consumers)
    ann_macs: int
    readout_depth: int = 0

    @property
    def total_neurons(self) -> int:
        return sum(self.neurons.values())


def net_stats(net: IntNet) -> NetStats:
    shapes = {"input": tuple(net.input.shape)} | {layer.name: tuple(layer.shape) for layer in net.layers}
    fanout = {layer.name: 0.0 for layer in net.if_layers}
    macs = 0
    for layer in net.layers:
        for syn in layer.synapses:
            macs += synapse_macs(syn, tuple(layer.shape))
            if syn.source in fanout:
                fanout[syn.source] += synapse_fanout(syn, shapes[syn.source], tuple(layer.shape))
    neurons = {layer.name: int(np.prod(layer.shape)) for layer in net.if_layers}
    return NetStats(neurons=neurons, fanout=fanout, ann_macs=macs, readout_depth=int(net.readout.depth))


def per_t_rows(result: SimResult, stats: NetStats, labels: np.ndarray | None) -> list[dict]:
    """One dict per T with accuracy (None without labels), spikes, spike rate and synops per sample."""
    rows = []
    pre = {name: float(np.mean(c)) for name, c in result.pre_spikes.items()}
    m = int(result.max_spikes)
    for t in result.Ts:
        per_layer = {name: float(np.mean(c)) for name, c in result.spikes[t].items()}
        total = float(sum(per_layer.values()))
        values = float(sum(float(np.mean(c)) for c in result.spike_values(t).values()))
        acc = None
        if labels is not None:
            acc = float(np.mean(result.predictions(t) == np.asarray(labels)))
        rows.append({
            "T": t,
            "pre_steps": result.pre_steps,
            "latency_steps": result.pre_steps + t + stats.readout_depth,
            "accuracy": acc,
            "spikes_per_sample": total,
            "spikes_per_layer": per_layer,
            "spikes_per_neuron_per_step": total / max(stats.total_neurons, 1) / t,
            "synops_per_sample": float(sum((per_layer[n] + pre.get(n, 0.0)) * stats.fanout.get(n, 0.0)
                                           for n in per_layer)),
            "max_spikes_per_step": m,
            "spike_values_per_sample": values,
            "payload_bits_per_sample": total * payload_bits(m),
            "pre_spikes_per_sample": float(sum(pre.values())),
            "pre_spikes_per_layer": pre,
        })
    return rows
