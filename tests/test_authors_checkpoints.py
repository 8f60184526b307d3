"""Issue 13, class 11: bare state dicts of the QCFS authors' code become zoo models computing the same function.

Fixtures come from our own re-creation of their module layouts (tests/authors_layouts.py); the mapped zoo
model must compute what the re-created authors' model computes (float64, so no rounding hides a mistake)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from authors_layouts import AuthorsVGG16, authors_model, randomize
from qcfs.cli.export import main as export_main
from qcfs.errors import ModelFileError
from qcfs.frontend.authors import AUTHORS_NORMALIZE, load_authors_checkpoint


def _save(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


CASES = [("authors-vgg16", "thresh", "act"), ("authors-vgg16", "up", "act"), ("authors-resnet18", "thresh", "act"),
         ("authors-resnet34", "up", "relu"), ("authors-resnet20", "thresh", "act"), ("authors-resnet20", "up", "relu")]


@pytest.mark.parametrize("arch,lam_name,act_name", CASES)
def test_mapped_model_computes_the_authors_function(arch: str, lam_name: str, act_name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)  # the layers' default weight init draws from the global generator: fix it
    theirs = randomize(authors_model(arch, L=4, lam_name=lam_name, act_name=act_name), seed=1)
    path = _save(theirs, tmp_path / "their.pth")
    ours, meta = load_authors_checkpoint(path, arch, L=4, dataset="cifar10")
    assert meta["config"]["L"] == 4 and meta["normalize"] == AUTHORS_NORMALIZE["cifar10"]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        want, got = theirs.double()(x), ours.double()(x)
    # VGG: the conv bias folded into the BN mean is stored in float32 (≈1e-8 off); a wrong mapping or a flipped
    # QCFS level would be off by ≥ λ/L·|w|, orders of magnitude more
    assert want.abs().max() > 0.01 and torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()
    lams = sorted(float(p.detach()) for n, p in ours.named_parameters() if n.endswith(".lam"))
    assert lams == sorted(float(p.detach()) for n, p in theirs.named_parameters() if n.endswith(lam_name))


def test_cli_exports_authors_resnet20(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)  # default weight init draws from the global generator
    theirs = randomize(authors_model("authors-resnet20", L=4), seed=3)
    path = _save(theirs, tmp_path / "their.pth")
    out = tmp_path / "their.onnx"
    code = export_main([str(path), "--arch", "authors-resnet20", "--L", "4", "--dataset", "cifar10", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    model = onnx.load(str(out))
    assert sum(n.op_type == "QCFS" for n in model.graph.node) == 19  # stem + 9 blocks × 2
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["qcfs.model"] == "resnet20" and "0.2023" in meta["qcfs.normalize.std"]
    x = np.random.default_rng(4).normal(0, 1, (4, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = theirs.float()(torch.from_numpy(x)).numpy()
    assert np.allclose(got, want, atol=1e-3), np.abs(got - want).max()


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    capsys.readouterr()
    code = export_main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def resnet20_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # default weight init draws from the global generator
    return randomize(authors_model("authors-resnet20", L=4), seed=5).state_dict()


def _cli(path: Path, tmp_path: Path, arch: str = "authors-resnet20") -> list[str]:
    return [str(path), "--arch", arch, "--L", "4", "--dataset", "cifar10", "-o", str(tmp_path / "o.onnx")]


def test_missing_key_is_named(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    del resnet20_sd["conv3_x.0.shortcut.1.running_var"]
    torch.save(resnet20_sd, tmp_path / "m.pth")
    _one_line_error(_cli(tmp_path / "m.pth", tmp_path), capsys, "'conv3_x.0.shortcut.1.running_var' missing")
    assert not (tmp_path / "o.onnx").exists()


def test_extra_key_is_named(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    resnet20_sd["conv2_x.0.extra.weight"] = torch.zeros(3)
    torch.save(resnet20_sd, tmp_path / "m.pth")
    _one_line_error(_cli(tmp_path / "m.pth", tmp_path), capsys, "unexpected key 'conv2_x.0.extra.weight'")


def test_wrong_shape_is_named(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    resnet20_sd["conv2_x.1.residual_function.0.weight"] = torch.zeros(16, 16, 5, 5)
    torch.save(resnet20_sd, tmp_path / "m.pth")
    _one_line_error(_cli(tmp_path / "m.pth", tmp_path), capsys, "'conv2_x.1.residual_function.0.weight'",
                    "[16, 16, 5, 5]")


def test_wrong_architecture_is_refused(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    torch.save(resnet20_sd, tmp_path / "m.pth")
    _one_line_error(_cli(tmp_path / "m.pth", tmp_path, "authors-resnet18"), capsys, "conv5_x", "missing")


def test_maxpool_variant_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    wobn = AuthorsVGG16(L=4, bn=False)
    keys = {k: v for k, v in wobn.state_dict().items() if k.startswith("layer1.")}  # enough to recognise it
    assert "layer1.1.thresh" in keys and not any("running_mean" in k for k in keys)
    torch.save(keys, tmp_path / "wobn.pth")
    _one_line_error(_cli(tmp_path / "wobn.pth", tmp_path, "authors-vgg16"), capsys, "vgg16_wobn", "MaxPool")


def test_pickled_objects_are_never_unpickled(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "pwned",))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"conv1.0.weight": Boom()}, fh)
    _one_line_error(_cli(tmp_path / "evil.pth", tmp_path), capsys, "not a readable state dict")
    assert not (tmp_path / "pwned").exists()


def test_arch_needs_L_and_dataset(resnet20_sd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    torch.save(resnet20_sd, tmp_path / "m.pth")
    _one_line_error([str(tmp_path / "m.pth"), "--arch", "authors-resnet20", "--dataset", "cifar10"], capsys, "--L")
    _one_line_error([str(tmp_path / "m.pth"), "--arch", "authors-resnet20", "--L", "4"], capsys, "--dataset")
    with pytest.raises(ModelFileError):
        load_authors_checkpoint(tmp_path / "absent.pth", "authors-resnet20", L=4, dataset="cifar10")
