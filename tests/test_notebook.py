"""Execute examples/loihi_sim.ipynb (about a minute on 2 cores) and examples/quickstart.ipynb end to end with
nbclient.

The kernel is this interpreter (sys.executable): a throw-away kernelspec in a temp dir, found through
JUPYTER_PATH, so nothing is installed or registered globally and a fresh venv works. The notebook writes its
files to $QCFS_NOTEBOOK_OUT (a temp dir here).

Regenerate the committed outputs (run from the repository root):
    .venv/bin/python tests/test_notebook.py --write [examples/NAME.ipynb ...]   (default: both)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "loihi_sim.ipynb"
QUICKSTART = ROOT / "examples" / "quickstart.ipynb"
KERNEL_NAME = "qcfs-test-python3"
CELL_TIMEOUT_S = 240  # the Lava cell has its own 300 s deadline inside simulate_lava; normal runs take seconds
COMPARE_TAG = "lava-compare"
IDENTICAL_LINE = "counts identical: Lava == NumPy pipelined == NumPy sync"
SKIPPED_LINE = "Lava comparison skipped"


def _kernelspec_dir(parent: Path) -> Path:
    """A jupyter data dir holding one kernelspec that starts ipykernel with this interpreter."""
    spec = parent / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "qcfs (this interpreter)",
        "language": "python",
    }))
    return parent


def execute_notebook(path: Path = NOTEBOOK, out_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """Run every cell of `path` (cwd: its folder) and return the executed NotebookNode.

    Raises nbclient's CellExecutionError on the first failing cell. `out_dir` becomes $QCFS_NOTEBOOK_OUT."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved_env = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "QCFS_NOTEBOOK_OUT")}
    with tempfile.TemporaryDirectory(prefix="qcfs-kernel-") as tmp:
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(_kernelspec_dir(Path(tmp))), *filter(None, [saved_env["JUPYTER_PATH"]])])
        if out_dir is not None:
            os.environ["QCFS_NOTEBOOK_OUT"] = str(out_dir)
        try:
            client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME, record_timing=False,
                                    resources={"metadata": {"path": str(path.parent)}})
            client.execute()
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


def _text(cell) -> str:  # type: ignore[no-untyped-def]
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.timeout(300)
def test_notebook_runs_and_lava_matches_numpy(tmp_path: Path) -> None:
    from qcfs.runtime.lava.compat import lava_available

    nb = execute_notebook(NOTEBOOK, tmp_path / "out")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "some cell did not run"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"cell error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    compare = [c for c in code if COMPARE_TAG in c.metadata.get("tags", [])]
    assert len(compare) == 1, f"exactly one cell must carry the tag {COMPARE_TAG!r}"
    text = _text(compare[0])
    if lava_available():
        assert IDENTICAL_LINE in text, f"Lava installed but the comparison cell printed:\n{text}"
    else:
        assert SKIPPED_LINE in text, f"Lava missing but the comparison cell printed:\n{text}"
    assert (tmp_path / "out" / "accuracy_vs_T.png").exists()


def test_committed_notebook_has_outputs() -> None:
    """The committed notebook is stored executed, in order, without errors (readers see results on GitHub)."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "re-run it with --write"
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    compare = [c for c in code if COMPARE_TAG in c.metadata.get("tags", [])]
    assert len(compare) == 1 and IDENTICAL_LINE in _text(compare[0])


def _executed_cleanly(nb) -> list:  # type: ignore[no-untyped-def]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "some cell did not run"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"cell error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return code


QUICKSTART_SAVED = "reloaded counts identical: True"


@pytest.mark.timeout(300)
def test_quickstart_runs(tmp_path: Path) -> None:
    """The API quick start: train, convert, simulate, calibrate, save/load in every format, own module."""
    code = _executed_cleanly(execute_notebook(QUICKSTART, tmp_path / "out"))
    assert "".join(_text(c) for c in code).count(QUICKSTART_SAVED) == 5
    assert (tmp_path / "out" / "cnn-digits-T1.nir").is_file()


def test_committed_quickstart_has_outputs() -> None:
    import nbformat

    nb = nbformat.read(QUICKSTART, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "re-run it with --write"
    assert all(o.get("output_type") != "error" for c in code for o in c.outputs)
    assert "".join(_text(c) for c in code).count(QUICKSTART_SAVED) == 5


if __name__ == "__main__":
    import nbformat

    if sys.argv[1:2] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write [NOTEBOOK ...]  (executes {NOTEBOOK.relative_to(ROOT)} and "
                 f"{QUICKSTART.relative_to(ROOT)}, or the ones named, and saves them with outputs)")
    for path in [Path(p).resolve() for p in sys.argv[2:]] or [NOTEBOOK, QUICKSTART]:
        t0 = time.perf_counter()
        executed = execute_notebook(path)
        nbformat.write(executed, path)
        print(f"executed and saved {path.relative_to(ROOT)} in {time.perf_counter() - t0:.1f} s")
