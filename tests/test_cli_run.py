"""qcfs-run: one-line errors with exit 2, table/JSON/NPZ structure, IntNet input, lava import failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qcfs.cli import run as run_cli
from qcfs.intnet import InputSpec, IntNet, Layer, Synapse

REPO = Path(__file__).resolve().parent.parent


def digits_intnet(seed: int = 0) -> IntNet:
    """A hand-built integer net for digits' 1×8×8 input (random weights: accuracy is meaningless)."""
    rng = np.random.default_rng(seed)
    w = lambda *s, hi=3: rng.integers(-hi, hi + 1, size=s).astype(np.int64)  # noqa: E731
    layers = [
        Layer("c1", "if", (4, 8, 8), w(4, hi=20), 128, 64, [Synapse("input", "conv", w(4, 1, 3, 3),
                                                                     padding=(1, 1, 1, 1))], depth=1),
        Layer("c2", "if", (6, 4, 4), w(6), 6, 3, [Synapse("c1", "conv", w(6, 4, 2, 2), stride=(2, 2))], depth=2),
        Layer("out", "readout", (10,), w(10), 1, 0, [Synapse("c2", "dense", w(10, 96))], depth=3),
    ]
    return IntNet(mode="int", input=InputSpec((1, 8, 8), (0.3064,), (0.3723,), 32.0), layers=layers, L=4)


@pytest.fixture(scope="module")
def intnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_intnet().save(tmp_path_factory.mktemp("run") / "digits.intnet.npz")


def _fails_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    try:
        code = run_cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and needle in err, err


@pytest.mark.parametrize("argv, needle", [
    (["--T", "0"], "positive integers"),
    (["--T", "-3"], "positive integers"),
    (["--T", "1,2.5"], "positive integers"),
    (["--T", "1,x"], "positive integers"),
    (["--T", ""], "positive integers"),
    (["--backend", "loihi"], "invalid choice"),
    (["--limit", "0"], "positive integer"),
    (["--limit", "ten"], "positive integer"),
    (["--batch", "0"], "positive integer"),
    (["--mode", "half"], "invalid choice"),
    (["--timing", "async"], "invalid choice"),
    (["--normalize", "0.5"], "MEAN,STD"),
    (["--normalize", "0.5,0"], "stds > 0"),
    (["--normalize", "0.1,0.2/0.3"], "as many means"),
])
def test_bad_values_exit_2_one_line(capsys, intnet_file: Path, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    _fails_one_line(capsys, ["--model", str(intnet_file), "--dataset", "digits", *argv], needle)


def test_unknown_dataset(capsys, intnet_file: Path) -> None:  # type: ignore[no-untyped-def]
    _fails_one_line(capsys, ["--model", str(intnet_file), "--dataset", "mnist-9000"], "invalid choice")


def test_missing_model_file(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _fails_one_line(capsys, ["--model", str(tmp_path / "nope.onnx"), "--dataset", "digits"], "no such file")


def test_mode_mismatch_with_intnet(capsys, intnet_file: Path) -> None:  # type: ignore[no-untyped-def]
    _fails_one_line(capsys, ["--model", str(intnet_file), "--dataset", "digits", "--mode", "float"], "int-mode")


def test_normalize_channel_mismatch(capsys, intnet_file: Path) -> None:  # type: ignore[no-untyped-def]
    _fails_one_line(capsys, ["--model", str(intnet_file), "--dataset", "digits", "--normalize", "0,0/1,1"],
                    "channel")


def test_no_default_model_for_other_datasets(capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QCFS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("qcfs.defaults.REPO_MODELS", tmp_path / "repo-models")
    from qcfs.defaults import DEFAULT_ARCH  # the arch is the defaults module's choice, not this test's

    _fails_one_line(capsys, ["--dataset", "cifar10"], f"qcfs-train --model {DEFAULT_ARCH['cifar10']} --dataset cifar10")


def test_lava_backend_missing_is_one_line(capsys, intnet_file: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "qcfs.runtime.lava.backend", None)  # import raises ImportError
    _fails_one_line(capsys, ["--model", str(intnet_file), "--dataset", "digits", "--backend", "lava",
                             "--limit", "2"], "setup_env.sh")


def test_json_and_counts(capsys, intnet_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out_json, out_npz = tmp_path / "r.json", tmp_path / "c.counts"
    code = run_cli.main(["--model", str(intnet_file), "--dataset", "digits", "--T", "4,1,2", "--limit", "25",
                         "--batch", "10", "--json", str(out_json), "--counts", str(out_npz), "--no-progress"])
    assert code == 0
    table = capsys.readouterr().out
    assert "n/a" in table and "synops/sample" in table
    doc = json.loads(out_json.read_text())
    assert {"model", "dataset", "backend", "mode", "samples", "ann_accuracy", "results"} <= set(doc)
    assert doc["dataset"] == "digits" and doc["backend"] == "fused" and doc["mode"] == "int"  # the default here
    assert doc["samples"] == 25 and doc["ann_accuracy"] is None
    assert [r["T"] for r in doc["results"]] == [1, 2, 4]
    for r in doc["results"]:
        assert {"T", "accuracy", "spikes_per_sample", "spikes_per_layer", "synops_per_sample"} <= set(r)
        assert set(r["spikes_per_layer"]) == {"c1", "c2"}
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["spikes_per_sample"] == pytest.approx(sum(r["spikes_per_layer"].values()))
    with np.load(out_npz) as npz:
        assert set(npz.files) == {"c1", "c2", "logits"}
        assert npz["c1"].shape == (25,) and npz["c1"].dtype == np.int64
        assert npz["logits"].shape == (25, 10) and npz["logits"].dtype == np.int64
        last = doc["results"][-1]["spikes_per_layer"]
        assert float(npz["c2"].mean()) == pytest.approx(last["c2"])


def test_pipelined_cli_equals_sync(capsys, intnet_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = []
    for timing in ("sync", "pipelined"):
        out = tmp_path / f"{timing}.json"
        assert run_cli.main(["--model", str(intnet_file), "--dataset", "digits", "--T", "3", "--limit", "6",
                             "--timing", timing, "--json", str(out), "--no-progress"]) == 0
        docs.append(json.loads(out.read_text()))
    capsys.readouterr()
    assert docs[0]["timing"] == "sync" and docs[1]["timing"] == "pipelined"
    assert docs[0]["results"] == docs[1]["results"]


def _assert_torch_free(argv: list[str]) -> str:
    """Run qcfs-run in a fresh interpreter and check torch was never imported; returns its stdout."""
    code = (
        "import sys\n"
        "from qcfs.cli.run import main\n"
        f"assert main({argv!r}) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "spikes/sample" in proc.stdout
    return proc.stdout


def test_cli_with_intnet_keeps_torch_out(intnet_file: Path) -> None:
    _assert_torch_free(["--model", str(intnet_file), "--dataset", "digits", "--T", "2", "--limit", "5"])


@pytest.fixture(scope="module")
def onnx_file(digits_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qcfs.exporters.onnx_export import export_checkpoint

    return export_checkpoint(digits_checkpoint, tmp_path_factory.mktemp("onnx") / "digits.onnx")


def test_cli_with_onnx_and_report_keeps_torch_out(onnx_file: Path, tmp_path: Path) -> None:
    """ONNX is the deployment hand-off: simulating it, float companion and report included, needs no torch."""
    out = _assert_torch_free(["--model", str(onnx_file), "--dataset", "digits", "--T", "1,2", "--limit", "5",
                              "--report", str(tmp_path / "rep"), "--no-progress"])
    assert "report:" in out and (tmp_path / "rep" / "report.md").is_file()


def test_default_model_prefers_onnx(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from qcfs import defaults

    monkeypatch.setattr(defaults, "REPO_MODELS", tmp_path / "repo")
    monkeypatch.setenv("QCFS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "repo" / "digits"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"pt")
    assert defaults.default_model("digits") == folder / "model.pt"  # fallback while no ONNX exists
    (folder / "model.onnx").write_bytes(b"onnx")
    assert defaults.default_model("digits") == folder / "model.onnx"


def test_default_digits_run_uses_shipped_onnx() -> None:
    from qcfs.defaults import REPO_MODELS

    shipped = REPO_MODELS / "digits" / "model.onnx"
    if not shipped.is_file():
        pytest.skip(f"{shipped} not shipped in this checkout")
    out = _assert_torch_free(["--dataset", "digits", "--T", "1,2,4,8", "--limit", "5", "--no-progress"])
    assert f"model {shipped} " in out


def test_checkpoint_run_is_free_of_exporter_noise(digits_checkpoint: Path) -> None:
    """The torchvision-skip log lines and the LeafSpec FutureWarning of torch's exporter are silenced."""
    cmd = [sys.executable, "-m", "qcfs.cli.run", "--model", str(digits_checkpoint), "--dataset", "digits",
           "--T", "1", "--limit", "3", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision" not in proc.stderr and "LeafSpec" not in proc.stderr, proc.stderr


def test_exporter_filter_is_narrow() -> None:
    """Only the torchvision-skip records are dropped; other warnings of that logger still show."""
    import logging

    from qcfs.exporters.onnx_export import _drop_torchvision_skip

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("torch.onnx", logging.WARNING, __file__, 1, msg, ("x",), None)

    assert not _drop_torchvision_skip(record("torchvision is not installed. Skipping %s"))
    assert _drop_torchvision_skip(record("'%s' is not found in this version of PyTorch."))


def test_default_backend_is_fused_with_numpy_integers(intnet_file: Path, tmp_path: Path) -> None:
    """No --backend: fused where it runs the network, with the NumPy reference's results in every field of the
    JSON; the NumPy reference where only it serves an option (pipelined timing)."""
    docs = {}
    for name, extra in (("default", []), ("numpy", ["--backend", "numpy"]), ("pipelined", ["--timing", "pipelined"])):
        out = tmp_path / f"{name}.json"
        assert run_cli.main(["--model", str(intnet_file), "--dataset", "digits", "--T", "1,3", "--limit", "12",
                             "--json", str(out), "--counts", str(tmp_path / f"{name}.npz"), "--no-progress",
                             *extra]) == 0
        docs[name] = json.loads(out.read_text())
    assert docs["default"]["backend"] == "fused"
    assert docs["numpy"]["backend"] == docs["pipelined"]["backend"] == "numpy"
    same = {k: v for k, v in docs["default"].items() if k not in ("backend", "command")}
    assert same == {k: v for k, v in docs["numpy"].items() if k not in ("backend", "command")}
    with np.load(tmp_path / "default.npz") as got, np.load(tmp_path / "numpy.npz") as ref:
        assert sorted(got.files) == sorted(ref.files)
        for key in ref.files:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
