"""Isolation: a failing model, a timeout and a killed parent never hang and leave no process and no shared memory
behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import lava_nets
from lava_helpers import orphaned_shm, processes_with, requires_lava, shm_segments
from qcfs.errors import BackendError

pytestmark = requires_lava


def _wait_gone(token: str, within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(autouse=True)
def no_leaked_shared_memory():  # type: ignore[no-untyped-def]
    """Every kill path also unlinks the killed group's shared memory (shm_ledger): none may be left behind."""
    before = shm_segments()
    yield
    assert orphaned_shm(before) == set()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Job dirs land under tmp_path, so its path identifies this test's worker processes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return str(tmp_path)


@pytest.mark.timeout(90)
def test_exception_inside_process_model(private_tmp: str) -> None:
    from qcfs.runtime.lava.backend import simulate_lava

    net = lava_nets.digits_net()
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="injected fault in IF process model") as err:
        simulate_lava(net, lava_nets.images(net, 4), [4], progress=False, timeout_s=60, fault="raise")
    assert "\n" not in str(err.value)
    assert time.monotonic() - t0 < 60  # failed fast, not through the timeout
    assert _wait_gone(private_tmp, 5) == []


@pytest.mark.timeout(90)
def test_timeout_kills_everything(private_tmp: str) -> None:
    from qcfs.runtime.lava.backend import simulate_lava

    net = lava_nets.fashion_net()
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="timed out after 4 s"):
        simulate_lava(net, lava_nets.images(net, 3000), [8], progress=False, timeout_s=4)
    assert time.monotonic() - t0 < 30
    assert _wait_gone(private_tmp, 5) == []


@pytest.mark.timeout(120)
def test_killed_parent_leaves_nothing(tmp_path: Path) -> None:
    """SIGKILL the parent mid-run: the worker's watchdog (pipe EOF) must take its whole group down."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, tempfile
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        tempfile.tempdir = {str(tmp_path)!r}
        import lava_nets
        from qcfs.runtime.lava.backend import simulate_lava
        net = lava_nets.fashion_net()
        simulate_lava(net, lava_nets.images(net, 3000), [8], progress=False, timeout_s=600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    token = str(tmp_path / "qcfs-lava-")
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(token)) < 3 and time.monotonic() < deadline:  # worker + Lava children
            time.sleep(0.2)
        assert len(processes_with(token)) >= 3, "the Lava worker did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(token, 15) == []
    finally:
        for pid in processes_with(token):  # never leave spinners behind, even when the assert fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if parent.poll() is None:
            parent.kill()
