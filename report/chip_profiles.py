"""Neuromorphic chip profiles for the resource estimate (qcfs.report.resources): published limits, each with
its source, and the assumptions the estimate needs where nothing is published (each an overridable field).

Why a profile and not constants: the same counting applies to any core-based chip (Loihi 2, SpiNNaker 2,
Speck, ...); a profile says what one core and one chip hold. Add a chip by adding a ChipProfile to PROFILES;
override a field with `dataclasses.replace(LOIHI2, synaptic_memory_per_core=...)` or --fit-set FIELD=VALUE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from qcfs.errors import QCFSError

INTEL_BRIEF = ('Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief '
               "(2021), Table 1 (Loihi 2 column)")
LAVA_DOCS = "lava-nc 0.10.0 (lava-nc.org / github.com/lava-nc/lava): lava.proc.dense and lava.proc.conv fixed_pt models"


@dataclass(frozen=True)
class ChipProfile:
    """What one core and one chip of a neuromorphic target hold; `sources` says where each value is from
    ("assumption: ..." where the vendor publishes nothing)."""

    name: str
    cores_per_chip: int
    neurons_per_core: int
    synapses_per_chip: int
    synapses_per_core: int
    synaptic_memory_per_core: int  # bytes available to synaptic weights on one core
    weight_bits: int  # bits one stored synapse (weight) takes
    conv_storage: str  # "shared": a conv kernel is stored once per core that hosts the layer; "dense": unrolled
    axons_in_per_core: int | None = None  # None: not published, reported but not enforced
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def limit_sources(self) -> dict[str, str]:
        """Every numeric field with its source (or the word assumption)."""
        return {f.name: self.sources.get(f.name, "assumption: not stated") for f in dataclasses.fields(self)
                if f.name not in ("name", "sources")}


LOIHI2 = ChipProfile(
    name="loihi2",
    cores_per_chip=128,
    neurons_per_core=8192,
    synapses_per_chip=120_000_000,
    synapses_per_core=120_000_000 // 128,
    synaptic_memory_per_core=128 * 1024,
    weight_bits=8,
    conv_storage="shared",
    axons_in_per_core=None,
    sources={
        "cores_per_chip": f"{INTEL_BRIEF}: 128 neuron cores per chip",
        "neurons_per_core": f"derived from {INTEL_BRIEF}: up to 1 M neurons per chip / 128 cores = 8,192",
        "synapses_per_chip": f"{INTEL_BRIEF}: up to 120 M synapses per chip",
        "synapses_per_core": "assumption: the chip's 120 M synapses spread evenly, 120 M / 128 = 937,500 per core",
        "synaptic_memory_per_core": (f"assumption: {INTEL_BRIEF} gives 192 KB of memory per neuron core, flexibly "
                                     "shared by synapses, neuron state and routing; 128 KiB of it for synapses "
                                     "is our assumption (not published)"),
        "weight_bits": f"{LAVA_DOCS}: Dense num_weight_bits ≤ 8 (8-bit weights with a shared exponent)",
        "conv_storage": ("assumption: Lava's Conv process (lava.proc.conv) holds one kernel, not its unrolled copies; "
                         "that Loihi 2 cores store a convolution's kernel once per core is not published in numbers"),
        "axons_in_per_core": "not published for Loihi 2: reported, not enforced (set a value to enforce one)",
    },
)

PROFILES: dict[str, ChipProfile] = {LOIHI2.name: LOIHI2}


def chip_profile(name: str, overrides: dict[str, str] | None = None) -> ChipProfile:
    """The named profile with `overrides` (field -> value as text) applied; QCFSError (one line) otherwise."""
    if name not in PROFILES:
        raise QCFSError(f"--fit {name!r}: unknown chip profile; known: {', '.join(sorted(PROFILES))}")
    prof = PROFILES[name]
    if not overrides:
        return prof
    fields = {f.name: f for f in dataclasses.fields(prof) if f.name not in ("name", "sources")}
    changes: dict[str, object] = {}
    for key, text in overrides.items():
        if key not in fields:
            raise QCFSError(f"--fit-set {key}: not a profile field; fields: {', '.join(fields)}")
        if key == "conv_storage":
            if text not in ("shared", "dense"):
                raise QCFSError(f"--fit-set conv_storage={text}: must be shared or dense")
            changes[key] = text
            continue
        try:
            value = int(text)
        except ValueError:
            raise QCFSError(f"--fit-set {key}={text}: not an integer") from None
        if value < 1:
            raise QCFSError(f"--fit-set {key}={text}: must be ≥ 1")
        changes[key] = value
    sources = dict(prof.sources)
    sources.update({k: f"overridden by the user ({v})" for k, v in changes.items()})
    return dataclasses.replace(prof, name=f"{prof.name}*", sources=sources, **changes)
