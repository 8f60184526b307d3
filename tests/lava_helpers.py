"""Shared helpers for the Lava tests: skip marker, the reference to compare with, process scanning."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from qcfs.intnet import IntNet
from qcfs.runtime.lava.compat import lava_available

requires_lava = [
    pytest.mark.lava,
    pytest.mark.skipif(not lava_available(), reason="lava-nc not installed (scripts/setup_env.sh installs it)"),
]


def reference_counts(net: IntNet, images01: np.ndarray, Ts: list[int]) -> dict[int, dict[str, np.ndarray]]:
    """{T: counts_arrays-like dict} from qcfs.runtime.numpy_snn (pipelined) when it exists, else from the
    brute-force reference in lava_reference.py."""
    try:
        from qcfs.runtime.numpy_snn import simulate
    except ImportError:
        simulate = None
    out: dict[int, dict[str, np.ndarray]] = {}
    if simulate is not None:
        res = simulate(net, images01, Ts, timing="pipelined", progress=False)
        for T in Ts:
            d = {k: np.asarray(v, dtype=np.int64) for k, v in res.spikes[T].items()}
            d["logits"] = np.asarray(res.logits[T]).astype(np.int64)
            out[T] = d
        return out
    from lava_reference import simulate_reference

    ref = simulate_reference(net, images01, Ts)
    for T in Ts:
        d = {k: v[:, T - 1] for k, v in ref["counts"].items()}
        d["logits"] = ref["logits"][:, T - 1]
        out[T] = d
    return out


def processes_with(token: str) -> list[int]:
    """pids (other than ours) whose command line mentions `token` (no psutil: /proc scan)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if token in cmd and state != "Z":
            pids.append(int(entry))
    return pids


def shm_segments() -> set[str]:
    """Names of the POSIX shared-memory segments multiprocessing created (/dev/shm/psm_*), here and now."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("psm_")}
    except OSError:
        return set()


def orphaned_shm(before: set[str], within_s: float = 5.0) -> set[str]:
    """Segments created since `before` that no live process maps any more (leaked), waiting up to within_s for
    dying processes. Segments other live processes map (another job on the machine) do not count."""
    import time

    deadline = time.monotonic() + within_s
    while True:
        new = shm_segments() - before
        mapped: set[str] = set()
        if new:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        text = Path(f"/proc/{entry}/maps").read_text(errors="replace")
                    except OSError:
                        continue
                    mapped.update(n for n in new if f"/dev/shm/{n}" in text)
        orphans = new - mapped
        if not orphans or time.monotonic() > deadline:
            return orphans
        time.sleep(0.2)
