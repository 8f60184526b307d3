"""simulate_lava: run an IntNet on Lava's fixed-point CPU simulator, isolated in a subprocess.

Isolation (every path ends with the worker's process group SIGKILLed and reaped):
  * the worker (qcfs.runtime.lava.worker) leads a new session/process group, so os.killpg reaches every
    process Lava forks; this process never imports Lava;
  * deadline: `timeout_s` for the whole run -> kill group, BackendError;
  * Ctrl-C / any exception here -> kill group, re-raise;
  * parent killed (even SIGKILL) -> the worker's stdin pipe hits EOF -> the worker kills its own group;
  * worker failure -> its one-line error.txt becomes a BackendError.
Inputs and results travel as files in a private temp dir (`qcfs-lava-*`), which is removed on every exit
path: normally and on exceptions by this process (SIGTERM/SIGHUP become exceptions in the CLIs, see
qcfs.errors.cli_entry); when this process is SIGKILLed, by the worker's watchdog before it kills its group.
Shared memory (Lava's channels, /dev/shm/psm_*) the killed group could not unlink is unlinked here from the
worker's ledger (shm_ledger). The worker's TMPDIR points inside that folder, so the `pymp-*` folders
multiprocessing creates for Lava's processes (never removed when they are SIGKILLed) go with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from qcfs.errors import BackendError
from qcfs.exporters.lava_export import LavaFile, export_lava, load_lava_file
from qcfs.intnet import IntNet, is_intnet_file, load_intnet
from qcfs.runtime.lava import shm_ledger
from qcfs.runtime.result import SimResult
from qcfs.semantics import encode_input

WORKER_MODULE = "qcfs.runtime.lava.worker"
# multiprocessing puts AF_UNIX sockets at TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX (about 35 more characters)
# and the kernel allows 107: a longer jobdir would break Lava, so it then keeps the user's TMPDIR
MAX_TMPDIR_CHARS = 64


def _lava_file(net_or_path: IntNet | str | Path, tmp: Path) -> Path:
    if isinstance(net_or_path, IntNet):
        return export_lava(net_or_path, tmp / "net.lava.npz", compress=False)
    path = Path(net_or_path)
    if path.name.endswith(".lava.npz"):
        # run a copy derived from the verified embedded network, never the file's own Lava arrays: what runs
        # is exactly what the digest covers (and the file cannot change between check and use)
        from qcfs.exporters.lava_verify import verified_lava_file

        return export_lava(verified_lava_file(path)[0], tmp / "net.lava.npz", compress=False)
    if is_intnet_file(path):
        return export_lava(load_intnet(path), tmp / "net.lava.npz", compress=False)
    raise BackendError(f"{path}: neither an IntNet (.npz) nor a Lava file (.lava.npz)")


def encode_for_lava(lf: LavaFile, images01: np.ndarray) -> np.ndarray:
    """qcfs.semantics input encoding, then (N, C, H, W) -> Lava (N, W, H, C)."""
    inp = lf.header["input"]
    images01 = np.asarray(images01)
    if images01.ndim == 3:
        images01 = images01[:, None]
    if tuple(images01.shape[1:]) != tuple(inp["shape"]):
        raise BackendError(f"images have shape {images01.shape[1:]}, the network expects {tuple(inp['shape'])}")
    x = encode_input(images01, tuple(inp["mean"]), tuple(inp["std"]), inp["scale"], inp["bits"])
    return np.ascontiguousarray(x.transpose(0, 3, 2, 1)).astype(np.int32)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _remove_tree(path: Path) -> None:
    """rmtree that survives files vanishing or appearing while the killed group's last processes exit."""
    import shutil

    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)


def _pump_progress(stream, bar_holder: dict, progress: bool) -> None:  # type: ignore[no-untyped-def]
    for raw in stream:
        parts = raw.decode(errors="replace").split()
        if len(parts) != 3 or parts[0] != "STEP":
            continue
        done, total = int(parts[1]), int(parts[2])
        bar_holder["done"] = done
        if not progress:
            continue
        if "bar" not in bar_holder:
            from tqdm import tqdm

            bar_holder["bar"] = tqdm(total=total, desc="lava", unit="step", leave=False, file=sys.stderr)
        bar = bar_holder["bar"]
        bar.update(done - bar.n)


def run_worker(jobdir: Path, timeout_s: float, progress: bool) -> dict[str, np.ndarray]:
    """Start the worker on `jobdir`, wait (bounded), always kill its group; results or BackendError."""
    env = dict(os.environ)
    if len(str(jobdir)) <= MAX_TMPDIR_CHARS:  # Lava's multiprocessing pymp-* folders land inside jobdir
        env["TMPDIR"] = str(jobdir)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # dozens of Lava processes share the cores: no BLAS thread pools
    with open(jobdir / "stderr.txt", "wb") as err_fh:
        proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(jobdir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err_fh, start_new_session=True, env=env)
    holder: dict = {}
    pump = threading.Thread(target=_pump_progress, args=(proc.stdout, holder, progress), daemon=True)
    pump.start()
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise BackendError(f"Lava simulation timed out after {timeout_s:g} s "
                                   f"(step {holder.get('done', 0)}); its processes were killed")
            time.sleep(0.05)
    finally:
        _kill_group(proc)
        shm_ledger.unlink_recorded(jobdir)  # what a SIGKILLed group could not unlink itself
        pump.join(timeout=2)
        if "bar" in holder:
            holder["bar"].close()
    if (jobdir / "result.npz").exists():
        with np.load(jobdir / "result.npz") as npz:
            return {k: npz[k] for k in npz.files}
    if (jobdir / "error.txt").exists():
        raise BackendError(f"Lava simulation failed: {(jobdir / 'error.txt').read_text().strip()}")
    tail = (jobdir / "stderr.txt").read_bytes().decode(errors="replace").strip().splitlines()[-1:] or [""]
    raise BackendError(f"Lava worker exited with code {proc.returncode} without a result: {tail[0][:300]}")


def simulate_lava(net_or_path: IntNet | str | Path, images01: np.ndarray, Ts: list[int], *,
                  timeout_s: float = 600, progress: bool = True, stock_conv: bool = False,
                  fault: str | None = None) -> SimResult:
    """Simulate N images back to back (N·T_max + depth steps) on Lava; counts/logits at every T in Ts.

    `stock_conv` selects Lava's own Conv model (slow; benchmarks), `fault` injects a failure (tests).
    """
    Ts = sorted({int(t) for t in Ts})
    if not Ts or Ts[0] < 1:
        raise BackendError(f"Ts must be positive integers, got {Ts}")
    tmp = Path(tempfile.mkdtemp(prefix="qcfs-lava-"))
    try:
        lava_path = _lava_file(net_or_path, tmp)
        lf = load_lava_file(lava_path)
        np.save(tmp / "inputs.npy", encode_for_lava(lf, images01))
        job = {"lava_file": str(lava_path.resolve()), "T": Ts[-1], "stock_conv": stock_conv, "fault": fault}
        (tmp / "job.json").write_text(json.dumps(job))
        res = run_worker(tmp, timeout_s, progress)
    finally:
        _remove_tree(tmp)
    names = [lh["name"] for lh in lf.layers if lh["kind"] == "if"]
    m = int(lf.header.get("max_spikes_per_step", 1))
    return SimResult(
        Ts=Ts,
        logits={T: res["logits"][:, T - 1, :] for T in Ts},
        spikes={T: {name: res[name][:, T - 1] for name in names} for T in Ts},
        backend="lava",
        timing="pipelined",
        values={T: {name: res[f"values:{name}"][:, T - 1] for name in names} for T in Ts} if m > 1 else {},
        max_spikes=m,
    )
