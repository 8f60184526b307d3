"""convert(): canonical QCFS ONNX -> IntNet, through a fixed, printable pipeline of small passes.

    lift ONNX -> IR  ->  DropIdentity, FuseBiasAdd, FoldBatchNorm, [KeepSumPool], LowerAvgPool, ComposeLinear
              ->  FormSynapses, FoldLambda, [Quantize]  ->  emit IntNet
Each pass states the identity it preserves (describe_pipeline / qcfs-export --show-passes).
"""

from __future__ import annotations

import dataclasses
import sys

import onnx

from qcfs.errors import QCFSError
from qcfs.intnet import HardwareProfile, IntNet
from qcfs.intnet_validate import validate_intnet
from qcfs.toolchain.emit import emit
from qcfs.toolchain.graph_check import check_finite
from qcfs.toolchain.graph import Graph
from qcfs.toolchain.lift import lift
from qcfs.toolchain.passes import (
    ComposeLinear, DropIdentity, FoldBatchNorm, FoldLambda, FormSynapses, FuseBiasAdd, KeepSumPool, LowerAvgPool,
    Pass, Quantize,
)

MODES = ("int", "float")
POOLS = ("compose", "separate")  # average pooling folded into the next synapse, or kept as a sum-pool stage


def build_pipeline(mode: str = "int", profile: HardwareProfile | None = None, pool: str = "compose") -> list[Pass]:
    if pool not in POOLS:
        raise QCFSError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    keep: list[Pass] = [KeepSumPool()] if pool == "separate" else []
    passes: list[Pass] = [DropIdentity(), FuseBiasAdd(), FoldBatchNorm(), *keep, LowerAvgPool(), ComposeLinear(),
                          FormSynapses(), FoldLambda()]
    if mode == "int":
        passes.append(Quantize(profile or HardwareProfile()))
    return passes


def describe_pipeline(mode: str = "int", pool: str = "compose") -> list[str]:
    """One line per pass: its name and the identity it preserves (Emit last)."""
    lines = [f"{i}. {p.name}{' (until fixpoint)' if p.fixpoint else ''}: {p.preserves()}"
             for i, p in enumerate(build_pipeline(mode, pool=pool), start=1)]
    lines.append(f"{len(lines) + 1}. Emit: layers in topological order, readout last; depth = max(source depth) + 1 "
                 "and per-synapse delay so every branch arrives at its layer's depth")
    return lines


def resolve_profile(profile: HardwareProfile | None, weight_bits: int) -> HardwareProfile:
    """The profile the weights are checked against: `weight_bits` narrower than the hardware is a choice; wider
    than it yields a renamed profile, so the file says it is not the stock hardware."""
    base = profile or HardwareProfile()
    if not 2 <= weight_bits <= 16:
        raise QCFSError(f"weight_bits must be in 2..16, got {weight_bits}")
    if weight_bits == base.weight_bits:
        return base
    name = base.name if weight_bits < base.weight_bits else f"{base.name}+w{weight_bits}"
    return dataclasses.replace(base, name=name, weight_bits=weight_bits)


def run_pipeline(graph: Graph, passes: list[Pass], show: bool = False) -> Graph:
    check_finite(graph, "lift")
    for i, p in enumerate(passes, start=1):
        changed = p.run(graph)
        check_finite(graph, p.name)
        if show:
            head = f"[{i}] {p.name}: " + ("changed" if changed else "no change") + f" -> {graph.summary()}"
            print(head, file=sys.stderr)
            for line in p.changes:
                print(f"      {line}", file=sys.stderr)
    return graph


def convert(
    model: onnx.ModelProto,
    *,
    mode: str = "int",
    weight_bits: int = 8,
    show_passes: bool = False,
    profile: HardwareProfile | None = None,
    pool: str = "compose",
) -> IntNet:
    """Canonical QCFS ONNX -> IntNet (integer mode: weights `weight_bits`-bit, θ even; float mode: exact).
    pool="separate" keeps average pools of spikes as sum-pool stages (KeepSumPool) instead of composing them."""
    if mode not in MODES:
        raise QCFSError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    prof = resolve_profile(profile, weight_bits)
    graph = lift(model)
    passes = build_pipeline(mode, prof, pool)
    if show_passes:
        print(f"qcfs conversion ({mode} mode): lifted {graph.summary()}", file=sys.stderr)
    run_pipeline(graph, passes, show_passes)
    net = emit(graph, mode=mode, profile=prof, passes=[p.name for p in passes] + ["Emit"])
    validate_intnet(net, "converted network")
    if show_passes:
        print(f"[{len(passes) + 1}] Emit: {len(net.layers)} layers "
              f"({len(net.if_layers)} IF + readout), depth {net.readout.depth}", file=sys.stderr)
    return net
