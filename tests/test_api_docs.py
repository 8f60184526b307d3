"""The API reference builds from the docstrings without a single pdoc warning (scripts/build_api_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("pdoc") is None, reason="pdoc not installed (the [test] extra)")
def test_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_api_docs import build
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    pages = build(tmp_path / "api")
    names = {p.relative_to(tmp_path / "api").as_posix() for p in pages}
    assert {"qcfs.html", "qcfs/api.html", "qcfs/runtime/result.html"} <= names, names
    api = (tmp_path / "api" / "qcfs" / "api.html").read_text()
    for public in ("convert", "load", "train", "Network", "simulate", "calibrate", "save"):
        assert f'id="{public}"' in api or f'id="Network.{public}"' in api, public
