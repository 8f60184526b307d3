"""Model files, behind the API (qcfs.api: load, convert, export_onnx; the CLIs call the API): recognise a model
file and carry it down the pipeline checkpoint -> ONNX -> canonical ONNX -> IntNet, or read the IntNet an
exported file holds, with the temporary files that takes and errors that name the user's file. Each stage lives
in its own package; internal (not public)."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from qcfs.errors import ModelFileError, QCFSError
from qcfs.intnet import IntNet, is_intnet_file, load_intnet

ModelKind = Literal["checkpoint", "onnx", "intnet", "lava", "snn-onnx", "netx", "nir"]
EXPORTED = ("intnet", "lava", "snn-onnx", "netx", "nir")  # kinds that carry an IntNet


def model_kind(path: Path) -> ModelKind:
    """Classify by content first (zip = torch checkpoint or npz), then by suffix; one-line error if neither.
    Only regular files that are no decompression bombs get this far (qcfs.safe_io): FIFOs and devices hang."""
    from qcfs.safe_io import safe_model_input

    safe_model_input(path)
    name = path.name
    if name.endswith(".lava.npz"):
        return "lava"
    if name.endswith(".snn.onnx"):
        return "snn-onnx"
    if name.endswith((".net.h5", ".nir")):
        return "netx" if name.endswith(".net.h5") else "nir"
    if is_intnet_file(path):
        return "intnet"
    if zipfile.is_zipfile(path) and name.endswith((".pt", ".pth")):
        return "checkpoint"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".pt", ".pth")):
        raise ModelFileError(f"{path}: not a torch checkpoint written by qcfs-train (not a zip archive)")
    raise ModelFileError(f"{path}: unknown model file; expected .pt (qcfs-train), .onnx, .intnet.npz, .net.h5 "
                         f"(netx) or .nir")


def load_exported(path: Path, kind: str | None = None) -> IntNet:
    """The IntNet inside any exported file (IntNet, Lava, netx, NIR); one-line errors for foreign files."""
    kind = kind or model_kind(path)
    if kind == "intnet":
        return load_intnet(path)
    if kind == "lava":
        from qcfs.exporters.lava_export import embedded_intnet

        return embedded_intnet(path)
    if kind == "netx":
        from qcfs.exporters.netx_export import load_netx_intnet

        return load_netx_intnet(path)
    if kind == "nir":
        from qcfs.exporters.nir_import import load_nir_intnet

        return load_nir_intnet(path)
    if kind == "snn-onnx":
        from qcfs.runtime.ort_snn import load_snn_onnx

        return load_snn_onnx(path)[1]
    raise ModelFileError(f"{path}: is a {kind} file, not an exported network")


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
            onnx_path = Path(tmp) / "model.onnx"
            try:
                checkpoint_to_onnx(path, onnx_path, authors=authors)
                return load_canonical(onnx_path, **import_options)
            except QCFSError as err:  # name the user's checkpoint, not the intermediate file
                text = str(err).replace(str(onnx_path), f"{path} (as ONNX)").replace(tmp, str(path.parent))
                raise type(err)(text) from None
    if kind == "onnx":
        return load_canonical(path, **import_options)
    raise ModelFileError(f"{path}: is an exported {kind} network, not a checkpoint or ONNX file")


def to_intnet(model, *, mode: str = "int", weight_bits: int = 8, show_passes: bool = False,
              pool: str = "compose") -> IntNet:
    from qcfs.toolchain.convert import convert

    return convert(model, mode=mode, weight_bits=weight_bits, show_passes=show_passes, pool=pool)
