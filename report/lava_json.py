"""`--lava-json FILE`: the results of an earlier `qcfs-run --backend lava --json FILE`, for the report to plot
beside this run. Checked field by field, so a hand-edited or foreign file is refused in one line instead of
drawing nonsense."""

from __future__ import annotations

from typing import Any

import numpy as np

from qcfs import safe_io
from qcfs.errors import QCFSError


def load_lava_json(path: str, dataset: str) -> dict[str, Any]:
    """An earlier `qcfs-run --json` result, checked enough that the plot cannot silently show nonsense."""
    doc = safe_io.read_json(path, f"--lava-json {path}")
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise QCFSError(f"--lava-json {path}: no \"results\" list; expected the JSON of qcfs-run --json")
    if doc.get("backend") != "lava":
        raise QCFSError(f"--lava-json {path}: comes from backend {doc.get('backend')!r}; "
                        "expected a --backend lava run")
    if doc.get("dataset") not in (None, dataset):
        raise QCFSError(f"--lava-json {path}: is for dataset {doc['dataset']}, this run is {dataset}")
    for i, r in enumerate(doc["results"]):
        problem = _result_problem(r)
        if problem:
            raise QCFSError(f"--lava-json {path}: results[{i}] {problem}; expected the JSON of qcfs-run --json")
    return doc


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def _result_problem(r: Any) -> str | None:
    """What is wrong with one entry of a --json "results" list (None: nothing the report would trip on)."""
    if not isinstance(r, dict):
        return "is not an object"
    if not isinstance(r.get("T"), int) or isinstance(r.get("T"), bool) or r["T"] < 1:
        return f"has T = {r.get('T')!r}, expected a positive integer"
    if "accuracy" not in r:  # the plot and the table read it for every entry
        return "has no accuracy, expected a fraction in [0, 1] or null"
    acc = r["accuracy"]
    if acc is not None and not (_finite(acc) and 0 <= acc <= 1):
        return f"has accuracy = {acc!r}, expected a fraction in [0, 1] or null"
    for key in ("spikes_per_sample", "synops_per_sample", "spikes_per_neuron_per_step"):
        if key in r and not (_finite(r[key]) and r[key] >= 0):
            return f"has {key} = {r[key]!r}, expected a non-negative number"
    per = r.get("spikes_per_layer")
    if per is not None and not (isinstance(per, dict) and all(_finite(v) and v >= 0 for v in per.values())):
        return "has spikes_per_layer that is not an object of non-negative numbers"
    return None
