"""Issue 13, class 2: a .lava.npz runs only what its embedded (digest-checked) IntNet re-derives to.

Every Lava-side field a user or attacker could edit (weights, thresholds, v_init, bias, input scale, depth,
stride/padding) is refused in one line naming layer and field, on every backend; the Lava backend runs a
copy freshly derived from the verified network, never the file's own arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qcfs.cli.run import main as run_main
from qcfs.errors import ModelFileError
from qcfs.exporters.lava_export import embedded_intnet, export_lava, load_lava_file
from qcfs.exporters.lava_verify import verified_lava_file

from lava_nets import digits_net, residual_net


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _edit_header(arrays: dict[str, np.ndarray], edit) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    hdr = json.loads(arrays["__header__"].tobytes())
    edit(hdr)
    out = dict(arrays)
    out["__header__"] = np.frombuffer(json.dumps(hdr).encode(), dtype=np.uint8)
    return out


@pytest.fixture()
def lava_file(tmp_path: Path) -> Path:
    return export_lava(digits_net(), tmp_path / "net.lava.npz")


def test_untouched_file_verifies(lava_file: Path) -> None:
    net, lf = verified_lava_file(lava_file)
    assert [layer.name for layer in net.layers] == [lh["name"] for lh in lf.layers]


def test_residual_net_with_delays_verifies(tmp_path: Path) -> None:
    path = export_lava(residual_net(), tmp_path / "res.lava.npz")
    assert len(embedded_intnet(path).layers) == len(load_lava_file(path).layers)


ARRAY_EDITS = ["c1/syn0/weight", "c1/bias", "c1/v_init", "c2/syn0/weight"]


@pytest.mark.parametrize("key", ARRAY_EDITS)
def test_edited_lava_array_is_refused(lava_file: Path, tmp_path: Path, key: str) -> None:
    arrays = _arrays(lava_file)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] += 2
    bad = _write(tmp_path / "bad.lava.npz", arrays)
    layer, field = key.split("/", 1)
    with pytest.raises(ModelFileError, match=f"layer '{layer}': array {field} differs"):
        embedded_intnet(bad)


HEADER_EDITS = {
    "threshold": (lambda h: h["layers"][0].__setitem__("threshold", h["layers"][0]["threshold"] + 2),
                  "layer 'c1': field threshold"),
    "depth": (lambda h: h["layers"][1].__setitem__("depth", 5), "layer 'c2': field depth"),
    "input scale": (lambda h: h["input"].__setitem__("scale", h["input"]["scale"] * 2), "header field input.scale"),
    "stride": (lambda h: h["layers"][0]["synapses"][0].__setitem__("stride", [2, 2]),
               "layer 'c1': field synapses[0].stride"),
    "padding": (lambda h: h["layers"][0]["synapses"][0].__setitem__("padding_tlbr", [3, 0, 3, 0]),
                "layer 'c1': field synapses[0].padding_tlbr"),
    "weight_exp": (lambda h: h["layers"][-1]["synapses"][0].__setitem__("weight_exp", 0),
                   "field synapses[0].weight_exp"),
    "v_max": (lambda h: h["layers"][0].__setitem__("v_max", 10), "layer 'c1': field v_max"),
    "extra field": (lambda h: h["layers"][0].__setitem__("leak", 1), "layer 'c1': field leak (unexpected)"),
}


@pytest.mark.parametrize("what", sorted(HEADER_EDITS))
def test_edited_lava_header_is_refused(lava_file: Path, tmp_path: Path, what: str) -> None:
    edit, expected = HEADER_EDITS[what]
    bad = _write(tmp_path / "bad.lava.npz", _edit_header(_arrays(lava_file), edit))
    with pytest.raises(ModelFileError, match=expected.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        embedded_intnet(bad)


def test_extra_and_missing_arrays_are_refused(lava_file: Path, tmp_path: Path) -> None:
    arrays = _arrays(lava_file)
    extra = dict(arrays, **{"c1/syn1/weight": arrays["c1/syn0/weight"]})
    with pytest.raises(ModelFileError, match="syn1/weight is not part of the embedded network"):
        embedded_intnet(_write(tmp_path / "extra.lava.npz", extra))
    missing = {k: v for k, v in arrays.items() if k != "c2/bias"}
    with pytest.raises(ModelFileError, match="layer 'c2': array bias is missing"):
        embedded_intnet(_write(tmp_path / "missing.lava.npz", missing))


def test_lava_backend_runs_the_derived_copy(lava_file: Path, tmp_path: Path) -> None:
    """The backend's input file is re-derived from the embedded network (and a tampered one is refused before
    any Lava process starts)."""
    from qcfs.runtime.lava.backend import _lava_file

    work = tmp_path / "work"
    work.mkdir()
    derived = _lava_file(lava_file, work)
    assert derived != lava_file and derived.parent == work
    from qcfs.exporters.lava_export import EMBEDDED_INTNET, embedded_intnet, intnet_digest

    a, b = _arrays(derived), _arrays(lava_file)
    # the throw-away copy embeds its IntNet uncompressed (faster start-up): same network, other bytes
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a if k not in ("__header__",
                                                                                              EMBEDDED_INTNET))
    assert intnet_digest(embedded_intnet(derived)) == intnet_digest(embedded_intnet(lava_file))
    arrays = _arrays(lava_file)
    arrays["c1/syn0/weight"] = arrays["c1/syn0/weight"] * 0
    bad = _write(tmp_path / "bad.lava.npz", arrays)
    with pytest.raises(ModelFileError, match="array syn0/weight differs"):
        _lava_file(bad, work)


def test_cli_refuses_edited_lava_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The user's flow with the shipped digits model: every backend refuses (numpy shown; lava shares the check)."""
    from qcfs.cli.export import main as export_main

    model = Path(__file__).resolve().parents[1] / "models" / "digits" / "model.onnx"
    lava = tmp_path / "digits.lava.npz"
    assert export_main([str(model), "--backend", "lava", "-o", str(lava)]) == 0
    arrays = _arrays(lava)
    name = json.loads(arrays["__header__"].tobytes())["layers"][0]["name"]
    bad = _write(tmp_path / "edited.lava.npz", _edit_header(
        arrays, lambda h: h["layers"][0].__setitem__("threshold", h["layers"][0]["threshold"] * 2)))
    capsys.readouterr()
    code = run_main(["--model", str(bad), "--dataset", "digits", "--T", "2", "--limit", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"layer '{name}': field threshold differs" in err
