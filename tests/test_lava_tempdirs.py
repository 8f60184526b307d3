"""Interrupted Lava runs leave no `qcfs-lava-*` or `pymp-*` folder in the temp directory (issue 13, class 9).

The parent is a real subprocess running simulate_lava under cli_entry (as qcfs-run does), with TMPDIR set to
a private folder; it is signalled mid-run and the folder must end up empty, with no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lava_helpers import processes_with, requires_lava

pytestmark = requires_lava


@pytest.fixture
def short_tmp():  # type: ignore[no-untyped-def]
    """A short TMPDIR: multiprocessing's socket paths under it must stay below the kernel's 107 characters."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="q13-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(tmp_path: Path, tmpdir: Path) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys
        # Ctrl-C as in a terminal: a suite started in the background by a non-interactive shell inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler (the run finished with exit 0, untouched)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import lava_nets
        from qcfs.errors import cli_entry
        from qcfs.runtime.lava.backend import simulate_lava

        @cli_entry
        def main():
            net = lava_nets.fashion_net()
            simulate_lava(net, lava_nets.images(net, 3000), [8], progress=False, timeout_s=600)

        sys.exit(main())
    """))
    env = dict(os.environ, TMPDIR=str(tmpdir))
    parent = subprocess.Popen([sys.executable, str(script)], start_new_session=True, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return parent, tmpdir


def _stderr(parent: subprocess.Popen) -> str:
    if parent.poll() is None:
        return "(parent still running)"
    return parent.stderr.read().decode(errors="replace")[-2000:]


def _wait(cond, within_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.2)
    return bool(cond())


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_signalled_run_leaves_no_temp_folders(tmp_path: Path, short_tmp: Path, sig: int) -> None:
    parent, tmpdir = _start(tmp_path, short_tmp)
    token = str(tmpdir / "qcfs-lava-")
    try:
        started = _wait(lambda: len(processes_with(token)) >= 3 or parent.poll() is not None, 90)
        assert started and parent.poll() is None, f"the Lava worker did not start: {_stderr(parent)}"
        assert _wait(lambda: any(p.name.startswith("pymp-") for p in tmpdir.rglob("pymp-*")), 30), \
            "Lava created no multiprocessing folder (the test would prove nothing)"
        os.kill(parent.pid, sig)
        parent.wait(timeout=30)
        assert _wait(lambda: not processes_with(token), 15), "Lava processes survived"
        assert _wait(lambda: not any(tmpdir.iterdir()), 10), sorted(p.name for p in tmpdir.iterdir())
        if sig != signal.SIGKILL:
            err = parent.stderr.read().decode().strip().splitlines()
            assert parent.returncode == 128 + sig or (sig == signal.SIGINT and parent.returncode == 130)
            assert len(err) == 1 and ("interrupted" in err[0] or "terminated" in err[0]), err
    finally:
        for pid in processes_with(token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if parent.poll() is None:
            parent.kill()
