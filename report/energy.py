"""Operation counts and energy estimates for an IntNet: ANN MACs vs SNN synaptic operations.

Why estimates and not measurements: nothing here runs on a chip. We count operations exactly from the
network's shapes and the simulated spike counts, then multiply by published per-operation energies
(`EnergyFigure` constants below, each with its source). The model and its limits: docs/energy.md.

Counting rules
  * ANN MACs per sample: every synapse stage, readout included; conv → C_out·H_out·W_out·(C_in/groups)·kh·kw
    (padded positions counted, the usual convention of FLOP counters), dense → N_out·N_in.
  * SNN synaptic operations (SOPs, accumulates) per sample over T steps: Σ_layers spikes(layer) ×
    fan-out(layer). Fan-out of a source neuron = number of synapses leaving it, summed over all its
    outgoing synapse stages and computed exactly from the shapes (border neurons of a padded conv reach
    fewer outputs). With per-layer spike totals we use the layer's mean fan-out; `synops` also takes
    per-neuron counts, which makes the count exact.
  * Direct encoding: the image is a constant, non-spiking current fed to the first synapse stage(s) at
    every step, so those stages perform real multiply-accumulates every step. Following the SNN literature
    (e.g. Rathi & Roy, "DIET-SNN", IEEE TNNLS 2021) they are counted separately as MACs: T × MACs of the
    synapses whose source is "input".
  * Two-phase inference (ρ pre-steps): the pre-steps' spikes are delivered too, so their SOPs are added; input
    MACs and neuron updates run ρ + T steps, and the latency is ρ + T + depth.
  * Graded spikes (max_spikes_per_step m > 1): `spikes` count messages; each message reaches every synapse of
    its neuron once, where the weight is multiplied by the payload s ≤ m. Assumption (no published per-op
    figure for graded spikes found): at 45 nm a graded SOP costs one MAC (E_MAC) instead of one AC; on Loihi
    one synaptic op (E_synop), i.e. the payload multiply is taken as free in the dendritic accumulate. Payload
    bits (messages × ⌈log2(m+1)⌉) are reported beside it, not priced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, NoReturn, Sequence

import numpy as np

from qcfs.errors import QCFSError
from qcfs.intnet import IntNet, Layer, Synapse


# --- published per-operation energies -------------------------------------------------------------
@dataclass(frozen=True)
class EnergyFigure:
    """A published energy per operation, with where it comes from and how far we checked it."""

    name: str
    pj: float
    source: str
    verified: str  # what we could check, in words; never stronger than the evidence

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


HOROWITZ_FP32_MULT = EnergyFigure(
    "fp32 multiply (45 nm)", 3.7,
    'M. Horowitz, "Computing\'s energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V',
    "value reproduced by secondary sources citing Horowitz 2014 (primary not read here)",
)
"""32-bit float multiply, 45 nm CMOS; the MAC below is multiply + add."""

HOROWITZ_FP32_ADD = EnergyFigure(
    "fp32 add / accumulate, AC (45 nm)", 0.9,
    'M. Horowitz, "Computing\'s energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V',
    "value reproduced by secondary sources citing Horowitz 2014 (primary not read here)",
)
"""32-bit float add: the cost the SNN literature assigns to one synaptic operation (a spike only adds)."""

HOROWITZ_FP32_MAC = EnergyFigure(
    "fp32 multiply-accumulate, MAC (45 nm)", 4.6,
    "Horowitz, ISSCC 2014: fp32 multiply 3.7 pJ + fp32 add 0.9 pJ (the 4.6 pJ used across the SNN literature)",
    "sum of the two figures above",
)
"""32-bit float MAC = multiply + add at 45 nm; the cost of one ANN MAC and one direct-encoding input MAC."""

LOIHI_SYNOP = EnergyFigure(
    "Loihi synaptic spike op (min)", 23.6,
    'M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), '
    "2018, Table 2 (pre-silicon figures, 14 nm, 0.75 V)",
    "as commonly cited; secondary sources agree on 23.6 pJ and that the row is a minimum from pre-silicon "
    "simulation (primary not read here)",
)
"""Energy per synaptic spike operation on Loihi (a minimum, pre-silicon): a lower bound per SOP."""

LOIHI_NEURON_UPDATE = EnergyFigure(
    "Loihi neuron update (active)", 81.0,
    "M. Davies et al., IEEE Micro 38(1), 2018, Table 2 (pre-silicon; 81 pJ active, 52 pJ inactive)",
    "as commonly cited; two independent secondary sources give 81 pJ active / 52 pJ inactive "
    "(primary not read here)",
)
"""Energy per neuron (compartment) update on Loihi. Our IF neurons integrate a bias every step, so every
neuron is counted as one active update per step."""

FIGURES: tuple[EnergyFigure, ...] = (
    HOROWITZ_FP32_MULT, HOROWITZ_FP32_ADD, HOROWITZ_FP32_MAC, LOIHI_SYNOP, LOIHI_NEURON_UPDATE,
)


# --- shapes and exact connection counts ----------------------------------------------------------------
def _source_shape(net: IntNet, source: str) -> tuple[int, ...]:
    return tuple(net.input.shape) if source == "input" else tuple(net.layer(source).shape)


def _conv_out_hits(size_in: int, size_out: int, k: int, stride: int, pad_before: int) -> np.ndarray:
    """hits[ky, i] = 1 when input row i meets kernel row ky at some output row (0 ≤ o < size_out):
    o·stride − pad_before + ky = i. Rows that only meet padding get no hit."""
    hits = np.zeros((k, size_in), dtype=np.int64)
    for ky in range(k):
        o = np.arange(size_out)
        i = o * stride - pad_before + ky
        i = i[(i >= 0) & (i < size_in)]
        hits[ky, i] = 1
    return hits


def synapse_fanout(syn: Synapse, src_shape: Sequence[int], dst_shape: Sequence[int], *,
                   nonzero_only: bool = False) -> np.ndarray:
    """Number of connections each source neuron makes through `syn`, shaped like the source.

    Structural by default (every weight position is a synapse, as in the ANN MAC count); `nonzero_only`
    counts only non-zero weights (what a sparse synapse memory would store).
    A synapse with a sum-pool stage (Synapse.pool): each window the neuron lies in (one pool synapse) plus
    that window's fan-out through the weights — an upper bound on the operations a spike causes, since a
    window's sum goes out as one graded message however many of its spikes arrived."""
    if getattr(syn, "pool", None) is not None:
        return _pooled_fanout(syn, src_shape, dst_shape, nonzero_only)
    w = np.asarray(syn.weight)
    if syn.kind == "dense":  # no mask array: a big classifier's weight matrix can be 10^8 entries
        if w.shape != (int(np.prod(dst_shape)), int(np.prod(src_shape))):
            _shape_error(syn, src_shape, dst_shape)
        if nonzero_only:
            return np.count_nonzero(w, axis=0).astype(np.int64).reshape(tuple(src_shape))
        return np.full(tuple(src_shape), w.shape[0], dtype=np.int64)
    mask = (w != 0).astype(np.int64) if nonzero_only else np.ones(w.shape, dtype=np.int64)
    c_in, h_in, w_in = (int(s) for s in src_shape)
    c_out, h_out, w_out = (int(s) for s in dst_shape)
    g = int(syn.groups)
    co, ci_g, kh, kw = mask.shape
    if co != c_out or ci_g * g != c_in:
        _shape_error(syn, src_shape, dst_shape)
    # M[c_in, ky, kx]: weights leaving input channel c_in, summed over the output channels of its group
    m = mask.reshape(g, c_out // g, ci_g, kh, kw).sum(axis=1).reshape(c_in, kh, kw)
    top, left = syn.padding[0], syn.padding[1]
    hh = _conv_out_hits(h_in, h_out, kh, int(syn.stride[0]), int(top))
    hw = _conv_out_hits(w_in, w_out, kw, int(syn.stride[1]), int(left))
    return np.einsum("cyx,yh,xw->chw", m, hh, hw)


def _shape_error(syn: Synapse, src_shape: Sequence[int], dst_shape: Sequence[int]) -> NoReturn:
    raise QCFSError(f"synapse from {syn.source!r}: weight {tuple(np.shape(syn.weight))} does not connect "
                    f"{tuple(src_shape)} to {tuple(dst_shape)}")


def _window_members(size_in: int, size_out: int, k: int, stride: int, pad_before: int) -> np.ndarray:
    """A[o, i] = 1 when pooling window o covers input row i (padding rows excluded)."""
    a = np.zeros((size_out, size_in), dtype=np.int64)
    for o in range(size_out):
        lo = o * stride - pad_before
        a[o, max(0, lo) : min(size_in, lo + k)] = 1
    return a


def _pooled_fanout(syn: Synapse, src_shape: Sequence[int], dst_shape: Sequence[int], nonzero_only: bool
                   ) -> np.ndarray:
    from dataclasses import replace

    pool = syn.pool
    pooled = pool.out_shape(tuple(int(v) for v in src_shape))
    inner = synapse_fanout(replace(syn, pool=None), pooled, dst_shape, nonzero_only=nonzero_only)
    a_h = _window_members(int(src_shape[1]), pooled[1], pool.kernel[0], pool.stride[0], pool.padding[0])
    a_w = _window_members(int(src_shape[2]), pooled[2], pool.kernel[1], pool.stride[1], pool.padding[1])
    return np.einsum("cyx,yi,xj->cij", 1 + inner.reshape(pooled), a_h, a_w)


def synapse_macs(syn: Synapse, dst_shape: Sequence[int]) -> int:
    """MACs of one synapse stage for one dense (ANN) evaluation: conv C_out·H_out·W_out·(C_in/g)·kh·kw,
    dense N_out·N_in — i.e. output neurons × weights per output neuron."""
    w = np.asarray(syn.weight)
    if syn.kind == "dense":
        return int(w.shape[0]) * int(w.shape[1])
    c_out, h_out, w_out = (int(s) for s in dst_shape)
    return c_out * h_out * w_out * int(np.prod(w.shape[1:]))


@dataclass
class SynapseOps:
    """Counts for one synapse stage (`layer` is the target, `source` the sending population)."""

    layer: str
    source: str
    kind: str
    macs: int          # ANN MACs per sample (padding included)
    connections: int   # real source→target connections (padding excluded) = Σ fan-out through this stage


@dataclass
class NetworkOps:
    """Per-sample, T-independent counts of a network: what `energy_table` scales by T and spikes."""

    ann_macs: int                       # all synapse stages, readout included
    input_macs_per_step: int            # MACs of the stages fed by "input" (direct encoding)
    input_connections_per_step: int     # Σ fan-out of the input pixels (Loihi: graded input spikes)
    neurons: dict[str, int]             # every layer, readout included
    fanout_mean: dict[str, float]       # IF layers: mean over the layer's neurons of their fan-out
    fanout_total: dict[str, int]        # IF layers: Σ fan-out (= SOPs if every neuron fired once)
    readout_depth: int
    synapses: list[SynapseOps] = field(default_factory=list)


def fanout_map(net: IntNet, source: str, *, nonzero_only: bool = False) -> np.ndarray:
    """Exact fan-out of every neuron of `source` (an IF layer name or "input"), shaped like it: the number
    of synapses leaving it, over all synapse stages that read it."""
    src_shape = _source_shape(net, source)
    total = np.zeros(src_shape, dtype=np.int64)
    for layer in net.layers:
        for syn in layer.synapses:
            if syn.source == source:
                total += synapse_fanout(syn, src_shape, layer.shape, nonzero_only=nonzero_only)
    return total


def network_ops(net: IntNet, *, nonzero_only: bool = False) -> NetworkOps:
    """All T-independent counts of `net` (a few tiny NumPy reductions per synapse stage)."""
    syn_ops: list[SynapseOps] = []
    for layer in net.layers:
        for syn in layer.synapses:
            fo = synapse_fanout(syn, _source_shape(net, syn.source), layer.shape, nonzero_only=nonzero_only)
            syn_ops.append(SynapseOps(layer.name, syn.source, syn.kind, synapse_macs(syn, layer.shape),
                                      int(fo.sum())))
    fanout_total: dict[str, int] = {}
    fanout_mean: dict[str, float] = {}
    for layer in net.if_layers:
        fo = fanout_map(net, layer.name, nonzero_only=nonzero_only)
        fanout_total[layer.name] = int(fo.sum())
        fanout_mean[layer.name] = float(fo.mean()) if fo.size else 0.0
    return NetworkOps(
        ann_macs=sum(s.macs for s in syn_ops),
        input_macs_per_step=sum(s.macs for s in syn_ops if s.source == "input"),
        input_connections_per_step=sum(s.connections for s in syn_ops if s.source == "input"),
        neurons={layer.name: _neurons(layer) for layer in net.layers},
        fanout_mean=fanout_mean,
        fanout_total=fanout_total,
        readout_depth=int(net.readout.depth),
        synapses=syn_ops,
    )


def _neurons(layer: Layer) -> int:
    return int(np.prod(layer.shape))


def ann_macs(net: IntNet) -> int:
    """MACs of one ANN forward pass (one sample), readout included."""
    return network_ops(net).ann_macs


def synops(ops: NetworkOps, spikes: Mapping[str, float | np.ndarray], net: IntNet | None = None) -> float:
    """SNN synaptic operations of one sample: Σ_layers spikes × fan-out.

    `spikes[layer]` is either the layer's (mean) spike total — multiplied by the layer's mean fan-out — or
    a per-neuron count array shaped like the layer (needs `net`), which gives the exact count."""
    total = 0.0
    for name, s in spikes.items():
        if name not in ops.fanout_mean:
            raise QCFSError(f"spike counts name layer {name!r}, which is not an IF layer of this network "
                            f"(IF layers: {', '.join(ops.fanout_mean)})")
        arr = np.asarray(s, dtype=np.float64)
        if arr.ndim == 0:
            total += float(arr) * ops.fanout_mean[name]
        else:
            if net is None:
                raise ValueError("per-neuron spike counts need the network to compute the fan-out map")
            total += float((arr.reshape(-1) * fanout_map(net, name).reshape(-1)).sum())
    return total


# --- the table ------------------------------------------------------------------------------------------
@dataclass
class EnergyRow:
    """Per-sample operation counts and energy estimates at one T. Energies in picojoules."""

    T: int
    ann_macs: int
    snn_sops: float            # accumulates caused by spikes (IF layers → next stages, readout included)
    snn_input_macs: int        # direct encoding: T × MACs of the first stage(s)
    energy_ann_pj: float       # ann_macs × E_MAC (45 nm)
    energy_snn_pj: float       # snn_sops × E_AC + snn_input_macs × E_MAC (45 nm)
    energy_loihi_pj: float     # synops + neuron updates (below)
    loihi_synop_pj: float      # (snn_sops + T × input connections) × E_synop; input as graded spikes
    loihi_neuron_pj: float     # (ρ + T) × all neurons × E_neuron_update(active)
    latency_steps: int         # ρ + T + readout depth (pipelined timing, qcfs.semantics)
    pre_steps: int = 0         # ρ of two-phase inference (its spikes are in snn_sops)
    max_spikes_per_step: int = 1  # m: graded spikes (SOPs priced as MACs at 45 nm, see module docstring)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def energy_row(ops: NetworkOps, T: int, spikes: Mapping[str, float], *, pre_steps: int = 0,
               pre_spikes: Mapping[str, float] | None = None, max_spikes: int = 1) -> EnergyRow:
    """One row of `energy_table` from precomputed counts and the mean spikes per layer at this T (plus, for
    two-phase inference, the ρ pre-steps and their spikes)."""
    sops = synops(ops, spikes) + (synops(ops, pre_spikes) if pre_spikes else 0.0)
    steps = int(pre_steps) + int(T)
    input_macs = steps * ops.input_macs_per_step
    e_ann = ops.ann_macs * HOROWITZ_FP32_MAC.pj
    e_sop = HOROWITZ_FP32_MAC.pj if max_spikes > 1 else HOROWITZ_FP32_ADD.pj
    e_snn = sops * e_sop + input_macs * HOROWITZ_FP32_MAC.pj
    loihi_syn = (sops + steps * ops.input_connections_per_step) * LOIHI_SYNOP.pj
    loihi_neu = steps * sum(ops.neurons.values()) * LOIHI_NEURON_UPDATE.pj
    return EnergyRow(T=int(T), ann_macs=ops.ann_macs, snn_sops=sops, snn_input_macs=input_macs,
                     energy_ann_pj=e_ann, energy_snn_pj=e_snn, energy_loihi_pj=loihi_syn + loihi_neu,
                     loihi_synop_pj=loihi_syn, loihi_neuron_pj=loihi_neu,
                     latency_steps=steps + ops.readout_depth, pre_steps=int(pre_steps),
                     max_spikes_per_step=int(max_spikes))


def energy_table(net: IntNet, per_T_spikes: Mapping[int, Mapping[str, float]], *, pre_steps: int = 0,
                 pre_spikes: Mapping[int, Mapping[str, float]] | None = None) -> list[EnergyRow]:
    """Rows sorted by T. `per_T_spikes[T][layer]` = mean spikes per sample of that IF layer over T steps
    (the `spikes_per_layer` of `qcfs-run --json`); two-phase inference: `pre_steps` ρ and `pre_spikes[T]`
    (its `pre_spikes_per_layer`)."""
    ops = network_ops(net)
    return [energy_row(ops, int(T), per_T_spikes[T], pre_steps=pre_steps,
                       pre_spikes=(pre_spikes or {}).get(T), max_spikes=int(net.max_spikes_per_step))
            for T in sorted(per_T_spikes, key=int)]
