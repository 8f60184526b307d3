"""The Python 3.11 import shim for lava-nc 0.10.0 (runtime/lava/compat.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lava_helpers import requires_lava
from qcfs.errors import BackendError
from qcfs.runtime.lava import compat


def test_patch_source_makes_byteencoder_hashable() -> None:
    src = "@dataclass\nclass ByteEncoder:\n    base: int = 0\n"
    assert compat.patch_source(src).startswith("@dataclass(unsafe_hash=True)\nclass ByteEncoder:")
    assert compat.patch_source("x = 1\n") == "x = 1\n"  # a future, fixed Lava runs unchanged


def test_missing_lava_is_one_line_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "lava_available", lambda: False)
    with pytest.raises(BackendError, match="Lava is not installed: run scripts/setup_env.sh"):
        compat.ensure_lava()


@pytest.mark.timeout(60)
@requires_lava[0]
@requires_lava[1]
def test_lava_imports_with_shim_and_not_without() -> None:
    code_plain = "import lava.magma.compiler.var_model"
    plain = subprocess.run([sys.executable, "-c", code_plain], capture_output=True, text=True, timeout=60)
    shim = subprocess.run(
        [sys.executable, "-c",
         "from qcfs.runtime.lava.compat import ensure_lava; ensure_lava();"
         "import lava.magma.compiler.var_model as vm; from lava.proc.dense.process import Dense;"
         "print(hash(vm.CoreEncoder().x) == hash(vm.ByteEncoder()))"],
        capture_output=True, text=True, timeout=60)
    assert shim.returncode == 0, shim.stderr[-500:]
    assert shim.stdout.split()[0] == "True"
    if sys.version_info >= (3, 11):
        assert plain.returncode != 0 and "mutable default" in plain.stderr
