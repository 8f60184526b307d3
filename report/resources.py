"""Will it fit: an ESTIMATE of the neuromorphic resources an IntNet needs on a chip profile (qcfs.report
.chip_profiles) — neurons, synapses as stored, synaptic memory, fan-in/fan-out, input axons, cores, chips.
Nothing here has run on a chip; every output says it is an estimate.

Populations (one row each, in network order): every IF layer, the readout (its accumulators are neurons on a
chip too) and every sum-pool stage (Synapse.pool; "<layer>.pool<j>": one graded neuron per window). The input
image is fed by the host, not by neuron cores, and is not counted.

Counting rules
  * synapses as stored: dense → N_out·N_in; convolution with profile.conv_storage "shared" → one kernel,
    C_out·(C_in/groups)·kh·kw, stored once on every core group that hosts the layer (see partitioning), or
    "dense" → one synapse per (output neuron, kernel tap inside the source), padding excluded. A sum-pool
    stage stores C·kh·kw (shared) or its window taps (dense).
  * synaptic memory = synapses × profile.weight_bits / 8 bytes.
  * fan-in = the largest number of synapses into one neuron (Σ over its synapse stages of C_in/g·kh·kw or N_in);
    fan-out = mean outgoing connections per neuron of the population (structural, unrolled); axons in = source
    neurons (or window sums) that send to the population.
Partitioning rule (stated, simple, an estimate): each population gets cores of its own (no two populations
share a core), as many as its largest per-core need:
    cores = max(⌈neurons / neurons_per_core⌉, ⌈memory / synaptic_memory_per_core⌉,
                ⌈synapses / synapses_per_core⌉, ⌈axons in / axons_in_per_core⌉ when that limit is set)
A shared-weight convolution is split by output channels first; when it needs more cores than it has output
channels, each channel's kernel is stored again on every extra core (repeat = ⌈cores / C_out⌉, iterated until
stable). A population cannot be placed at all when one neuron's incoming synapses (its fan-in at the weight
width; one output channel's kernel when shared) exceed a core's synaptic memory. Populations are placed in
order on consecutive cores; a population may span chips. Chips = max(⌈Σ cores / cores_per_chip⌉,
⌈Σ synapses / synapses_per_chip⌉).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from qcfs.errors import HardwareFitError
from qcfs.intnet import IntNet, Layer, Synapse
from qcfs.report.chip_profiles import LOIHI2, ChipProfile
from qcfs.runtime.numpy_synapse import conv_output_hw, synapse_fanout

ESTIMATE_NOTE = "estimate from published limits and stated assumptions; not measured on hardware"


@dataclass
class Population:
    """One row of the report: what one population needs and the cores the partitioning rule gives it."""

    name: str
    kind: str  # "if" | "readout" | "pool"
    neurons: int
    synapses: int  # as stored (after any kernel repeats of the partitioning)
    memory_bytes: int
    fan_in: int
    fan_out: float
    axons_in: int
    cores: int = 0
    binding: str = ""  # the per-core limit that set `cores`
    kernel_synapses: int = 0  # shared convolution: synapses of one copy of its kernels (0 otherwise)
    channels: int = 1  # output channels (shared-kernel split unit)
    min_core_bytes: int = 0  # memory one core needs at the least (one neuron's fan-in / one channel's kernel)


@dataclass
class FitReport:
    """The estimate for one network on one profile (and, with `chips`, whether it fits that many chips)."""

    profile: ChipProfile
    populations: list[Population]
    chips_needed: int
    chips_available: int | None = None
    refusal: str | None = None  # one line: the first population and the limit it breaks
    pool_stages: int = 0
    latency_steps_added: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.refusal is None

    @property
    def totals(self) -> dict[str, int]:
        ps = self.populations
        return {"neurons": sum(p.neurons for p in ps), "synapses": sum(p.synapses for p in ps),
                "memory_bytes": sum(p.memory_bytes for p in ps), "cores": sum(p.cores for p in ps)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": True, "note": ESTIMATE_NOTE,
            "profile": {**{k: v for k, v in asdict(self.profile).items() if k != "sources"},
                        "sources": self.profile.limit_sources()},
            "partitioning": "each population on cores of its own; cores = max over per-core limits; shared conv "
                            "kernels split by output channel, repeated past one channel per core (report.resources)",
            "populations": [asdict(p) for p in self.populations],
            "totals": self.totals, "chips_needed": self.chips_needed, "chips_available": self.chips_available,
            "fits": self.fits, "refusal": self.refusal, "pool_stages": self.pool_stages,
            "latency_steps_added_by_pool_stages": self.latency_steps_added,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def table(self) -> str:
        """Plain-text table; the first line says it is an estimate."""
        p = self.profile
        lines = [f"Resource estimate for {p.name} ({ESTIMATE_NOTE}): {p.neurons_per_core} neurons, "
                 f"{_kib(p.synaptic_memory_per_core)} KiB synaptic memory, {p.synapses_per_core:,} synapses per core; "
                 f"{p.cores_per_chip} cores, {p.synapses_per_chip / 1e6:g} M synapses per chip; {p.weight_bits}-bit "
                 f"weights; conv kernels {p.conv_storage}",
                 f"{'population':<28} {'kind':<7} {'neurons':>10} {'synapses':>13} {'memory KiB':>11} "
                 f"{'fan-in':>8} {'fan-out':>8} {'axons in':>10} {'cores':>6}  limit"]
        for q in self.populations:
            lines.append(f"{q.name[:28]:<28} {q.kind:<7} {q.neurons:>10,} {q.synapses:>13,} {_kib(q.memory_bytes):>11} "
                         f"{q.fan_in:>8,} {q.fan_out:>8.1f} {q.axons_in:>10,} {q.cores:>6}  {q.binding}")
        t = self.totals
        lines.append(f"{'total':<28} {'':<7} {t['neurons']:>10,} {t['synapses']:>13,} {_kib(t['memory_bytes']):>11} "
                     f"{'':>8} {'':>8} {'':>10} {t['cores']:>6}")
        chips = f"estimated chips: {self.chips_needed}"
        if self.chips_available is not None:
            chips += f" (of {self.chips_available} available: {'fits' if self.fits else 'does not fit'})"
        if self.pool_stages:
            chips += (f"; {self.pool_stages} sum-pool stage(s) add {self.latency_steps_added} pipelined step(s) "
                      f"of latency")
        lines.append(chips + " — an estimate")
        if self.refusal is not None:
            lines.append(f"does not fit: {self.refusal}")
        return "\n".join(lines)


def _kib(b: int) -> str:
    return f"{b / 1024:,.1f}"


# --- counting ---------------------------------------------------------------------------------------------
def _taps_inside(n_out: int, stride: int, pad: int, k: int, size: int) -> int:
    pos = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :]
    return int(((pos >= 0) & (pos < size)).sum())


def _stored(syn: Synapse, src_shape: tuple[int, ...], dst_shape: tuple[int, ...], shared: bool) -> int:
    """Synapses one stage stores (shared conv: one kernel copy; dense conv storage: unrolled, padding out)."""
    w = syn.weight
    if syn.kind == "dense":
        return int(w.shape[0]) * int(w.shape[1])
    if shared:
        return int(np.prod(w.shape))
    o, cg, kh, kw = (int(v) for v in w.shape)
    _, h, wd = src_shape
    ho, wo = conv_output_hw(h, wd, syn, kh, kw)
    top, left = syn.padding[0], syn.padding[1]
    return (o * cg * _taps_inside(ho, syn.stride[0], top, kh, h) * _taps_inside(wo, syn.stride[1], left, kw, wd))


def _pool_stage(layer: Layer, j: int, syn: Synapse, src_shape: tuple[int, ...], shared: bool, bits: int
                ) -> Population:
    pool = syn.pool
    out = pool.out_shape(src_shape)
    c = int(src_shape[0])
    taps = c * _taps_inside(out[1], pool.stride[0], pool.padding[0], pool.kernel[0], src_shape[1]) * \
        _taps_inside(out[2], pool.stride[1], pool.padding[1], pool.kernel[1], src_shape[2])
    stored = c * pool.size if shared else taps
    return Population(name=f"{layer.name}.pool{j}", kind="pool", neurons=int(np.prod(out)), synapses=stored,
                      memory_bytes=_bytes(stored, bits), fan_in=pool.size, fan_out=0.0,
                      axons_in=int(np.prod(src_shape)), kernel_synapses=stored if shared else 0, channels=c,
                      min_core_bytes=_bytes(pool.size, bits))


def _bytes(synapses: int, bits: int) -> int:
    return (synapses * bits + 7) // 8


def populations(net: IntNet, profile: ChipProfile) -> list[Population]:
    """Every population's needs (cores not yet assigned), in network order, pool stages before their layer."""
    shared = profile.conv_storage == "shared"
    bits = profile.weight_bits
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(net.input.shape)}
    rows: list[Population] = []
    fan_out: dict[str, float] = {}  # population -> total outgoing connections
    for layer in net.layers:
        stored = fan_in = axons = 0
        all_conv = bool(layer.synapses) and all(s.kind == "conv" for s in layer.synapses)
        for j, syn in enumerate(layer.synapses):
            src_shape = shapes[syn.source]
            read_name, read_shape = syn.source, src_shape
            if syn.pool is not None:
                stage = _pool_stage(layer, j, syn, src_shape, shared, bits)
                rows.append(stage)
                taps = _pool_stage(layer, j, syn, src_shape, False, bits).synapses  # connections, unrolled
                fan_out[syn.source] = fan_out.get(syn.source, 0.0) + taps
                read_name, read_shape = stage.name, syn.pool.out_shape(src_shape)
                shapes[stage.name] = read_shape
                syn = replace(syn, pool=None)
            stored += _stored(syn, read_shape, tuple(layer.shape), shared)
            fan_in += int(np.prod(syn.weight.shape[1:]))
            axons += int(np.prod(read_shape))
            fan_out[read_name] = fan_out.get(read_name, 0.0) + \
                synapse_fanout(syn, read_shape, tuple(layer.shape)) * int(np.prod(read_shape))
        n = int(np.prod(layer.shape))
        per_channel = int(sum(np.prod(s.weight.shape[1:]) for s in layer.synapses))
        kernel_like = shared and all_conv
        rows.append(Population(
            name=layer.name, kind=layer.kind, neurons=n, synapses=stored, memory_bytes=_bytes(stored, bits),
            fan_in=fan_in, fan_out=0.0, axons_in=axons, kernel_synapses=stored if kernel_like else 0,
            channels=layer.channels if kernel_like else 1,
            min_core_bytes=_bytes(per_channel, bits)))
        shapes[layer.name] = tuple(layer.shape)
    for row in rows:
        row.fan_out = fan_out.get(row.name, 0.0) / row.neurons if row.neurons else 0.0
    return rows


# --- partitioning ---------------------------------------------------------------------------------------
def _assign_cores(p: Population, prof: ChipProfile) -> None:
    """cores = max over the per-core limits; shared kernels repeat when split finer than one channel per core."""
    repeat = 1
    for _ in range(64):  # the repeat count only grows and is bounded by the neuron cores; converges fast
        syn = p.kernel_synapses * repeat if p.kernel_synapses else p.synapses
        needs = {
            f"neurons per core ({prof.neurons_per_core:,})": math.ceil(p.neurons / prof.neurons_per_core),
            f"synaptic memory per core ({_kib(prof.synaptic_memory_per_core)} KiB)":
                math.ceil(_bytes(syn, prof.weight_bits) / prof.synaptic_memory_per_core),
            f"synapses per core ({prof.synapses_per_core:,})": math.ceil(syn / prof.synapses_per_core),
        }
        if prof.axons_in_per_core:
            needs[f"input axons per core ({prof.axons_in_per_core:,})"] = math.ceil(p.axons_in / prof.axons_in_per_core)
        binding, cores = max(needs.items(), key=lambda kv: kv[1])
        cores = max(1, cores)
        new_repeat = max(1, math.ceil(cores / max(1, p.channels))) if p.kernel_synapses else 1
        if new_repeat == repeat:
            break
        repeat = new_repeat
    if p.kernel_synapses:
        p.synapses = p.kernel_synapses * repeat
        p.memory_bytes = _bytes(p.synapses, prof.weight_bits)
    p.cores, p.binding = cores, (binding if cores > 1 else "")


def fit_report(net: IntNet, profile: ChipProfile | str = LOIHI2, chips: int | None = None) -> FitReport:
    """The resource estimate of `net` on `profile` (a ChipProfile or a name in chip_profiles.PROFILES); with
    `chips`, `refusal` names the first population (in network order) that breaks a limit or does not fit on
    `chips` chips (None when it fits). Never raises for a network that does not fit: check_fit does."""
    if isinstance(profile, str):
        from qcfs.report.chip_profiles import chip_profile

        profile = chip_profile(profile)
    if chips is not None and chips < 1:
        raise HardwareFitError(f"--chips must be ≥ 1, got {chips}")
    rows = populations(net, profile)
    refusal = None
    cores_cap = None if chips is None else chips * profile.cores_per_chip
    syn_cap = None if chips is None else chips * profile.synapses_per_chip
    used_cores = used_syn = 0
    for p in rows:
        _assign_cores(p, profile)
        used_cores += p.cores
        used_syn += p.synapses
        if refusal is not None:
            continue
        if p.min_core_bytes > profile.synaptic_memory_per_core:
            refusal = (f"layer {p.name}: one neuron's {p.min_core_bytes:,} bytes of incoming synapses "
                       f"({p.fan_in:,} × {profile.weight_bits} bit) exceed the synaptic memory per core "
                       f"({profile.synaptic_memory_per_core:,} bytes, profile {profile.name}); estimate")
        elif cores_cap is not None and used_cores > cores_cap:
            refusal = (f"layer {p.name}: needs {p.cores} cores ({p.binding or 'one core'}); with the layers before it "
                       f"{used_cores} > {chips} chip(s) × {profile.cores_per_chip} neuron cores "
                       f"(profile {profile.name}); estimate")
        elif syn_cap is not None and used_syn > syn_cap:
            refusal = (f"layer {p.name}: {used_syn:,} synapses up to here > {chips} chip(s) × "
                       f"{profile.synapses_per_chip:,} synapses per chip (profile {profile.name}); estimate")
    total_cores = sum(p.cores for p in rows)
    total_syn = sum(p.synapses for p in rows)
    needed = max(1, math.ceil(total_cores / profile.cores_per_chip), math.ceil(total_syn / profile.synapses_per_chip))
    stages = sum(1 for p in rows if p.kind == "pool")
    return FitReport(profile=profile, populations=rows, chips_needed=needed, chips_available=chips,
                     refusal=refusal, pool_stages=stages,
                     latency_steps_added=int(net.readout.depth) - _depth_without_pools(net))


def _depth_without_pools(net: IntNet) -> int:
    """The readout's depth if every pool stage took no step (what --pool compose gives)."""
    depth = {"input": 0}
    for layer in net.layers:
        depth[layer.name] = max(depth[s.source] + 1 for s in layer.synapses)
    return depth[net.readout.name]


def check_fit(net: IntNet, profile: ChipProfile = LOIHI2, chips: int | None = None) -> FitReport:
    """fit_report, raising HardwareFitError (one line) when `net` does not fit `chips` chips."""
    report = fit_report(net, profile, chips)
    if report.refusal is not None:
        raise HardwareFitError(f"does not fit: {report.refusal}")
    return report


# --- the qcfs-export --fit request -----------------------------------------------------------------------
@dataclass
class FitRequest:
    """`qcfs-export --fit PROFILE [--chips N] [--fit-json F] [--fit-set FIELD=VALUE]`, checked before any work;
    `apply` runs on the converted network before anything is written."""

    profile: ChipProfile
    chips: int | None = None
    json_path: str | None = None

    def apply(self, net: IntNet) -> FitReport:
        """Print the table (stdout), write the JSON, refuse in one line (HardwareFitError) when it does not fit."""
        from qcfs import safe_io

        report = fit_report(net, self.profile, self.chips)
        if self.json_path:
            safe_io.write_text(self.json_path, report.to_json() + "\n")
        if report.refusal is not None:
            raise HardwareFitError(f"does not fit: {report.refusal}")
        print(report.table())
        return report


def fit_request(profile: str | None, chips: int | None, json_path: str | None, overrides: list[str] | None
                ) -> FitRequest | None:
    """The CLI flags as a FitRequest (None without --fit); one-line QCFSError for flags that need --fit."""
    from qcfs.errors import QCFSError
    from qcfs.report.chip_profiles import chip_profile

    if profile is None:
        if chips is not None or json_path or overrides:
            raise QCFSError("--chips, --fit-json and --fit-set need --fit PROFILE (e.g. --fit loihi2)")
        return None
    if chips is not None and chips < 1:
        raise QCFSError(f"--chips must be ≥ 1, got {chips}")
    pairs = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise QCFSError(f"--fit-set {item!r}: expected FIELD=VALUE (e.g. synaptic_memory_per_core=131072)")
        pairs[key.strip()] = value.strip()
    return FitRequest(chip_profile(profile, pairs), chips, json_path)
