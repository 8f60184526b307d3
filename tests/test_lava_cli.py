"""The user's flow: `qcfs-export model.onnx --backend lava` then `qcfs-run --model model.lava.npz --backend lava`,
with counts identical to the NumPy runtime's, and a tampered Lava file refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import io

from qcfs.cli.export import main as export_main
from qcfs.cli.run import main as run_main
from qcfs.exporters.lava_export import EMBEDDED_INTNET
from qcfs.intnet import load_intnet
from qcfs.runtime.lava.compat import lava_available

MODELS = Path(__file__).resolve().parents[1] / "models"
pytestmark = [pytest.mark.lava, pytest.mark.skipif(not lava_available(), reason="lava-nc not installed")]


@pytest.mark.timeout(300)
def test_exported_lava_file_runs_bit_exact(tmp_path: Path) -> None:
    lava = tmp_path / "digits.lava.npz"
    assert export_main([str(MODELS / "digits" / "model.onnx"), "--backend", "lava", "-o", str(lava)]) == 0
    common = ["--dataset", "digits", "--T", "2,4", "--limit", "24", "--no-progress"]
    assert run_main(["--model", str(lava), "--backend", "lava", "--counts", str(tmp_path / "l.npz"), *common]) == 0
    assert run_main(["--model", str(lava), "--backend", "numpy", "--counts", str(tmp_path / "n.npz"), *common]) == 0
    with np.load(tmp_path / "l.npz") as a, np.load(tmp_path / "n.npz") as b:
        assert sorted(a.files) == sorted(b.files) and "logits" in a.files
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
        assert sum(int(a[k].sum()) for k in a.files if k != "logits") > 0  # the network did spike


def test_tampered_lava_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lava = tmp_path / "digits.lava.npz"
    export_main([str(MODELS / "digits" / "model.onnx"), "--backend", "lava", "-o", str(lava)])
    capsys.readouterr()
    with np.load(lava) as npz:
        arrays = {k: npz[k] for k in npz.files}
    net = load_intnet(io.BytesIO(arrays[EMBEDDED_INTNET].tobytes()))
    net.layers[0].bias = net.layers[0].bias + 1  # the embedded network no longer matches the header's digest
    arrays[EMBEDDED_INTNET] = np.frombuffer(net.to_bytes(), dtype=np.uint8)
    with open(lava, "wb") as fh:
        np.savez(fh, **arrays)
    code = run_main(["--model", str(lava), "--dataset", "digits", "--T", "4", "--limit", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "digest differs" in err and len(err.strip().splitlines()) == 1
