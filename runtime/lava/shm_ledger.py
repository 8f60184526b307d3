"""A ledger of the POSIX shared-memory segments a Lava worker's process group creates, so a killed group leaves none.

Why: Lava's channels are `multiprocessing.shared_memory` segments (`/dev/shm/psm_*`), created in the worker and in
the processes it forks, and unlinked only by a clean `stop()`. Every path that kills the group (a failing process
model, a timeout, Ctrl-C, a killed parent) skipped that, and each kill left ~30 segments in /dev/shm until reboot
(measured: 96 per run of tests/test_lava_faults.py). The names are random, so nothing outside the group can tell
which are ours: the worker records each name as it is created (`record`, installed before Lava starts, inherited by
every forked process) in JOBDIR/shm.txt, and whoever kills the group unlinks them (`unlink_recorded`): the worker
before it kills itself, the parent after its SIGKILL. Unlinking a name a live process still maps is safe (the
memory goes when the last mapping does); a name already unlinked by a clean stop() is skipped.

No Lava import here: the parent (backend.py) never imports Lava.
"""

from __future__ import annotations

import os
from pathlib import Path

LEDGER = "shm.txt"


def record(jobdir: Path) -> None:
    """From now on, in this process and every process it forks, append each created segment's name to the ledger."""
    from multiprocessing import shared_memory

    ledger = str(jobdir / LEDGER)
    original = shared_memory.SharedMemory.__init__

    def init(self, name=None, create=False, size=0, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, name, create, size, *args, **kwargs)
        if create:
            # one short O_APPEND write per name: atomic, so concurrent processes never interleave lines
            fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{self._name}\n".encode())
            finally:
                os.close(fd)

    shared_memory.SharedMemory.__init__ = init  # type: ignore[method-assign]


def unlink_recorded(jobdir: Path) -> int:
    """Unlink every segment the ledger names; how many were still there."""
    try:
        names = (jobdir / LEDGER).read_text().split()
    except OSError:
        return 0
    try:
        from _posixshmem import shm_unlink  # what SharedMemory.unlink calls (POSIX only, as Lava)
    except ImportError:
        return 0
    removed = 0
    for name in dict.fromkeys(names):
        try:
            shm_unlink(name)
            removed += 1
        except OSError:  # already unlinked (a clean stop), or never fully created
            pass
    return removed
