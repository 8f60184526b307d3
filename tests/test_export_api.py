"""`qcfs-export` is a caller of the public API: for the same model and flags it writes what the API calls write
(the IntNet array for array and header for header, the canonical ONNX byte for byte), so the CLI and
qcfs.convert / Network.calibrate_on / graded / save / qcfs.export_onnx are one path; the CLI's refusals stay one
line, before anything is written."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import pytest

import qcfs
from qcfs.cli.export import main as export_main

DIGITS = Path(__file__).resolve().parents[1] / "models" / "digits" / "model.onnx"


def _intnet_content(path: Path) -> dict[str, bytes]:
    """Every member of an IntNet file (.npz), uncompressed: the network itself, without the zip's timestamps."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _reread(path: Path, tmp: Path) -> dict[str, bytes]:
    """The IntNet a .nir (or any exported) file holds, as qcfs.load reads it, written as an IntNet file."""
    out = tmp / f"{path.name}.reread.intnet.npz"
    qcfs.load(path).intnet.save(out)
    return _intnet_content(out)


CASES: dict[str, tuple[list[str], Callable[[Path], object], str]] = {
    "intnet": (["--backend", "intnet"], lambda out: qcfs.convert(DIGITS).save(out, format="intnet"), "intnet"),
    "nir": (["--backend", "nir"], lambda out: qcfs.convert(DIGITS).save(out, format="nir"), "nir"),
    # graded M = 3 with the currents kept: scaled by 3, the shipped digits weights (quantized to the full
    # weight range, whatever the width) would not fit and are refused
    "graded-m3": (["--backend", "intnet", "--spikes-per-step", "3", "--graded-scale", "1"],
                  lambda out: qcfs.convert(DIGITS).graded(3, scale=False).save(out, format="intnet"), "intnet"),
    "fit-pools-separately": (["--backend", "intnet", "--fit", "loihi2"],
                             lambda out: qcfs.convert(DIGITS, pool="separate").save(out, format="intnet"), "intnet"),
    "snn-calib": (["--backend", "intnet", "--snn-calib", "bias", "--target-T", "2", "--dataset", "digits",
                   "--calib-samples", "64", "--no-progress"],
                  lambda out: qcfs.convert(DIGITS).calibrate_on("digits", target_T=2, method="bias", samples=64)
                  .save(out, format="intnet"), "intnet"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_writes_what_the_api_writes(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv, api_call, fmt = CASES[case]
    suffix = qcfs.api.SAVE_FORMATS[fmt]
    cli_out, api_out = tmp_path / f"cli{suffix}", tmp_path / f"api{suffix}"
    assert export_main([str(DIGITS), *argv, "-o", str(cli_out)]) == 0, capsys.readouterr().err
    api_call(api_out)
    if fmt == "intnet":
        cli, api = _intnet_content(cli_out), _intnet_content(api_out)
    else:  # an HDF5 file may carry creation times: compare the network it states
        cli, api = _reread(cli_out, tmp_path), _reread(api_out, tmp_path)
    assert sorted(cli) == sorted(api) and "__header__.npy" in cli
    for name in cli:
        assert cli[name] == api[name], name
    net = qcfs.load(cli_out).intnet  # the case did what it says (the comparison is not between two no-ops)
    assert net.max_spikes_per_step == (3 if case == "graded-m3" else 1)
    assert (net.metadata.get("snn_calibration") is not None) == (case == "snn-calib")
    if case == "fit-pools-separately":
        assert any(s.pool is not None for layer in net.layers for s in layer.synapses)


def test_exported_input_re_exported_as_the_api_does(tmp_path: Path) -> None:
    src = qcfs.convert(DIGITS).save(tmp_path / "d.intnet.npz")
    assert export_main([str(src), "--backend", "nir", "-o", str(tmp_path / "cli.nir")]) == 0
    qcfs.load(src).save(tmp_path / "api.nir")
    assert _reread(tmp_path / "cli.nir", tmp_path) == _reread(tmp_path / "api.nir", tmp_path)


def test_onnx_backend_is_export_onnx_byte_for_byte(tmp_path: Path) -> None:
    """--backend onnx --opset 17 = qcfs.export_onnx(opset=17) = convert(...).save(format="onnx", opset=17)."""
    assert export_main([str(DIGITS), "--backend", "onnx", "--opset", "17", "-o", str(tmp_path / "cli.onnx")]) == 0
    qcfs.export_onnx(DIGITS, tmp_path / "api.onnx", opset=17)
    qcfs.convert(DIGITS).save(tmp_path / "net.onnx", opset=17)
    cli = (tmp_path / "cli.onnx").read_bytes()
    assert cli == (tmp_path / "api.onnx").read_bytes() == (tmp_path / "net.onnx").read_bytes()
    import onnx

    assert [o.version for o in onnx.load_from_string(cli).opset_import if o.domain == ""] == [17]


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "intnet"], "is already a intnet file"),
    (["--backend", "onnx"], "can only be exported further"),
    (["--backend", "lava", "--pool", "separate"], "keeps the pooling it was converted with"),
    (["--backend", "lava", "--mode", "float"], "is a int-mode IntNet"),
    (["--backend", "lava", "--snn-kernels", "int8"], "--snn-kernels applies to --backend snn-onnx only"),
])
def test_cli_refusals_stay_one_line(argv: list[str], needle: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    src = qcfs.convert(DIGITS).save(tmp_path / "d.intnet.npz")
    out = tmp_path / "out.file"
    assert export_main([str(src), *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_lava_file_is_not_exported_further(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = qcfs.convert(DIGITS).save(tmp_path / "d.lava.npz")
    assert export_main([str(src), "--backend", "intnet", "-o", str(tmp_path / "o.intnet.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "an exported lava network" in err, err


@pytest.mark.parametrize("call, needle", [
    (lambda src: qcfs.convert(src, pool="compose"), "keeps the pooling it was converted with"),
    (lambda src: qcfs.export_onnx(src, src.with_name("x.onnx")), "holds no ONNX graph"),
    (lambda src: qcfs.load(src).save(src.with_name("x.intnet.npz"), kernels="int8"), "applies to format snn-onnx"),
    (lambda src: qcfs.load(src).save(src.with_name("x.snn.onnx"), kernels="int4"), "kernels must be one of"),
    (lambda src: qcfs.load(src).calibrate_on("digits", target_T=2, method="bias", samples=0), "samples"),
    (lambda src: qcfs.load(src).calibrate_on("digits", target_T=0, method="bias"), "target_T"),
    (lambda src: qcfs.convert(DIGITS, arch="authors-vgg16"), "needs L="),
])
def test_api_refusals_are_one_line(call: Callable[[Path], object], needle: str, tmp_path: Path) -> None:
    src = qcfs.convert(DIGITS).save(tmp_path / "d.intnet.npz")
    with pytest.raises(qcfs.QCFSError) as info:
        call(src)
    assert needle in str(info.value) and "\n" not in str(info.value), info.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.intnet.npz"]
