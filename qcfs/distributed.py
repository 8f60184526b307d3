"""Sharded evaluation on a Dask cluster (`qcfs-run --workers N` or `--scheduler ADDRESS`).

The client splits the sample list into consecutive shards (qcfs.evaluate), scatters the network and the ANN
once to every worker (`Client.scatter(..., broadcast=True)`: never pickled per task), and submits one task per
shard. A worker opens the split itself (qcfs.data.samples.open_split, once per worker process: the data directory
must be visible at the same path, as on any shared file system) and returns integer counts and logits. The
client merges the shards in sample order, so the merged results equal a single-process run bit for bit. A
worker that dies mid-shard is replaced by its nanny and Dask reruns the lost shard elsewhere (the scheduler's
`allowed-failures`); the merge is unchanged.

Dask is imported only here, and this module only when --workers or --scheduler is given.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from qcfs import safe_io
from qcfs.data.samples import SampleSource, SplitSpec, open_split
from qcfs.errors import BackendError, QCFSError
from qcfs.evaluate import Evaluation, ShardResult, merge, run_shard, shard_slices
from qcfs.intnet import IntNet
from qcfs.simulate import SimOptions

_OPEN: dict[SplitSpec, SampleSource] = {}  # per worker process: each split is opened (decoded) once


def _worker_source(spec: SplitSpec) -> SampleSource:
    if spec not in _OPEN:
        _OPEN.clear()  # one split at a time is enough; do not hoard memory across runs
        _OPEN[spec] = open_split(spec)
    return _OPEN[spec]


def shard_task(net: IntNet, canon_bytes: bytes | None, spec: SplitSpec, indices: np.ndarray,
               opts: SimOptions) -> ShardResult:
    """What a worker runs for one shard."""
    return run_shard(net, canon_bytes, _worker_source(spec), indices, opts)


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: QCFS_SCHEDULER_TIMEOUT, else Dask's distributed.comm.timeouts.connect
    (30 s unless configured)."""
    raw = os.environ.get("QCFS_SCHEDULER_TIMEOUT")
    if not raw:
        import dask
        from dask.utils import parse_timedelta

        return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))
    try:
        value = float(raw)
    except ValueError:
        raise QCFSError(f"QCFS_SCHEDULER_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not 0 < value < 86400:
        raise QCFSError(f"QCFS_SCHEDULER_TIMEOUT must be in (0, 86400) seconds, got {raw!r}")
    return value


def scheduler_address(scheduler: str) -> str:
    """The address in a scheduler file (`dask scheduler --scheduler-file F`, dask-mpi), or `scheduler` itself.
    Read here, not by Dask: Dask retries a truncated file and then fails with a bare AssertionError."""
    if not os.path.exists(scheduler):
        return scheduler
    label = f"--scheduler {scheduler}"
    doc = safe_io.read_json(scheduler, label, BackendError)
    address = doc.get("address") if isinstance(doc, dict) else None
    if not isinstance(address, str) or "://" not in address:
        raise BackendError(f"{label}: not a Dask scheduler file (no \"address\" such as tcp://host:8786)")
    return address


def _client_within(address: str, timeout: float, label: str) -> Any:
    """Client(address), or BackendError after `timeout` seconds of wall time. Why a thread: Dask bounds each
    phase of its handshake by the timeout, not the whole, so a port that accepts connections and never
    answers held the user for minutes; the thread that keeps waiting is a daemon and dies with the process."""
    from dask.distributed import Client

    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            box["client"] = Client(address, timeout=timeout)
        except BaseException as err:  # noqa: BLE001 - reported below, in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=attempt, name="qcfs-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive():
        raise BackendError(f"{label}: no answer within {timeout:g} s (something accepts "
                           "connections there but is not a Dask scheduler, or it is overloaded); check the "
                           "address (QCFS_SCHEDULER_TIMEOUT changes the wait)")
    err = box.get("error")
    if err is not None:
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise BackendError(f"{label}: cannot connect ({detail}); is the scheduler running and "
                           "reachable from here?")
    return box["client"]


@contextlib.contextmanager
def connect(workers: int | None, scheduler: str | None) -> Iterator[object]:
    """A Dask client: on a new LocalCluster of `workers` processes (one thread each: the backends use their
    own BLAS threads), or on the cluster whose scheduler is at `scheduler`."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise BackendError(f"--workers/--scheduler need Dask ({err}); pip install 'dask[distributed]' "
                           "(or qcfs[distributed])") from None
    if scheduler:
        client = _client_within(scheduler_address(scheduler), connect_timeout(), f"--scheduler {scheduler}")
        try:
            yield client
        finally:
            client.close()
        return
    # dashboard on any free port (":0"): two runs on one machine never fight over 8787; the workers' spill
    # space goes into a temporary folder removed afterwards (Dask's default, $TMPDIR/dask-scratch-space, stays)
    with tempfile.TemporaryDirectory(prefix="qcfs-dask-", ignore_cleanup_errors=True) as scratch, \
            dask.config.set({"temporary-directory": scratch}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=50, local_directory=scratch) as cluster, Client(cluster) as client:
        yield client


def worker_count(client) -> int:  # type: ignore[no-untyped-def]
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))


def evaluate_on_dask(client, net: IntNet, canon_bytes: bytes | None, spec: SplitSpec,  # type: ignore[no-untyped-def]
                     indices: np.ndarray, opts: SimOptions, shard_size: int) -> Evaluation:
    """Every shard on the cluster behind `client`; results merged in sample order."""
    from dask.distributed import as_completed

    indices = np.asarray(indices, dtype=np.int64)
    t0 = time.perf_counter()
    net_f, canon_f = client.scatter([net, canon_bytes], broadcast=True, hash=False)
    scatter_s = time.perf_counter() - t0
    quiet = opts.quiet()
    futures = [client.submit(shard_task, net_f, canon_f, spec, indices[s], quiet,
                             key=f"qcfs-shard-{k}-{time.time_ns()}")
               for k, s in enumerate(shard_slices(len(indices), shard_size))]
    order = {f.key: k for k, f in enumerate(futures)}
    parts: list[ShardResult | None] = [None] * len(futures)
    t1 = time.perf_counter()
    try:
        for fut in tqdm(as_completed(futures), total=len(futures), desc="shards", unit="shard",
                        disable=not opts.progress, leave=False):
            parts[order[fut.key]] = fut.result()
    finally:
        for f in futures:
            f.release()
    wall = time.perf_counter() - t1
    done = [p for p in parts if p is not None]
    result, hits = merge(done)
    compute = sum(p.seconds for p in done)
    workers = worker_count(client)
    return Evaluation(result, hits, len(done), execution={
        "engine": "dask", "workers": workers, "shards": len(done), "shard_size": shard_size,
        "scatter_seconds": round(scatter_s, 4), "wall_seconds": round(wall, 4),
        "shard_compute_seconds": round(compute, 4),
        # what sharding cost beyond the compute, per shard, with every worker busy
        "overhead_seconds_per_shard": round(max(0.0, wall * workers - compute) / len(done), 4),
    })
