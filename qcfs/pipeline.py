"""Model files, behind the API (qcfs.api.load / convert) and `qcfs-export`: recognise a model file and carry it
down the pipeline checkpoint -> ONNX -> canonical ONNX -> IntNet -> (exported files), with the temporary files
that takes and errors that name the user's file. Each stage lives in its own package; internal (not public)."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


@dataclass(frozen=True)
class SnnCalibOptions:
    """`--snn-calib METHOD --target-T T --dataset D [--data-dir DIR] [--calib-samples N] [--seed S]`."""

    method: str
    target_T: int
    dataset: str
    data_dir: str | None = None
    samples: int = 1024
    seed: int = 0
    progress: bool = True


def calibrate_snn(net: IntNet, opts: SnnCalibOptions, *, show_passes: bool = False) -> IntNet:
    """Post-conversion SNN calibration on training images (qcfs.toolchain.snn_calib); provenance in metadata."""
    from qcfs.toolchain.snn_calib import calibrate, calibrate_auto
    from qcfs.toolchain.snn_calib.sampling import calibration_images01

    images, labels, _ = calibration_images01(opts.dataset, opts.data_dir, tuple(net.input.shape), opts.samples,
                                             opts.seed)
    provenance = {"dataset": opts.dataset, "split": "train", "seed": opts.seed}
    if opts.method == "auto":
        out, report = calibrate_auto(net, images, labels, T=opts.target_T, progress=opts.progress,
                                     provenance=provenance)
    else:
        out, report = calibrate(net, images, T=opts.target_T, method=opts.method, progress=opts.progress,
                                provenance=provenance, labels=labels)
    if show_passes:
        print("\n".join(report.lines()))
    return out


def to_intnet(model, *, mode: str = "int", weight_bits: int = 8, show_passes: bool = False,
              pool: str = "compose") -> IntNet:
    from qcfs.toolchain.convert import convert

    return convert(model, mode=mode, weight_bits=weight_bits, show_passes=show_passes, pool=pool)


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
    snn_calib: SnnCalibOptions | None = None,
    kernels: str = "auto",
    arch: str | None = None,
    pool: str | None = None,
    fit: Any = None,
    nir_profile: str = "qcfs",
    spikes_per_step: int = 1,
    graded_scale: str = "m",
) -> Path:
    """pool: "compose" folds average pools into the next synapse, "separate" keeps sum-pool stages (when a model
    is converted; None: separate with `fit`, else compose). fit: a qcfs.report.resources.FitRequest applied to
    the network before anything is written."""
    authors = None if arch is None else {"arch": arch, "L": L, "dataset": dataset}
    kind = "checkpoint" if authors is not None and model.name.endswith((".pt", ".pth")) else model_kind(model)
    import_options = dict(calibrate=calibrate, dataset=dataset, data_dir=data_dir, L=L, percentile=percentile)
    if kind in EXPORTED:
        if kind in ("lava", "snn-onnx") or backend == "onnx":
            raise QCFSError(f"{model}: an exported {kind} network can only be exported further with --backend "
                            f"intnet, lava, snn-onnx, netx or nir (not from a .lava.npz or .snn.onnx)")
        if backend == kind and snn_calib is None and spikes_per_step == 1 and not (kind == "nir" and nir_profile != "qcfs"):
            raise QCFSError(f"{model}: is already a {kind} file (re-export it only with --snn-calib, "
                            f"--spikes-per-step or --nir-profile)")
        if pool is not None:
            raise QCFSError(f"{model}: --pool applies when a model is converted; an exported {kind} network keeps "
                            f"the pooling it was converted with (drop --pool)")
        net = load_exported(model, kind)
    else:
        if backend == "onnx":
            if pool is not None:
                raise QCFSError("--pool applies to the integer SNN; --backend onnx writes the canonical ANN")
            import onnx

            canon = canonical_onnx(model, authors, **import_options)
            if opset != 20:
                from qcfs.exporters.opset import convert_opset

                canon = convert_opset(canon, opset)
            onnx.save_model(canon, str(out))
            return out
        net = to_intnet(canonical_onnx(model, authors, **import_options), mode=mode, weight_bits=weight_bits,
                        show_passes=show_passes, pool=pool or ("separate" if fit is not None else "compose"))
    if snn_calib is not None:
        net = calibrate_snn(net, snn_calib, show_passes=show_passes)
    if spikes_per_step > 1:
        from qcfs.toolchain.graded import make_graded

        net = make_graded(net, spikes_per_step, scale=graded_scale == "m")
    if fit is not None:
        fit.apply(net)
    if out.exists() and out.resolve() == model.resolve():
        raise QCFSError(f"{out}: output would overwrite the input; pass another -o")
    if backend == "intnet":
        return net.save(out)
    if backend == "snn-onnx":
        from qcfs.exporters.snn_onnx import export_snn_onnx

        return export_snn_onnx(net, out, kernels=kernels)
    if backend == "netx":
        from qcfs.exporters.netx_export import export_netx

        return export_netx(net, out)
    if backend == "nir":
        from qcfs.exporters.nir_export import export_nir

        return export_nir(net, out, profile=nir_profile)
    from qcfs.exporters.lava_export import export_lava

    return export_lava(net, out)
