"""Issue 13, classes 5, 6, 8 and 10: never overwrite an input, refuse files that hang or inflate, refuse bad
flags and checkpoint configs in one line, honour or refuse --opset, recompute the input scale for
--normalize, and --limit takes an evenly spread subset. Every test here failed before the fix."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from promise import no_temp_files, refused
from qcfs.cli import export as export_cli
from qcfs.cli import run as run_cli
from qcfs.cli import train as train_cli
from test_cli_run import digits_intnet

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ONNX = ROOT / "models" / "digits" / "model.onnx"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copyfile(SHIPPED_ONNX, tmp_path / "m.onnx")
    digits_intnet().save(tmp_path / "m.intnet.npz")
    return tmp_path


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must come before any epoch: training itself is made to fail the test."""
    import qcfs.frontend.train as train_mod

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("training started although the command should have been refused first")

    monkeypatch.setattr(train_mod, "train_model", boom)


# --- class 5: data loss ---------------------------------------------------------------------------------
def test_export_default_output_is_the_input(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    line = refused(export_cli.main, [str(work / "m.onnx")], capsys, [work / "m.onnx"], "pass -o")
    assert "input itself" in line


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_export_output_equal_to_input(work: Path, capsys, spelling: str) -> None:  # type: ignore[no-untyped-def]
    model = work / "m.onnx"
    out = {"same": model, "dotted": work / "." / "m.onnx", "symlink": work / "link.onnx"}[spelling]
    if spelling == "symlink":
        os.symlink(model, out)
    refused(export_cli.main, [str(model), "-o", str(out)], capsys, [model], "input")


@pytest.mark.parametrize("flag", ["--json", "--counts"])
def test_run_output_equal_to_model(work: Path, capsys, flag: str) -> None:  # type: ignore[no-untyped-def]
    model = work / "m.intnet.npz"
    refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--T", "1", flag, str(model)], capsys,
            [model], "input")


def test_run_outputs_must_differ(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model, out = work / "m.intnet.npz", work / "r.json"
    refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--json", str(out), "--counts", str(out)],
            capsys, [model], "another output")


@pytest.mark.parametrize("target", ["missing_dir", "directory", "device", "readonly_dir"])
def test_bad_output_paths_refused_before_work(work: Path, capsys, target: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if target == "readonly_dir" and os.geteuid() == 0:
        monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores permissions
    ro = work / "ro"
    ro.mkdir()
    if target == "readonly_dir" and os.geteuid() != 0:
        ro.chmod(0o500)
    out = {"missing_dir": work / "nowhere" / "x", "directory": work, "device": Path("/dev/null"),
           "readonly_dir": ro / "x"}[target]
    import qcfs.data as data_mod

    monkeypatch.setattr(data_mod, "load_split", lambda *a, **k: pytest.fail("data loaded before the check"))
    model = work / "m.intnet.npz"
    refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--json", str(out)], capsys, [model])
    out_onnx = out if target in ("device", "directory") else out.with_name(out.name + ".onnx")
    refused(export_cli.main, [str(work / "m.onnx"), "-o", str(out_onnx)], capsys, [work / "m.onnx"])


@pytest.mark.parametrize("out", ["/dev/null", "nowhere/c.pt", "."])
def test_train_output_refused_before_an_epoch(work: Path, capsys, no_training, out: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(work)
    refused(train_cli.main, ["--model", "cnn", "--dataset", "digits", "-o", out, "--epochs", "1"], capsys)


def test_failed_export_keeps_the_old_output(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The output is replaced only on success: a failing export leaves the previous file and no temp file."""
    out = work / "old.lava.npz"
    out.write_bytes(b"previous result")
    refused(export_cli.main, [str(work / "m.onnx"), "--backend", "lava", "--mode", "float", "-o", str(out)], capsys,
            [work / "m.onnx"])
    assert out.read_bytes() == b"previous result" and no_temp_files(work) == []


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    from qcfs.safe_io import atomic_path

    target = tmp_path / "t.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and no_temp_files(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and no_temp_files(tmp_path) == []


def test_report_dir_that_is_a_file(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = work / "m.intnet.npz"
    refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--report", str(model)], capsys, [model])


# --- class 6: hangs and bombs ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_non_regular_model_files(tmp_path: Path, capsys, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "m.onnx"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    else:
        path.mkdir()
    refused(export_cli.main, [str(path), "-o", str(tmp_path / "o.onnx")], capsys, needle="regular")
    refused(run_cli.main, ["--model", str(path), "--dataset", "digits", "--T", "1"], capsys, needle="regular")


def test_npz_declaring_too_much_is_not_inflated(work: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QCFS_MAX_UNPACKED_MB", "1")
    bomb = work / "bomb.intnet.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__header__.npy", b"x")
        zf.writestr("c1/bias.npy", bytes(8 << 20))  # 8 MB of zeros: a few kB on disk
    assert bomb.stat().st_size < 100_000
    refused(run_cli.main, ["--model", str(bomb), "--dataset", "digits", "--T", "1"], capsys, [bomb], "unpack")


def test_absurd_T_refused_saying_what_it_takes(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The NumPy reference is refused for time; the default (fused, which holds all T steps of a layer) for
    memory, before it allocates (it tried 153 GiB at T = 10^7 before the budget knew that)."""
    args = ["--model", str(work / "m.onnx"), "--dataset", "digits", "--T", "10000000"]
    line = refused(run_cli.main, [*args, "--backend", "numpy"], capsys)
    assert "would take at least" in line and "--max-hours" in line
    line = refused(run_cli.main, args, capsys)
    assert "(fused): would need at least" in line and "memory" in line


def test_memory_estimate_refuses_what_cannot_fit() -> None:
    from qcfs.budget import check_budget, estimate, physical_memory
    from qcfs.errors import QCFSError

    net = digits_intnet()
    assert physical_memory()
    huge = estimate(net, 10**9, [1, 2, 4], batch=10**9, backend="numpy")
    with pytest.raises(QCFSError, match="memory"):
        check_budget(huge, "--batch 1e9", max_hours=1e12)
    small = estimate(net, 360, [1, 2, 4, 8, 16, 32], batch=256, backend="numpy")
    check_budget(small, "default run")  # the ordinary run is not refused
    assert small.seconds < 60


# --- class 8: flags and configs -------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [
    ("--time-budget", "nan"), ("--seed", "-1"), ("--L", "1e20"), ("--L", "0"), ("--lr", "inf"), ("--lr", "nan"),
    ("--lam-init", "inf"), ("--lam-init", "-3"), ("--wd", "nan"), ("--epochs", "0"), ("--batch", "1.5"),
])
def test_train_flags(capsys, flag: str, value: str, no_training) -> None:  # type: ignore[no-untyped-def]
    refused(train_cli.main, ["--model", "cnn", "--dataset", "digits", "-o", "x.pt", flag, value], capsys, needle=flag)


@pytest.mark.parametrize("flag,value", [
    ("--timeout", "1e400"), ("--timeout", "nan"), ("--timeout", "0"), ("--max-hours", "inf"), ("--batch", "0"),
    ("--T", "1,nan"), ("--normalize", "0.5,nan"), ("--subset", "random"),
])
def test_run_flags(work: Path, capsys, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    refused(run_cli.main, ["--model", str(work / "m.intnet.npz"), "--dataset", "digits", flag, value], capsys)


@pytest.mark.parametrize("flag,value", [("--percentile", "nan"), ("--percentile", "0"), ("--L", "1e20"),
                                        ("--weight-bits", "99"), ("--opset", "99"), ("--opset", "12")])
def test_export_flags(work: Path, capsys, flag: str, value: str) -> None:  # type: ignore[no-untyped-def]
    refused(export_cli.main, [str(work / "m.onnx"), "-o", str(work / "o.onnx"), flag, value], capsys, [work / "m.onnx"])


@pytest.mark.parametrize("doc", [
    {"backend": "lava", "results": [1, 2]},
    {"backend": "lava", "results": [{"T": "four", "accuracy": 0.5}]},
    {"backend": "lava", "results": [{"T": 4, "accuracy": 7}]},
    {"backend": "lava", "results": [{"T": 4, "accuracy": 0.5, "spikes_per_layer": [1, 2]}]},
    {"backend": "lava", "results": [{"T": 4, "accuracy": 0.5, "spikes_per_sample": "many"}]},
])
def test_malformed_lava_json(work: Path, capsys, doc: dict) -> None:  # type: ignore[no-untyped-def]
    lj = work / "lava.json"
    lj.write_text(json.dumps(doc))
    refused(run_cli.main, ["--model", str(work / "m.intnet.npz"), "--dataset", "digits", "--report",
                           str(work / "rep"), "--lava-json", str(lj)], capsys, [lj], "--lava-json")


def test_opset_honoured_or_refused(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import onnx

    assert export_cli.main([str(work / "m.onnx"), "-o", str(work / "o17.onnx"), "--opset", "17"]) == 0
    m = onnx.load(str(work / "o17.onnx"))
    assert [o.version for o in m.opset_import if o.domain == ""] == [17]
    assert any(f.name == "QCFS" for f in m.functions)  # onnxruntime can run it
    refused(export_cli.main, [str(work / "m.onnx"), "-o", str(work / "o13.onnx"), "--opset", "13"], capsys,
            needle="opset 13")  # Reshape has no 14 -> 13 adapter: refused, not silently written at 20
    refused(export_cli.main, [str(work / "m.onnx"), "--backend", "intnet", "-o", str(work / "x.intnet.npz"),
                              "--opset", "17"], capsys, needle="--backend onnx only")


def _checkpoint(path: Path, **edit) -> Path:  # type: ignore[no-untyped-def]
    import torch

    from qcfs.frontend.checkpoint import save_checkpoint
    from qcfs.frontend.models import ModelConfig, build_model

    cfg = ModelConfig("cnn", 1, 10, 8)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(path, model, cfg, "digits", {"mean": [0.3], "std": [0.4]}, optimizer=opt.state_dict(),
                    epoch=1, total_epochs=2, log=[{"epoch": 1, "test_acc": 10.0}], rng=torch.get_rng_state())
    if edit:
        ckpt = torch.load(path, weights_only=True)
        for key, value in edit.items():
            target, _, sub = key.partition("__")
            if sub:
                if value is None:
                    ckpt[target].pop(sub)
                else:
                    ckpt[target][sub] = value
            else:
                ckpt[target] = value
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("edit,needle", [
    ({"config__arch": "transformer"}, "config.arch"),
    ({"config__depth": 3}, "unknown key"),
    ({"config__in_channels": None}, "missing key"),
    ({"config__L": 0}, "config.L"),
    ({"normalize": {"mean": [0.3]}}, "std"),
    ({"normalize": {"mean": [0.3], "std": [0.0]}}, "std > 0"),
    ({"state_dict": [1, 2]}, "state_dict"),
    ({"config": "cnn"}, "config"),
])
def test_bad_checkpoint_configs(tmp_path: Path, capsys, edit: dict, needle: str) -> None:  # type: ignore[no-untyped-def]
    ckpt = _checkpoint(tmp_path / "c.pt", **edit)
    refused(export_cli.main, [str(ckpt), "-o", str(tmp_path / "o.onnx")], capsys, [ckpt], needle)


def test_resume_with_another_architecture(tmp_path: Path, capsys, no_training) -> None:  # type: ignore[no-untyped-def]
    ckpt = _checkpoint(tmp_path / "c.pt")
    refused(train_cli.main, ["--model", "resnet20", "--dataset", "digits", "-o", str(ckpt), "--resume"], capsys,
            [ckpt], "another network")
    refused(train_cli.main, ["--model", "cnn", "--dataset", "digits", "-o", str(ckpt), "--resume", "--L", "8"],
            capsys, [ckpt], "L 4")


def test_normalize_recomputes_the_input_scale(work: Path) -> None:
    from qcfs.toolchain.passes.quantize import input_scale

    import qcfs

    plain = qcfs.load(work / "m.onnx").intnet
    mean, std = (0.9,), (0.05,)
    net = qcfs.load(work / "m.onnx", normalize=(mean, std)).intnet
    want = input_scale(np.asarray(mean), np.asarray(std), net.input.bits)
    assert net.input.mean == mean and net.input.std == std
    assert net.input.scale == pytest.approx(want) and net.input.scale != pytest.approx(plain.input.scale)
    images = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    from qcfs.semantics import encode_input

    q = encode_input(images, net.input.mean, net.input.std, net.input.scale, net.input.bits)
    assert q.min() >= -128 and q.max() <= 127 and (np.abs(q) >= 127).sum() <= 2  # full range, no mass saturation


def test_normalize_on_an_intnet_refused_when_it_saturates(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = work / "m.intnet.npz"
    refused(run_cli.main, ["--model", str(model), "--dataset", "digits", "--T", "1", "--normalize", "0.9,0.05"],
            capsys, [model], "saturate")


# --- class 10: representative subsets -------------------------------------------------------------------
def test_subset_indices_spread_and_prefix() -> None:
    from qcfs.data.subset import subset_indices

    labels = np.repeat(np.arange(10), 1000)  # a class-sorted set, as an ImageFolder copy of CIFAR-10
    spread = subset_indices(len(labels), 50, "spread")
    assert np.array_equal(spread, subset_indices(len(labels), 50, "spread"))  # deterministic
    assert np.bincount(labels[spread], minlength=10).tolist() == [5] * 10  # every class, in proportion
    assert spread[0] == 0 and spread[-1] == len(labels) - 1 and np.all(np.diff(spread) > 0)
    assert subset_indices(len(labels), 50, "prefix").tolist() == list(range(50))
    assert set(labels[subset_indices(len(labels), 50, "prefix")]) == {0}  # the biased sample of old
    assert subset_indices(7, 100).tolist() == list(range(7))


def test_run_records_the_subset(work: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from qcfs.data.subset import subset_indices

    docs = {}
    for rule in ("spread", "prefix"):
        out = work / f"{rule}.json"
        assert run_cli.main(["--model", str(work / "m.intnet.npz"), "--dataset", "digits", "--T", "1",
                             "--limit", "12", "--subset", rule, "--json", str(out), "--no-progress"]) == 0
        docs[rule] = json.loads(out.read_text())
    capsys.readouterr()
    assert docs["spread"]["subset"] == {"rule": "spread", "of": 360, "count": 12,
                                        "indices": subset_indices(360, 12).tolist()}
    assert docs["prefix"]["subset"]["indices"] == list(range(12)) and docs["spread"]["samples"] == 12
