"""Issue 22, sections 2 and 3: the inputs that still ended in a traceback, a hang, a second stderr line or litter.
Each case: exit 2, one line on stderr naming what to fix, no input changed and nothing left behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from promise import no_temp_files, refused
from qcfs.cli import export as export_cli
from qcfs.cli import run as run_cli
from qcfs.cli import train as train_cli
from qcfs.errors import QCFSError, cli_entry
from test_authors_checkpoints import _cli as authors_cli
from test_authors_checkpoints import resnet20_sd  # noqa: F401 - fixture
from test_cli_run import digits_intnet
from test_run_imagenet_cli import CLASSES, _tiny_224, tiny_tree  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ONNX = ROOT / "models" / "digits" / "model.onnx"
DIGITS = ["--dataset", "digits", "--no-progress"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copyfile(SHIPPED_ONNX, tmp_path / "m.onnx")
    digits_intnet().save(tmp_path / "m.intnet.npz")
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- section 2 ------------------------------------------------------------------------------------------
def _with_big_member(src: Path, out: Path, mib: int) -> Path:
    """`src` plus an int64 member of `mib` MiB of zeros (deflated to almost nothing): under the 4 GB declared-size
    cap, yet too big to load under a memory limit."""
    shutil.copyfile(src, out)
    count = mib * (1 << 20) // 8
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("junk.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": "<i8", "fortran_order": False, "shape": (count,)})
            block = bytes(1 << 24)
            for _ in range(count * 8 // len(block)):
                fh.write(block)
    return out


def test_intnet_too_big_for_memory_is_one_line(work: Path) -> None:
    """Under an address-space limit a little above what the process already maps, loading a 512 MiB member
    fails: one line naming the file and what it needed (was a MemoryError traceback)."""
    big = _with_big_member(work / "m.intnet.npz", work / "big.intnet.npz", 512)
    code = f"""
import contextlib, io, resource, sys
from qcfs.cli.run import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    assert main(["--model", {str(work / "m.intnet.npz")!r}, "--dataset", "digits", "--T", "1", "--limit", "2",
                 "--no-progress"]) == 0  # every import the second run needs is done now
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
sys.exit(main(["--model", {str(big)!r}, "--dataset", "digits", "--T", "1", "--limit", "2", "--no-progress"]))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert str(big) in lines[0] and "not enough memory" in lines[0] and "512 MB" in lines[0], lines[0]


def test_memory_error_anywhere_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_entry
    def main(argv: list[str] | None = None) -> int:
        warnings.warn("a warning before the failure", RuntimeWarning)
        raise MemoryError("Unable to allocate 3.66 GiB for an array with shape (491520000,) and data type int64")

    assert main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory (Unable to allocate 3.66 GiB" in err[0], err


def test_warnings_before_a_refusal_are_dropped_and_kept_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_entry
    def refuses(argv: list[str] | None = None) -> int:
        warnings.warn("invalid value encountered in sqrt", RuntimeWarning)
        raise QCFSError("m.pth: key 'bn.running_var' has negative entries")

    @cli_entry
    def succeeds(argv: list[str] | None = None) -> int:
        warnings.warn("something worth knowing", UserWarning)
        return 0

    with warnings.catch_warnings(record=True) as shown:  # what reaches the user's stderr, outside pytest
        warnings.simplefilter("always")
        assert refuses() == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "qcfs-test_trust_cli: error: m.pth: key 'bn.running_var' has negative entries"]
        assert shown == []
        assert succeeds() == 0
        assert [str(w.message) for w in shown] == ["something worth knowing"]


@pytest.mark.parametrize("ts", ["1e400", "1" + "0" * 400, "4,20000000000"])
def test_absurd_T_is_one_line(ts: str, capsys: pytest.CaptureFixture[str]) -> None:
    refused(run_cli.main, [*DIGITS, "--T", ts], capsys, needle="--T")


def test_normalize_that_pins_the_input_warns_once(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli.main(["--model", str(work / "m.onnx"), *DIGITS, "--T", "1", "--limit", "20",
                         "--normalize", "1.0,0.05"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("qcfs-run: warning: --normalize maps") and "±127" in err[0], err
    # the model's own normalization: no warning
    assert run_cli.main(["--model", str(work / "m.onnx"), *DIGITS, "--T", "1", "--limit", "20"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_lava_json_without_accuracy_is_one_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lava = work / "lava.json"
    lava.write_text(json.dumps({"backend": "lava", "dataset": "digits", "results": [{"T": 1, "spikes_per_sample": 3}]}))
    refused(run_cli.main, ["--model", str(work / "m.intnet.npz"), *DIGITS, "--T", "1", "--report",
                           str(work / "rep"), "--lava-json", str(lava)], capsys, [lava], "results[0] has no accuracy")
    assert not (work / "rep").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_output_in_a_folder_that_refuses_files_is_one_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(export_cli.main, [str(work / "m.onnx"), "--backend", "intnet", "-o", "/proc/qcfs-x.intnet.npz"], capsys,
            [work / "m.onnx"], "/proc")
    assert not Path("/proc/qcfs-x.intnet.npz").exists() and not no_temp_files(work)


def test_atomic_write_into_a_folder_that_refuses_files_is_one_line(tmp_path: Path) -> None:
    from qcfs import safe_io

    with pytest.raises(QCFSError, match="cannot create files in /proc"):
        safe_io.write_text("/proc/qcfs-x.txt", "x")


def test_lava_budget_counts_the_input_ring_buffer() -> None:
    """Lava holds the input of a chunk of samples as one int32 column per step, twice: at T = 10^7 on 8×8
    digits that is 64 × 10^7 × 4 B × 2 = 5.1 GB beyond the per-step results (the estimate said 1.94 GB)."""
    from qcfs.budget import LAVA_RING_COPIES, estimate

    net = digits_intnet()
    est = estimate(net, 1, [10_000_000], 256, "lava")
    per_step_results = 2 * 8 * 10_000_000 * (len(net.if_layers) + net.num_classes)
    assert est.bytes >= per_step_results + LAVA_RING_COPIES * 4 * 64 * 10_000_000
    small = estimate(net, 100, [4], 256, "lava")  # small runs: the ring is the whole input, no more
    assert small.bytes <= 2 * 8 * 400 * (len(net.if_layers) + net.num_classes) + LAVA_RING_COPIES * 4 * 64 * 400


def test_lava_run_too_big_for_memory_is_refused_before_it_starts(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    refused(run_cli.main, ["--model", str(work / "m.intnet.npz"), *DIGITS, "--backend", "lava", "--T", "1000000000",
                           "--limit", "1", "--max-hours", "8760"], capsys, needle="memory")


# --- section 3 ------------------------------------------------------------------------------------------
@pytest.fixture
def silent_port():  # type: ignore[no-untyped-def]
    """A 127.0.0.1 port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_scheduler_that_never_answers_gives_up_in_one_line(silent_port: int, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QCFS_SCHEDULER_TIMEOUT", "2")
    t0 = time.monotonic()
    # Dask's handshake timeout or our wall-clock bound, whichever comes first
    refused(run_cli.main, [*DIGITS, "--T", "1", "--scheduler", f"tcp://127.0.0.1:{silent_port}"], capsys,
            needle=f"--scheduler tcp://127.0.0.1:{silent_port}: ")
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("content,needle", [('{"address": "tcp://127.0.0.1:87', "not JSON"),
                                            ('{"type": "Scheduler"}', "not a Dask scheduler file"),
                                            ("", "not JSON")])
def test_bad_scheduler_file_is_one_line(content: str, needle: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    sched = tmp_path / "scheduler.json"
    sched.write_text(content)
    refused(run_cli.main, [*DIGITS, "--T", "1", "--scheduler", str(sched)], capsys, [sched], needle)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_ddp_whose_peers_never_come_gives_up_in_one_line(rank: str, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Rank 1 of 2 with nobody at MASTER_ADDR:MASTER_PORT, and rank 0 waiting for a rank 1 that never starts."""
    for key, value in {"RANK": rank, "WORLD_SIZE": "2", "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(_free_port()), "QCFS_DDP_JOIN_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    out = tmp_path / "m.pt"
    t0 = time.monotonic()
    refused(train_cli.main, ["--model", "cnn", "--dataset", "digits", "--no-progress", "--ddp", "-o", str(out)],
            capsys, needle=f"rank {rank} of 2 could not join")
    assert time.monotonic() - t0 < 60 and not out.exists()


def test_local_cluster_leaves_no_scratch_space(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert run_cli.main([*DIGITS, "--T", "1", "--limit", "12", "--workers", "1", "--json",
                         str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["execution"]["engine"] == "dask"
    assert [n for n in os.listdir(scratch) if "dask" in n] == []  # Dask's own default: dask-scratch-space


def test_workers_upper_bound(capsys: pytest.CaptureFixture[str]) -> None:
    refused(run_cli.main, [*DIGITS, "--T", "1", "--workers", "100000"], capsys, needle="use at most")


def test_seed_beyond_the_documented_range_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(export_cli.main, [str(work / "m.onnx"), "--backend", "intnet", "--snn-calib", "potential", "--target-T",
                              "2", "--dataset", "digits", "--seed", str(2**70), "-o", str(work / "c.intnet.npz")],
            capsys, [work / "m.onnx"], "--seed")
    assert not (work / "c.intnet.npz").exists()


def test_authors_checkpoint_with_negative_variance_is_one_line(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    key = next(k for k in resnet20_sd if k.endswith("running_var"))
    resnet20_sd[key][0] = -1.0
    torch.save(resnet20_sd, tmp_path / "m.pth")
    line = refused(export_cli.main, authors_cli(tmp_path / "m.pth", tmp_path), capsys, [tmp_path / "m.pth"], key)
    assert "negative" in line and str(tmp_path / "m.pth") in line
    assert not (tmp_path / "o.onnx").exists() and not no_temp_files(tmp_path)


def test_embedded_intnet_errors_never_show_a_buffer() -> None:
    from qcfs.errors import ModelFileError
    from qcfs.intnet import load_intnet

    with pytest.raises(ModelFileError) as err:
        load_intnet(io.BytesIO(b"not a zip"))
    assert str(err.value).startswith("embedded IntNet: ") and "BytesIO" not in str(err.value)


def test_not_a_tar_download_is_one_line(tmp_path: Path) -> None:
    from qcfs.data.download import unpack_tar
    from qcfs.errors import DatasetError

    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"<html>not an archive</html>\n" * 10)
    with pytest.raises(DatasetError) as err:
        unpack_tar(archive, tmp_path, "cifar-10-batches-py", ("data_batch_1",))
    assert "\n" not in str(err.value) and "is not a tar archive" in str(err.value)
    assert os.listdir(tmp_path) == [archive.name]


def test_snn_calibration_from_an_imagenet_tree(tiny_tree: Path, tmp_path: Path) -> None:  # noqa: F811
    """Calibrated from a lazily read ImageNet split: only the sampled training images are decoded."""
    from qcfs.intnet import load_intnet

    model = _tiny_224(tmp_path / "tiny224.onnx", len(CLASSES))
    out = tmp_path / "cal.intnet.npz"
    assert export_cli.main([str(model), "--backend", "intnet", "--snn-calib", "potential", "--target-T", "2",
                            "--dataset", "imagenet", "--data-dir", str(tiny_tree), "--calib-samples", "4",
                            "--no-progress", "-o", str(out)]) == 0
    assert load_intnet(out).metadata["snn_calibration"]["samples"] == 4
