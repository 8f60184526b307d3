"""Glue for the CLIs: recognise a model file and carry it down the pipeline
checkpoint -> ONNX -> canonical ONNX -> IntNet -> (Lava files). Each stage lives in its own package."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from qcfs.errors import ModelFileError, QCFSError
from qcfs.intnet import IntNet, is_intnet_file, load_intnet

ModelKind = Literal["checkpoint", "onnx", "intnet", "lava"]


def model_kind(path: Path) -> ModelKind:
    """Classify by content first (zip = torch checkpoint or npz), then by suffix; one-line error if neither."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, expected a model file")
    name = path.name
    if name.endswith(".lava.npz"):
        return "lava"
    if is_intnet_file(path):
        return "intnet"
    if zipfile.is_zipfile(path) and name.endswith((".pt", ".pth")):
        return "checkpoint"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".pt", ".pth")):
        raise ModelFileError(f"{path}: not a torch checkpoint written by qcfs-train (not a zip archive)")
    raise ModelFileError(f"{path}: unknown model file; expected .pt (qcfs-train), .onnx or .intnet.npz")


def checkpoint_to_onnx(ckpt: Path, out: Path, opset: int = 20, authors: dict | None = None) -> Path:
    """`authors` = {"arch", "L", "dataset"}: a bare state dict of the QCFS authors' code (frontend/authors.py)."""
    if authors is not None:
        from qcfs.frontend.authors import export_authors_checkpoint

        return export_authors_checkpoint(ckpt, out, authors["arch"], L=authors["L"], dataset=authors["dataset"],
                                         opset=opset)
    from qcfs.exporters.onnx_export import export_checkpoint

    return export_checkpoint(ckpt, out, opset=opset)


def canonical_onnx(path: Path, authors: dict | None = None, **import_options):  # -> onnx.ModelProto
    """Any accepted model file -> canonical QCFS ONNX (docs/canonical_onnx.md)."""
    from qcfs.toolchain.importer import load_canonical

    kind = "checkpoint" if authors is not None and path.name.endswith((".pt", ".pth")) else model_kind(path)
    if authors is not None and kind != "checkpoint":
        raise QCFSError(f"{path}: --arch {authors['arch']} reads the authors' .pth state dicts, not a {kind} file")
    if kind == "checkpoint":
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = checkpoint_to_onnx(path, Path(tmp) / "model.onnx", authors=authors)
            return load_canonical(onnx_path, **import_options)
    if kind == "onnx":
        return load_canonical(path, **import_options)
    raise ModelFileError(f"{path}: is an exported {kind} network, not a checkpoint or ONNX file")


def to_intnet(model, *, mode: str = "int", weight_bits: int = 8, show_passes: bool = False) -> IntNet:
    from qcfs.toolchain.convert import convert

    return convert(model, mode=mode, weight_bits=weight_bits, show_passes=show_passes)


def export(
    model: Path,
    out: Path,
    *,
    backend: str,
    mode: str = "int",
    weight_bits: int = 8,
    opset: int = 20,
    show_passes: bool = False,
    calibrate: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    L: int = 4,
    percentile: float = 99.9,
    arch: str | None = None,
) -> Path:
    authors = None if arch is None else {"arch": arch, "L": L, "dataset": dataset}
    kind = "checkpoint" if authors is not None and model.name.endswith((".pt", ".pth")) else model_kind(model)
    import_options = dict(calibrate=calibrate, dataset=dataset, data_dir=data_dir, L=L, percentile=percentile)
    if kind in ("intnet", "lava"):
        if backend != "lava" or kind != "intnet":
            raise QCFSError(f"{model}: an exported {kind} network can only be exported further with --backend lava")
        net = load_intnet(model)
    else:
        if backend == "onnx":
            import onnx

            canon = canonical_onnx(model, authors, **import_options)
            onnx.save_model(canon, str(out))
            return out
        net = to_intnet(canonical_onnx(model, authors, **import_options), mode=mode, weight_bits=weight_bits,
                        show_passes=show_passes)
    if backend == "intnet":
        return net.save(out)
    from qcfs.exporters.lava_export import export_lava

    return export_lava(net, out)
