"""qcfs-run --report: the folder it writes, both modes side by side, Lava points, provenance, and an ANN
accuracy that matches onnxruntime recomputed here independently."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_cli_run import _fails_one_line, digits_intnet  # noqa: E402

from qcfs.cli import run as run_cli  # noqa: E402

LIMIT = 60
TS = [1, 2, 4, 8]
FIGURES = ("accuracy.png", "spikes_per_layer.png", "firing_rate.png", "raster.png", "energy.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAVA_DOC = {"backend": "lava", "dataset": "digits", "mode": "int", "samples": 20,
            "results": [{"T": 4, "accuracy": 0.9}, {"T": 8, "accuracy": 0.95}]}


@dataclass
class ReportRun:
    argv: list[str]
    outdir: Path
    stdout: str
    json_doc: dict[str, Any]
    report: dict[str, Any]


@pytest.fixture(scope="module")
def report_run(digits_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportRun:
    """One int-mode run of the digits checkpoint with --report, --json and --lava-json (shared: ~10 s)."""
    tmp = tmp_path_factory.mktemp("report")
    lava = tmp / "lava.json"
    lava.write_text(json.dumps(LAVA_DOC))
    outdir, out_json = tmp / "rep", tmp / "run.json"
    argv = ["--model", str(digits_checkpoint), "--dataset", "digits", "--T", ",".join(map(str, TS)),
            "--limit", str(LIMIT), "--json", str(out_json), "--report", str(outdir), "--lava-json", str(lava),
            "--no-progress"]
    buf = io.StringIO()  # capsys is function-scoped; the table is needed by several tests
    with contextlib.redirect_stdout(buf):
        assert run_cli.main(argv) == 0
    return ReportRun(argv, outdir, buf.getvalue(), json.loads(out_json.read_text()),
                     json.loads((outdir / "report.json").read_text()))


def test_report_folder_contents(report_run: ReportRun) -> None:
    names = {p.name for p in report_run.outdir.iterdir()}
    assert names == {"report.md", "report.json", *FIGURES}
    for fig in FIGURES:
        data = (report_run.outdir / fig).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, fig
    assert report_run.report["figures"] == list(FIGURES)
    assert f"report: {report_run.outdir / 'report.md'}" in report_run.stdout


def test_report_has_both_modes_on_same_samples(report_run: ReportRun) -> None:
    runs = report_run.report["runs"]
    snn, flt = runs["snn"], runs["float"]
    assert snn["mode"] == "int" and flt["mode"] == "float"
    assert snn["samples"] == flt["samples"] == LIMIT
    assert [r["T"] for r in snn["results"]] == [r["T"] for r in flt["results"]] == TS
    assert snn["ann_accuracy"] == flt["ann_accuracy"] is not None
    assert snn == report_run.json_doc  # the report's SNN run is exactly what --json wrote
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in flt["results"])


def test_report_raster_and_lava(report_run: ReportRun) -> None:
    raster = report_run.report["raster"]
    assert raster and set(raster) == set(report_run.json_doc["results"][0]["spikes_per_layer"])
    for rows in raster.values():
        assert np.asarray(rows).shape == (max(TS), run_cli.RASTER_NEURONS)
    assert report_run.report["runs"]["lava"] == LAVA_DOC
    md = (report_run.outdir / "report.md").read_text()
    assert "| 4 |" in md and "90.00" in md and "95.00" in md


def test_command_line_recorded(report_run: ReportRun) -> None:
    expected = shlex.join(["qcfs-run", *report_run.argv])
    assert report_run.json_doc["command"] == expected
    assert report_run.report["command"] == expected
    assert expected in (report_run.outdir / "report.md").read_text()


def _onnxruntime_accuracy(checkpoint: Path, tmp: Path, limit: int) -> float:
    """Independent of qcfs-run's code path: the plain exported ONNX (not the canonical graph), the dataset's
    own statistics, onnxruntime on the `limit` test samples qcfs-run's --limit picks (spread evenly)."""
    import onnxruntime as ort

    from qcfs.data import DATASETS, load_split
    from qcfs.exporters.onnx_export import export_checkpoint

    path = export_checkpoint(checkpoint, tmp / "plain.onnx")
    images, labels = load_split("digits", "test")
    from qcfs.data.subset import subset_indices

    idx = subset_indices(len(labels), limit)
    images, labels = images[idx], labels[idx]
    info = DATASETS["digits"]
    mean = np.asarray(info.mean, dtype=np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(info.std, dtype=np.float64).reshape(1, -1, 1, 1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: ((images - mean) / std).astype(np.float32)})[0]
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def test_ann_accuracy_matches_onnxruntime(report_run: ReportRun, digits_checkpoint: Path, tmp_path: Path) -> None:
    expected = _onnxruntime_accuracy(digits_checkpoint, tmp_path, LIMIT)
    assert report_run.json_doc["ann_accuracy"] == expected
    table = report_run.stdout.splitlines()
    head = next(i for i, line in enumerate(table) if "ANN acc %" in line)
    assert table[head].split()[:3] == ["T", "latency", "ANN"]  # so value column 2 is the ANN accuracy
    for line in table[head + 1 : head + 1 + len(TS)]:
        assert line.split()[2] == f"{100 * expected:.2f}", line


def test_float_mode_report_puts_integer_run_first(digits_checkpoint: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    outdir = tmp_path / "rep"
    assert run_cli.main(["--model", str(digits_checkpoint), "--dataset", "digits", "--T", "1,2", "--limit", "20",
                         "--mode", "float", "--report", str(outdir), "--no-progress"]) == 0
    capsys.readouterr()
    runs = json.loads((outdir / "report.json").read_text())["runs"]
    assert runs["snn"]["mode"] == "int" and runs["float"]["mode"] == "float" and runs["lava"] is None
    assert runs["snn"]["command"] == runs["float"]["command"]


def test_intnet_report_has_one_mode(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = digits_intnet().save(tmp_path / "net.intnet.npz")
    outdir = tmp_path / "rep"
    assert run_cli.main(["--model", str(model), "--dataset", "digits", "--T", "2,4", "--limit", "10",
                         "--report", str(outdir), "--no-progress"]) == 0
    capsys.readouterr()
    report = json.loads((outdir / "report.json").read_text())
    assert report["runs"]["float"] is None and report["runs"]["snn"]["ann_accuracy"] is None
    assert "raster.png" in report["figures"] and (outdir / "report.md").is_file()


@pytest.mark.parametrize("doc, needle", [
    ({"backend": "numpy", "dataset": "digits", "results": []}, "expected a --backend lava run"),
    ({"backend": "lava", "dataset": "cifar10", "results": []}, "is for dataset cifar10"),
    ({"backend": "lava"}, "no \"results\" list"),
])
def test_bad_lava_json_is_one_line(capsys, tmp_path: Path, doc: dict, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "lava.json"
    path.write_text(json.dumps(doc))
    _fails_one_line(capsys, ["--dataset", "digits", "--report", str(tmp_path / "r"), "--lava-json", str(path)],
                    needle)


def test_lava_json_needs_report(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "lava.json"
    path.write_text(json.dumps(LAVA_DOC))
    _fails_one_line(capsys, ["--dataset", "digits", "--lava-json", str(path)], "pass --report DIR")
