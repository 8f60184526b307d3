"""What one evaluation run records: its per-T rows (qcfs.runtime.metrics), the `qcfs-run --json` document built
from them, and the files written from it (--json, --counts), each atomically (qcfs.safe_io).

Why a module of its own: the document is a contract (report.json, BENCHMARKS numbers and the tests read its
keys), shared by the CLI's main run and the report's companion run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcfs import safe_io
from qcfs.intnet import IntNet
from qcfs.runtime.metrics import NetStats, net_stats, per_t_rows
from qcfs.runtime.result import SimResult

# the keys of each per-T row the document keeps
RESULT_KEYS = ("T", "pre_steps", "latency_steps", "accuracy", "spikes_per_sample", "spikes_per_layer",
               "synops_per_sample", "spikes_per_neuron_per_step", "max_spikes_per_step", "spike_values_per_sample",
               "payload_bits_per_sample", "pre_spikes_per_sample", "pre_spikes_per_layer")


@dataclass(frozen=True)
class RunRows:
    """The network's static counts and one metrics row per T of a simulation."""

    stats: NetStats
    rows: list[dict[str, Any]]


def run_rows(net: IntNet, result: SimResult, labels: np.ndarray) -> RunRows:
    stats = net_stats(net)
    return RunRows(stats, per_t_rows(result, stats, labels))


def run_document(*, command: str, model: str | Path, dataset: str, backend: str, net: IntNet, result: SimResult,
                 labels: np.ndarray, ann_accuracy: float | None, rows: RunRows) -> dict[str, Any]:
    """The `--json` document of one simulation (accuracies as fractions in [0, 1])."""
    return {
        "command": command, "model": str(model), "dataset": dataset, "backend": backend,
        "mode": net.mode, "samples": int(len(labels)), "ann_accuracy": ann_accuracy, "timing": result.timing,
        "ann_macs_per_sample": rows.stats.ann_macs, "neurons": rows.stats.total_neurons,
        "snn_calibration": calibration_provenance(net),
        "max_spikes_per_step": int(net.max_spikes_per_step),
        "results": [{k: r[k] for k in RESULT_KEYS} for r in rows.rows],
    }


def calibration_provenance(net: IntNet) -> dict[str, Any] | None:
    """What `qcfs-export --snn-calib` recorded (method, target T, samples, seed, data), without the
    per-layer error table; None for an uncalibrated network."""
    meta = net.metadata.get("snn_calibration")
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if k != "rate_error"}


def calibration_note(net: IntNet, Ts: Any) -> str | None:
    """A note when the network was calibrated for one T and is run at others (those rows are not calibrated)."""
    cal_T = (net.metadata.get("snn_calibration") or {}).get("target_T")
    if isinstance(cal_T, int) and any(t != cal_T for t in Ts):
        return (f"this network was calibrated for T = {cal_T}; rows at other T are not calibrated for their window "
                f"(export with --target-T T for the T you deploy)")
    return None


def write_outputs(doc: dict[str, Any], result: SimResult, *, json_path: str | None = None,
                  counts_path: str | None = None) -> None:
    """`json_path`: the document; `counts_path`: per-sample spike counts and logits at max(T) (.npz)."""
    if json_path:
        safe_io.write_text(json_path, json.dumps(doc, indent=2) + "\n")
    if counts_path:
        with safe_io.atomic_path(counts_path) as tmp, open(tmp, "wb") as fh:  # np.savez would add ".npz"
            np.savez(fh, **result.counts_arrays())
