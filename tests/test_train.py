"""Training: digits cnn ≥ 90 %, deterministic on CPU, resumable, checkpoint round trip, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qcfs.cli.train import main as train_main
from qcfs.frontend.checkpoint import load_checkpoint, read_checkpoint
from qcfs.frontend.train import TrainConfig, cosine_lr, train_model


def test_digits_cnn_reaches_90_percent(digits_checkpoint: Path) -> None:
    ckpt = read_checkpoint(digits_checkpoint)
    assert ckpt["log"][-1]["test_acc"] >= 90.0
    assert ckpt["config"]["arch"] == "cnn" and ckpt["dataset"] == "digits"


def test_checkpoint_round_trip(digits_checkpoint: Path) -> None:
    raw = torch.load(digits_checkpoint, weights_only=True)  # only safe types inside
    model, meta = load_checkpoint(digits_checkpoint)
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw["state_dict"][k])
    assert meta["normalize"]["mean"] and meta["config"]["L"] == 4
    from qcfs.data import load_split
    from qcfs.frontend.train import evaluate

    x, y = load_split("digits", "test")
    mean, std = meta["normalize"]["mean"][0], meta["normalize"]["std"][0]
    acc = evaluate(model, (torch.from_numpy(x) - mean) / std, torch.from_numpy(y))
    assert acc == pytest.approx(meta["log"][-1]["test_acc"], abs=1e-3)  # logged rounded to 3 places


def _train(out: Path, epochs: int, log=lambda _: None) -> Path:  # type: ignore[no-untyped-def]
    out.parent.mkdir(parents=True, exist_ok=True)
    train_model(TrainConfig(model="cnn", dataset="digits", output=str(out), epochs=epochs, resume=True,
                            progress=False), log=log)
    return out


def test_deterministic_and_resumable(tmp_path: Path) -> None:
    straight = read_checkpoint(_train(tmp_path / "a" / "m.pt", 2))
    again = read_checkpoint(_train(tmp_path / "b" / "m.pt", 2))

    class Interrupt(Exception):
        pass

    def interrupt(_: str) -> None:
        raise Interrupt

    out = tmp_path / "c" / "m.pt"
    with pytest.raises(Interrupt):
        _train(out, 2, log=interrupt)  # stops right after epoch 1 is saved
    assert read_checkpoint(out)["epoch"] == 1
    resumed = read_checkpoint(_train(out, 2))
    assert resumed["epoch"] == 2 and [r["epoch"] for r in resumed["log"]] == [1, 2]
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), f"not deterministic: {key}"
        assert torch.equal(value, resumed["state_dict"][key]), f"resume differs: {key}"


def test_cosine_schedule() -> None:
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    assert cosine_lr(0.1, 10, 10) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--model", "cnn", "--dataset", "digits", "-o", "x.pt", "--L", "0"], "argument --L: expected a number of quantization levels in 1..1024"),
        (["--model", "alexnet", "--dataset", "digits", "-o", "x.pt"], "invalid choice"),
        (["--model", "cnn", "--dataset", "mnist", "-o", "x.pt"], "invalid choice"),
        (["--model", "cnn", "--dataset", "digits", "-o", "x.pt", "--epochs", "0"], "argument --epochs: expected a number of epochs"),
        (["--model", "cnn", "--dataset", "digits", "-o", "x.pt", "--lr", "abc"], "argument --lr: expected a number"),
        (["--model", "cnn", "--dataset", "digits", "-o", "x.pt", "--phi", "1.5"], "argument --phi: must be <= 1"),
    ],
)
def test_cli_bad_values(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = train_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_missing_dataset_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "qcfs.cli.train", "--model", "cnn", "--dataset", "fashion-mnist",
         "--data-dir", str(tmp_path), "-o", str(tmp_path / "m.pt"), "--epochs", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "dataset-fashion-mnist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_phi_zero_reaches_the_checkpoint_and_the_snn(tmp_path: Path) -> None:
    """--phi 0 (the paper's contrast): stored in the checkpoint, and the converted IF network starts its
    membranes at 0 instead of θ/2; resuming it under another φ is refused (it would be another network)."""
    import numpy as np

    import qcfs

    out = tmp_path / "phi0.pt"
    assert train_main(["--model", "cnn", "--dataset", "digits", "-o", str(out), "--epochs", "1", "--phi", "0",
                       "--no-progress"]) == 0
    assert read_checkpoint(out)["config"]["phi"] == 0.0
    net = qcfs.load(out).intnet
    assert net.phi == 0.0 and all(np.all(np.asarray(layer.v_init) == 0) for layer in net.if_layers)
    assert train_main(["--model", "cnn", "--dataset", "digits", "-o", str(out), "--epochs", "2", "--resume",
                       "--no-progress"]) == 2
