"""Glue for the CLIs: recognise a model file and carry it down the pipeline
checkpoint -> ONNX -> canonical ONNX -> IntNet -> (Lava files). Each stage lives in its own package."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from qcfs.errors import ModelFileError, QCFSError
from qcfs.intnet import IntNet, is_intnet_file, load_intnet

ModelKind = Literal["checkpoint", "onnx", "intnet", "lava", "netx", "nir"]
EXPORTED = ("intnet", "lava", "netx", "nir")  # kinds that carry an IntNet


def model_kind(path: Path) -> ModelKind:
    """Classify by content first (zip = torch checkpoint or npz), then by suffix; one-line error if neither."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, expected a model file")
    name = path.name
    if name.endswith(".lava.npz"):
        return "lava"
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
    raise ModelFileError(f"{path}: is a {kind} file, not an exported network")


def checkpoint_to_onnx(ckpt: Path, out: Path, opset: int = 20) -> Path:
    from qcfs.exporters.onnx_export import export_checkpoint

    return export_checkpoint(ckpt, out, opset=opset)


def canonical_onnx(path: Path, **import_options):  # -> onnx.ModelProto
    """Any accepted model file -> canonical QCFS ONNX (docs/canonical_onnx.md)."""
    from qcfs.toolchain.importer import load_canonical

    kind = model_kind(path)
    if kind == "checkpoint":
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = checkpoint_to_onnx(path, Path(tmp) / "model.onnx")
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
) -> Path:
    kind = model_kind(model)
    import_options = dict(calibrate=calibrate, dataset=dataset, data_dir=data_dir, L=L, percentile=percentile)
    if kind in EXPORTED:
        if kind == "lava" or backend == "onnx":
            raise QCFSError(f"{model}: an exported {kind} network can only be exported further with --backend "
                            f"intnet, lava, netx or nir (not from a .lava.npz)")
        if backend == kind:
            raise QCFSError(f"{model}: is already a {kind} file")
        net = load_exported(model, kind)
    else:
        if backend == "onnx":
            import onnx

            canon = canonical_onnx(model, **import_options)
            onnx.save_model(canon, str(out))
            return out
        net = to_intnet(canonical_onnx(model, **import_options), mode=mode, weight_bits=weight_bits,
                        show_passes=show_passes)
    if out.exists() and out.resolve() == model.resolve():
        raise QCFSError(f"{out}: output would overwrite the input; pass another -o")
    if backend == "intnet":
        return net.save(out)
    if backend == "netx":
        from qcfs.exporters.netx_export import export_netx

        return export_netx(net, out)
    if backend == "nir":
        from qcfs.exporters.nir_export import export_nir

        return export_nir(net, out)
    from qcfs.exporters.lava_export import export_lava

    return export_lava(net, out)
