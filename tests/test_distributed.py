"""Sharded evaluation on Dask (`qcfs-run --workers N` / `--scheduler ADDRESS`) equals a single-process run bit
for bit: counts, logits, the --json results and the ANN accuracy; also when a worker dies mid-shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from qcfs.cli.run import main as run_main  # noqa: E402

PROVENANCE = ("command", "execution")  # how a run was started and spread; everything else must be equal


def _run(tmp: Path, tag: str, *extra: str, model: Path | None = None) -> tuple[dict, dict]:
    out_json, out_counts = tmp / f"{tag}.json", tmp / f"{tag}.npz"
    argv = ["--dataset", "digits", "--T", "1,2,4,8", "--no-progress", "--json", str(out_json),
            "--counts", str(out_counts), *extra]
    if model is not None:
        argv += ["--model", str(model)]
    assert run_main(argv) == 0
    doc = json.loads(out_json.read_text())
    with np.load(out_counts) as npz:
        counts = {k: npz[k] for k in npz.files}
    return doc, counts


def _same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    doc_a, counts_a = a
    doc_b, counts_b = b
    assert {k: v for k, v in doc_a.items() if k not in PROVENANCE} == \
        {k: v for k, v in doc_b.items() if k not in PROVENANCE}
    assert counts_a.keys() == counts_b.keys()
    for k in counts_a:
        assert counts_a[k].dtype == counts_b[k].dtype and np.array_equal(counts_a[k], counts_b[k]), k


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return _run(tmp_path_factory.mktemp("single"), "single")


def test_local_cluster_equals_single_process(single: tuple[dict, dict], tmp_path: Path) -> None:
    sharded = _run(tmp_path, "sharded", "--workers", "2", "--shard-size", "37")
    _same(single, sharded)
    ex = sharded[0]["execution"]
    assert ex["engine"] == "dask" and ex["workers"] == 2 and ex["shards"] == -(-360 // 37)
    assert single[0]["ann_accuracy"] is not None and "execution" not in single[0]


def test_integer_subset_shards_exactly_and_float_mode_to_rounding(tmp_path: Path) -> None:
    """Integer mode (the hardware network) is exact under any sharding. Float mode's spike counts are too
    here, but its float64 logits may differ in the last bits: BLAS sums in an order that depends on the
    batch shape and thread count (the workers run one BLAS thread each)."""
    args = ("--limit", "101", "--pre-steps", "2")
    _same(_run(tmp_path, "one", *args), _run(tmp_path, "many", *args, "--workers", "2", "--shard-size", "10"))
    one = _run(tmp_path, "f1", "--mode", "float", "--limit", "101")
    many = _run(tmp_path, "f2", "--mode", "float", "--limit", "101", "--workers", "2", "--shard-size", "10")
    for k in one[1]:
        if k == "logits":
            np.testing.assert_allclose(one[1][k], many[1][k], rtol=1e-12, atol=1e-9)
        else:
            assert np.array_equal(one[1][k], many[1][k]), k


class KillOnce(WorkerPlugin):
    """Worker plugin: the worker running shard 2 for the first time dies on the spot (os._exit, as a
    segfault or the OOM killer would), mid-run. A marker file makes the rerun on a fresh worker survive."""

    name = "qcfs-test-kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if finish == "executing" and str(key).startswith("qcfs-shard-2-") and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)


def test_killed_worker_is_retried_and_results_are_identical(single: tuple[dict, dict], tmp_path: Path) -> None:
    import cloudpickle
    from dask.distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import this test file
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        pids_before = set(client.run(os.getpid).values())
        client.register_plugin(KillOnce(str(marker)))
        sharded = _run(tmp_path, "killed", "--scheduler", cluster.scheduler_address, "--shard-size", "30")
        pids_after = set(client.run(os.getpid).values())
    assert marker.exists(), "no worker was killed: the test proved nothing"
    assert int(marker.read_text()) in pids_before and int(marker.read_text()) not in pids_after
    _same(single, sharded)
    assert sharded[0]["execution"]["shards"] == 12


def test_no_dask_import_without_workers(tmp_path: Path) -> None:
    code = ("import sys\nfrom qcfs.cli.run import main\n"
            "assert main(['--dataset', 'digits', '--T', '1', '--limit', '20', '--no-progress']) == 0\n"
            "assert not any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules), 'dask'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "pass only one"),
    (["--shard-size", "10"], "--shard-size applies to sharded runs"),
])
def test_bad_cluster_flags_fail_in_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert run_main(["--dataset", "digits", "--T", "1", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unreachable_scheduler_fails_in_one_line(capsys: pytest.CaptureFixture) -> None:
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code = run_main(["--dataset", "digits", "--T", "1", "--no-progress", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in err and "\n" not in err


def test_chunked_lazy_source_equals_one_shot() -> None:
    """A split read lazily (ImageNet) is evaluated chunk by chunk in this process; same integers."""
    from qcfs.data import load_split
    from qcfs.defaults import default_model
    from qcfs.evaluate import evaluate_local
    from qcfs.pipeline import canonical_onnx, to_intnet
    from qcfs.data.samples import ArraySource
    from qcfs.simulate import SimOptions

    class Lazy:  # a SampleSource that is not an ArraySource: decodes on demand
        dataset, shape = "digits", (1, 8, 8)

        def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
            self.x, self.labels, self.calls = x, y, 0

        def images(self, indices: np.ndarray) -> np.ndarray:
            self.calls += 1
            return self.x[indices]

    x, y = load_split("digits", "test")
    canon = canonical_onnx(default_model("digits"))
    net = to_intnet(canon)
    idx = np.arange(0, 360, 3)
    opts = SimOptions(Ts=(1, 4), progress=False)
    whole = evaluate_local(net, canon.SerializeToString(), ArraySource("digits", x, y), idx, opts)
    lazy = Lazy(x, y)
    chunked = evaluate_local(net, canon.SerializeToString(), lazy, idx, opts, shard_size=7)
    assert lazy.calls == chunked.shards == -(-len(idx) // 7) and whole.shards == 1
    assert whole.ann_correct == chunked.ann_correct
    for t in (1, 4):
        assert np.array_equal(whole.result.logits[t], chunked.result.logits[t])
        for name, c in whole.result.spikes[t].items():
            assert np.array_equal(c, chunked.result.spikes[t][name])


def test_cluster_started_with_the_dask_cli_and_a_scheduler_file(single: tuple[dict, dict], tmp_path: Path) -> None:
    """The README's SLURM recipe, on one machine: `dask scheduler --scheduler-file F`, `dask worker
    --scheduler-file F`, then `qcfs-run --scheduler F`."""
    import time

    from dask.distributed import Client

    sched_file = tmp_path / "sched.json"
    dask_cli = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask_cli, "scheduler", "--scheduler-file", str(sched_file), "--port", "0",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        procs += [subprocess.Popen([*dask_cli, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                                    "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
        with Client(scheduler_file=str(sched_file)) as client:
            client.wait_for_workers(2, timeout=60)
        sharded = _run(tmp_path, "cli", "--scheduler", str(sched_file), "--shard-size", "50")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    _same(single, sharded)
    assert sharded[0]["execution"]["workers"] == 2 and sharded[0]["execution"]["shards"] == 8


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as c:
        yield c


def _backend_available(backend: str) -> bool:
    from qcfs.runtime.lava.compat import lava_available, netx_available

    return {"lava": lava_available, "netx": netx_available}.get(backend, lambda: True)()


@pytest.mark.parametrize("backend", ["torch", "ort", "lava", "netx"])
def test_every_backend_runs_on_the_workers(backend: str, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The other backends inside Dask worker processes (Lava and netx start their own subprocesses there)
    give the NumPy single-process counts and logits, bit for bit."""
    if not _backend_available(backend):
        pytest.skip(f"{backend} not installed")
    one = _run(tmp_path, "one", "--limit", "24", "--T", "1,2")
    many = _run(tmp_path, backend, "--limit", "24", "--T", "1,2", "--backend", backend,
                "--scheduler", cluster.scheduler_address, "--shard-size", "8")
    assert many[0]["execution"]["shards"] == 3
    for k in one[1]:
        assert np.array_equal(one[1][k], many[1][k]), k
