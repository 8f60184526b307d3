"""simulate_netx: run a `.net.h5` through lava-dl's netx loader in the Lava worker subprocess.

Same isolation as the Lava backend (qcfs.runtime.lava.backend.run_worker: own process group, deadline,
one-line errors); only the job differs ({"kind": "netx"}, see qcfs.runtime.lava.worker).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from qcfs.errors import BackendError
from qcfs.exporters.netx_export import export_netx, load_netx_intnet, read_qcfs_layers
from qcfs.runtime.lava.backend import run_worker
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input

SEMANTICS = ("qcfs", "stock")


def simulate_netx(path: str | Path, images01: np.ndarray, Ts: list[int], *, semantics: str = "qcfs",
                  timeout_s: float = 600, progress: bool = True) -> SimResult:
    """N images back to back in Lava via netx; counts/logits at every T in Ts. Stock logits are the last
    layer's membrane in Lava units (2^6 per unit of current)."""
    if semantics not in SEMANTICS:
        raise BackendError(f"netx semantics must be one of {', '.join(SEMANTICS)}, got {semantics!r}")
    Ts = sorted({int(t) for t in Ts})
    if not Ts or Ts[0] < 1:
        raise BackendError(f"Ts must be positive integers, got {Ts}")
    path = Path(path)
    net = load_netx_intnet(path)  # the whole file verified before any process starts
    images01 = np.asarray(images01)
    if images01.ndim == 3:
        images01 = images01[:, None]
    if tuple(images01.shape[1:]) != tuple(net.input.shape):
        raise BackendError(f"images have shape {images01.shape[1:]}, the network expects {tuple(net.input.shape)}")
    x = encode_input(images01, net.input.mean, net.input.std, net.input.scale, net.input.bits)
    with tempfile.TemporaryDirectory(prefix="qcfs-netx-") as tmp_name:
        tmp = Path(tmp_name)
        # the worker runs a copy derived from the verified network, never the file itself: what runs is what
        # was verified (the file cannot change between check and use)
        netx_file = export_netx(net, tmp / "net.net.h5")
        names = [p["name"] for _, p in sorted(read_qcfs_layers(netx_file).items()) if p["kind"] == "if"]
        np.save(tmp / "inputs.npy", np.ascontiguousarray(x.transpose(0, 3, 2, 1)).astype(np.int32))
        job = {"kind": "netx", "netx_file": str(netx_file.resolve()), "semantics": semantics, "T": Ts[-1]}
        (tmp / "job.json").write_text(json.dumps(job))
        res = run_worker(tmp, timeout_s, progress)
    return SimResult(
        Ts=Ts,
        logits={T: res["logits"][:, T - 1, :] for T in Ts},
        spikes={T: {name: res[name][:, T - 1] for name in names} for T in Ts},
        backend=f"netx-{semantics}",
        timing="pipelined",
    )
