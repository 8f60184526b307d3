"""Child process that runs one Lava simulation: `python -m qcfs.runtime.lava.worker JOBDIR`.

Why a separate interpreter: importing Lava forces the fork start method, an exception inside a process
model makes stop() hang, and killed parents leave Lava's children spinning. So the parent (backend.py)
never imports Lava; it starts this module as the leader of a new process group and kills the whole group
on every exit path. Here we add the other half of the contract:
  * watchdog: a thread blocks on stdin (a pipe from the parent); EOF means the parent is gone (or gave up):
    JOBDIR (the parent's private temp folder, which it can no longer remove) is deleted and the whole group
    is killed; SIGTERM/SIGINT/SIGHUP kill the group (the live parent then removes JOBDIR);
  * failure: the error goes to JOBDIR/error.txt as one line (first one wins), then the whole group,
    this process included, is SIGKILLed;
  * success: JOBDIR/result.npz is written atomically before stop(), which gets a bounded time;
  * shared memory: every segment the group creates is named in JOBDIR/shm.txt and unlinked by whoever kills
    the group (shm_ledger; a clean stop() unlinks its own).
Progress: lines "STEP <done> <total>" on stdout.

JOBDIR/job.json: {"lava_file", "T", "stock_conv" (bool), "fault" (null | "raise"), "max_ring_elems"}, or for a
lava-dl netx file {"kind": "netx", "netx_file", "semantics" ("qcfs" | "stock"), "T", "max_ring_elems"};
JOBDIR/inputs.npy: encoded int images in Lava layout (N, W, H, C).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

import numpy as np

from qcfs.budget import LAVA_MAX_RING_ELEMS  # the chunking the budget estimate assumes
from qcfs.runtime.lava import shm_ledger

_JOBDIR: Path | None = None  # set by main: kill_group unlinks the shared memory its ledger names


def kill_group() -> None:
    """Unlink the group's shared memory (shm_ledger), SIGKILL every other process of our group, then ourselves
    (never returns)."""
    if _JOBDIR is not None:
        shm_ledger.unlink_recorded(_JOBDIR)
    me, pgid = os.getpid(), os.getpgrp()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os.killpg(pgid, signal.SIGKILL)


def write_error(jobdir: Path, msg: str) -> None:
    """First error wins, atomically: several model processes may fail (and kill the group) at once, so the
    message is written to a private file and then hard-linked into place (link fails if one exists)."""
    tmp = jobdir / f"error.{os.getpid()}.tmp"
    tmp.write_text(" ".join(msg.split())[:2000] + "\n")
    try:
        os.link(tmp, jobdir / "error.txt")
    except FileExistsError:
        pass


def _watch_parent(fd: int, jobdir: Path | None = None) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    if jobdir is not None and jobdir.name.startswith("qcfs-lava-"):  # only a folder the backend created
        import shutil

        shm_ledger.unlink_recorded(jobdir)  # the ledger lives in jobdir: before it goes

        shutil.rmtree(jobdir, ignore_errors=True)
    kill_group()


def _install_guards(jobdir: Path | None = None) -> None:
    # The watchdog reads a private dup of the pipe with os.read: a thread blocked in sys.stdin.read would
    # hold the BufferedReader lock, and multiprocessing's forked children deadlock closing sys.stdin.
    fd = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    threading.Thread(target=_watch_parent, args=(fd, jobdir), daemon=True, name="parent-watchdog").start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: kill_group())


def _guard_process_models(jobdir: Path) -> None:
    """Make an exception in ANY process model fatal and reported at once.

    Why: Lava's own error path sends ERROR to the runtime and then joins, and the runtime joins every
    actor, while the other models block on their ports: run() never returns. We wrap each model's command
    handlers (in this process, before Lava forks, so every model process inherits it): the first
    exception writes its one-line message to JOBDIR/error.txt and kills the whole group.
    """
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    original_init = PyLoihiProcessModel.__init__

    def guard(handler, model):  # type: ignore[no-untyped-def]
        def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                return handler(*args, **kwargs)
            except Exception as err:  # noqa: BLE001
                write_error(jobdir, f"{type(model).__name__}: {type(err).__name__}: {err}")
                kill_group()
        return guarded

    def init(self, proc_params):  # type: ignore[no-untyped-def]
        original_init(self, proc_params)
        for key, handler in list(self._cmd_handlers.items()):
            self._cmd_handlers[key] = guard(handler, self)

    PyLoihiProcessModel.__init__ = init


def _report(done: int, total: int) -> None:
    print(f"STEP {done} {total}", flush=True)


def run_job(jobdir: Path) -> None:
    job = json.loads((jobdir / "job.json").read_text())
    if job.get("kind") == "netx":
        return _run_netx_job(jobdir, job)
    from lava.magma.core.run_conditions import RunSteps

    from qcfs.exporters.lava_export import load_lava_file
    from qcfs.runtime.lava import build as B

    lf = load_lava_file(job["lava_file"])
    T = int(job["T"])
    images = np.load(jobdir / "inputs.npy")
    n_total = images.shape[0]
    per_sample = int(np.prod(images.shape[1:])) * T
    chunk = max(1, min(n_total, int(job.get("max_ring_elems", LAVA_MAX_RING_ELEMS)) // per_sample))
    extra = {}
    if job.get("fault") == "raise":
        from qcfs.runtime.lava.faults import PyIFModelRaises

        extra[B.IF] = PyIFModelRaises
    cfg = B.run_config(stock_conv=bool(job.get("stock_conv")), extra=extra)
    depth = int(lf.readout["depth"])
    total_steps = n_total * T + depth * ((n_total + chunk - 1) // chunk)
    done = 0
    parts: list[dict[str, np.ndarray]] = []
    _report(0, total_steps)
    for start in range(0, n_total, chunk):
        net = B.build(lf, images[start:start + chunk], T)
        slice_steps = max(T, min(64 * T, net.num_steps // 20 or 1))
        ran = 0
        while ran < net.num_steps:
            k = min(slice_steps, net.num_steps - ran)
            net.anchor.run(condition=RunSteps(num_steps=k), run_cfg=cfg, compile_config=B.COMPILE_CONFIG)
            ran += k
            done += k
            _report(done, total_steps)
        parts.append(B.collect(lf, net))
        _bounded_stop(net.anchor)
    result = {key: np.concatenate([p[key] for p in parts], axis=0) for key in parts[0]}
    tmp = jobdir / "result.tmp.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **result)
    os.replace(tmp, jobdir / "result.npz")


def _run_netx_job(jobdir: Path, job: dict) -> None:
    """A .net.h5 through lava-dl's loader (qcfs.runtime.lava.netx_network), in chunks of samples."""
    from qcfs.runtime.lava.netx_network import run_netx

    T = int(job["T"])
    images = np.load(jobdir / "inputs.npy")
    n_total = images.shape[0]
    chunk = max(1, min(n_total, int(job.get("max_ring_elems", LAVA_MAX_RING_ELEMS)) // (int(np.prod(images.shape[1:])) * T)))
    parts, base = [], 0
    for start in range(0, n_total, chunk):
        part = run_netx(job["netx_file"], job["semantics"], images[start:start + chunk], T,
                        report=lambda done, total: _report(base + done, base + total))
        base += images[start:start + chunk].shape[0] * T
        parts.append(part)
    _write_result(jobdir, {key: np.concatenate([p[key] for p in parts], axis=0) for key in parts[0]})


def _write_result(jobdir: Path, result: dict) -> None:
    tmp = jobdir / "result.tmp.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **result)
    os.replace(tmp, jobdir / "result.npz")


def _bounded_stop(anchor, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """stop() can hang inside Lava; give it a while, then kill the group (results are already saved or
    the parent treats the missing file as a failure)."""
    timer = threading.Timer(timeout_s, kill_group)
    timer.daemon = True
    timer.start()
    try:
        anchor.stop()
    finally:
        timer.cancel()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    global _JOBDIR
    jobdir = Path(argv[0])
    _JOBDIR = jobdir.resolve()
    shm_ledger.record(_JOBDIR)  # before Lava creates any segment (or forks a process that would)
    _install_guards(_JOBDIR)
    try:
        from qcfs.runtime.lava.compat import ensure_lava

        ensure_lava()
        _guard_process_models(jobdir)
        run_job(jobdir)
    except BaseException as err:  # noqa: BLE001 - every failure must become one line + a dead group
        (jobdir / "traceback.txt").write_text(traceback.format_exc())
        write_error(jobdir, f"{type(err).__name__}: {err}")
        sys.stdout.flush()
        kill_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
