"""The README's promise as test helpers: a refused input means exit code 2, exactly one line on stderr, no
traceback, and every input file byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

import pytest


def snapshot(paths: Iterable[Path]) -> dict[Path, str | None]:
    """sha256 of each regular file (None for anything else), to prove later that nothing was touched."""
    out: dict[Path, str | None] = {}
    for p in paths:
        p = Path(p)
        out[p] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
    return out


def refused(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str],
            inputs: Iterable[Path] = (), needle: str | None = None) -> str:
    """Run a CLI `main` in-process on `argv`; assert the promise; return the one stderr line."""
    capsys.readouterr()
    before = snapshot(inputs)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit through SystemExit
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code} for {argv}: {err[-500:]}"
    assert len(lines) == 1, f"expected one stderr line for {argv}, got {len(lines)}: {err[-800:]}"
    assert "Traceback" not in err
    assert snapshot(before) == before, f"an input changed for {argv}"
    if needle is not None:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def no_temp_files(folder: Path) -> list[str]:
    """Leftover temporary files of qcfs.safe_io.atomic_path in `folder` (should be none)."""
    return sorted(n for n in os.listdir(folder) if ".tmp-" in n)
