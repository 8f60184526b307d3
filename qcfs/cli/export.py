"""`qcfs-export MODEL --backend onnx|intnet|lava|snn-onnx|netx|nir`: checkpoint -> ONNX -> canonical graph -> IntNet
-> Lava / lava-dl netx (.net.h5) / NIR (.nir), or the integer SNN itself as ONNX (snn-onnx: runs on any ONNX
runtime, `qcfs-run --model X.snn.onnx`). An exported .intnet.npz, .net.h5 or .nir converts to the others.
With `--snn-calib METHOD --target-T T --dataset D` the IntNet is calibrated for low latency before it is written.
A caller of the Python API (qcfs.convert, then Network.calibrate_on / graded / save, or qcfs.export_onnx;
README "Python API"): the same model and options give the same file either way."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qcfs import safe_io
from qcfs.cli import OneLineParser
from qcfs.cli.values import L_VALUE, SEED, integer, number
from qcfs.errors import QCFSError, cli_entry

BACKENDS = ("onnx", "intnet", "lava", "snn-onnx", "netx", "nir")
AUTHORS_ARCHS = ("authors-vgg16", "authors-resnet18", "authors-resnet34", "authors-resnet20")
SUFFIX = {"onnx": ".onnx", "intnet": ".intnet.npz", "lava": ".lava.npz", "snn-onnx": ".snn.onnx", "netx": ".net.h5",
          "nir": ".nir"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-export", description=__doc__)
    p.add_argument("model", help="checkpoint (.pt from qcfs-train), ONNX, IntNet (.intnet.npz), netx (.net.h5) or NIR (.nir)")
    p.add_argument("--backend", default="onnx", choices=BACKENDS, help="what to write (default: onnx)")
    p.add_argument("-o", "--output", help="output path (default: next to MODEL with the backend's suffix)")
    p.add_argument("--mode", choices=("int", "float"),
                   help="integer or float IF network (default int; an exported MODEL keeps its own)")
    p.add_argument("--weight-bits", type=integer(2, 16, "a bit width"), default=8,
                   help="signed weight bit width (default 8)")
    p.add_argument("--opset", type=integer(1, 10_000, "an opset"),
                   help="--backend onnx: opset of the written file, 13..20 (default 20); refused when the graph "
                        "cannot be converted exactly")
    p.add_argument("--snn-kernels", default="auto", choices=("auto", "int8", "float32"),
                   help="snn-onnx: u8×s8 MatMulInteger, float32 Conv/MatMul where provably exact, or auto "
                        "(int8 for wide convolutions, default)")
    p.add_argument("--nir-profile", default="qcfs", choices=("qcfs", "readers", "snntorch"),
                   help="--backend nir: qcfs (readout as an I node, default), readers (the graph outputs the "
                        "readout current, summed over steps by the user; for readers without NIR's I node) or "
                        "snntorch (readers, each IF as the LIF snnTorch 1.0 runs as an IF with reset to zero); "
                        "README \"Formats\"")
    p.add_argument("--show-passes", action="store_true", help="print the conversion pass pipeline as it runs")
    p.add_argument("--calibrate", choices=("relu",), help="convert a plain ReLU network by data calibration")
    p.add_argument("--dataset", help="dataset for --calibrate")
    p.add_argument("--data-dir", help="dataset location for --calibrate")
    p.add_argument("--L", type=L_VALUE, default=None,
                   help="quantization steps for --calibrate (default 4); with --arch: the L it was trained with "
                        "(required)")
    p.add_argument("--arch", choices=AUTHORS_ARCHS,
                   help="MODEL is a bare state dict of the QCFS authors' code (with --L and --dataset; "
                        "docs/authors_checkpoints.md)")
    p.add_argument("--percentile", type=number(0, 100, lo_open=True), default=99.9,
                   help="activation percentile for λ (default 99.9)")
    p.add_argument("--spikes-per-step", type=integer(1, 255, "spikes per step"), default=1, metavar="M",
                   help="graded spikes: each IF neuron emits up to M spikes per step as one message (default 1: "
                        "binary IF); currents are scaled by M so T steps act like M·T binary ones (README: Graded "
                        "spikes); intnet, lava and snn-onnx only")
    p.add_argument("--graded-scale", choices=("m", "1"), default="m",
                   help="with --spikes-per-step: scale every per-step current by M (default; exact at T = 1 with "
                        "M = L) or keep the currents (M only caps the spikes per step)")
    p.add_argument("--pool", choices=("compose", "separate"),
                   help="average pooling: fold it into the next synapse (compose) or keep it as an exact sum-pool "
                        "stage with 1/k² in the next weights (separate: fewer synapses, one more pipelined step); "
                        "default: separate with --fit, else compose (README: Hardware profile)")
    h = p.add_argument_group("will it fit (an estimate; README: Hardware profile)")
    h.add_argument("--fit", metavar="PROFILE", help="print the resource estimate for a chip profile (loihi2)")
    h.add_argument("--chips", type=integer(1, 1_000_000, "a chip count"),
                   help="with --fit: refuse (one line, exit 2) when the network does not fit N chips")
    h.add_argument("--fit-json", metavar="F", help="with --fit: also write the estimate as JSON")
    h.add_argument("--fit-set", metavar="FIELD=VALUE", action="append",
                   help="with --fit: override a profile field (repeatable), e.g. synaptic_memory_per_core=196608")
    g = p.add_argument_group("SNN calibration (after conversion, on training images; README: Low latency)")
    g.add_argument("--snn-calib", metavar="METHOD", choices=calib_methods(),
                   help=f"tune per-channel integer biases / initial membranes for --target-T: {', '.join(calib_methods())}")
    g.add_argument("--target-T", type=int, help="the time window the calibration optimises (needs --snn-calib)")
    g.add_argument("--calib-samples", type=int, default=1024, help="training images to calibrate on (default 1024)")
    g.add_argument("--seed", type=SEED, default=0, help="seed of the calibration sample, 0..2^32-1 (default 0)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def calib_methods() -> tuple[str, ...]:
    from qcfs.toolchain.snn_calib import METHOD_NAMES

    return METHOD_NAMES


def check_snn_calib(args: argparse.Namespace) -> None:
    """The calibration flags, every value checked before any model is read."""
    if args.snn_calib is None:
        if args.target_T is not None:
            raise QCFSError("--target-T applies to --snn-calib only")
        return
    if args.backend not in ("intnet", "lava", "snn-onnx"):
        raise QCFSError(f"--snn-calib writes an integer network: use --backend intnet, lava or snn-onnx, "
                        f"not {args.backend}")
    if args.mode == "float":
        raise QCFSError("--snn-calib calibrates integer networks only (drop --mode float)")
    if args.target_T is None or not 1 <= args.target_T <= 1024:
        raise QCFSError(f"--snn-calib needs --target-T in 1..1024, got {args.target_T}")
    if not args.dataset:
        raise QCFSError("--snn-calib needs --dataset (training images to calibrate on)")
    if not 1 <= args.calib_samples <= 1_000_000:
        raise QCFSError(f"--calib-samples must be in 1..1000000, got {args.calib_samples}")
    if args.seed < 0:
        raise QCFSError(f"--seed must be >= 0, got {args.seed}")


def default_output(model: Path, backend: str) -> Path:
    stem = model.name
    for suffix in (".intnet.npz", ".lava.npz", ".snn.onnx", ".net.h5", ".nir", ".onnx", ".pt", ".pth"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return model.with_name(stem + SUFFIX[backend])


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.arch and args.L is None:
        raise QCFSError(f"--arch {args.arch} needs --L (the quantization steps the model was trained with; "
                        "a bare state dict does not record it)")
    args.L = 4 if args.L is None else args.L
    if args.calibrate and not args.dataset:
        raise QCFSError("--calibrate relu needs --dataset (samples to measure activations on)")
    if args.arch and not args.dataset:
        raise QCFSError(f"--arch {args.arch} needs --dataset (the authors' checkpoints carry no config) and the "
                        "--L it was trained with")
    check_snn_calib(args)
    if args.spikes_per_step > 1 and args.backend not in ("intnet", "lava", "snn-onnx"):
        raise QCFSError(f"--spikes-per-step applies to --backend intnet, lava or snn-onnx ({args.backend} has no "
                        f"graded spikes)")
    if args.spikes_per_step > 1 and args.snn_calib is not None:
        raise QCFSError("--snn-calib simulates binary spikes; it cannot be combined with --spikes-per-step > 1 yet")
    if args.opset is not None:
        if args.backend != "onnx":
            raise QCFSError(f"--opset applies to --backend onnx only (the {args.backend} file holds no ONNX graph)")
        from qcfs.exporters.opset import check_opset

        check_opset(args.opset)
    from qcfs.report.resources import fit_request

    fit = fit_request(args.fit, args.chips, args.fit_json, args.fit_set)
    if fit is not None and args.backend == "onnx":
        raise QCFSError("--fit estimates an integer SNN: use it with --backend lava (or intnet, snn-onnx, netx, nir)")
    if args.nir_profile != "qcfs" and args.backend != "nir":
        raise QCFSError(f"--nir-profile applies to --backend nir only (got --backend {args.backend})")
    if args.snn_kernels != "auto" and args.backend != "snn-onnx":
        raise QCFSError(f"--snn-kernels applies to --backend snn-onnx only (got --backend {args.backend})")
    if args.pool is not None and args.backend == "onnx":
        raise QCFSError("--pool applies to the integer SNN; --backend onnx writes the canonical ANN")
    model = safe_io.safe_model_input(args.model)
    out = plan_output(model, args)
    if args.fit_json:
        safe_io.check_output(args.fit_json, "--fit-json", inputs=[model], others=[out])
    exported = check_exported_input(model, args)
    import qcfs

    options = dict(dataset=args.dataset, arch=args.arch, calibrate=args.calibrate, data_dir=args.data_dir,
                   L=args.L, percentile=args.percentile)
    with safe_io.atomic_path(out) as tmp:  # the target is replaced only when the export succeeded
        if args.backend == "onnx":
            qcfs.export_onnx(model, tmp, opset=args.opset, **options)
        else:
            pool = args.pool or ("separate" if fit is not None and not exported else None)  # --fit: fewer synapses
            net = qcfs.convert(model, mode=args.mode, weight_bits=args.weight_bits, show_passes=args.show_passes,
                               pool=pool, **options)
            if args.snn_calib is not None:
                net = net.calibrate_on(args.dataset, target_T=args.target_T, method=args.snn_calib,
                                       data_dir=args.data_dir, samples=args.calib_samples, seed=args.seed,
                                       progress=not args.no_progress, show_report=args.show_passes)
            if args.spikes_per_step > 1:
                net = net.graded(args.spikes_per_step, scale=args.graded_scale == "m")
            if fit is not None:  # prints the estimate, writes --fit-json, refuses when it does not fit
                fit.apply(net.intnet)
            net.save(tmp, format=args.backend, kernels=args.snn_kernels, nir_profile=args.nir_profile)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def check_exported_input(model: Path, args: argparse.Namespace) -> bool:
    """True when MODEL is an exported network (read as it is, not converted). Refused before any work: a
    .lava.npz or .snn.onnx is an end product, an exported network holds no ANN for --backend onnx, and writing
    a file as its own format again is a copy unless a flag changes the network."""
    if args.arch:
        return False  # the authors' state dict; qcfs.convert refuses any other file with --arch
    from qcfs.pipeline import EXPORTED, model_kind

    kind = model_kind(model)
    if kind not in EXPORTED:
        return False
    if kind in ("lava", "snn-onnx") or args.backend == "onnx":
        raise QCFSError(f"{model}: an exported {kind} network can only be exported further with --backend "
                        f"intnet, lava, snn-onnx, netx or nir (not from a .lava.npz or .snn.onnx)")
    if args.backend == kind and args.snn_calib is None and args.spikes_per_step == 1 and args.nir_profile == "qcfs":
        raise QCFSError(f"{model}: is already a {kind} file (re-export it only with --snn-calib, "
                        f"--spikes-per-step or --nir-profile)")
    return True


def plan_output(model: Path, args: argparse.Namespace) -> Path:
    """Where to write, checked before any work: never the model itself (`qcfs-export m.onnx` with the default
    backend onnx would otherwise replace the user's file), never an input, a regular file or a new path."""
    if args.output:
        out = Path(args.output)
    else:
        out = default_output(model, args.backend)
        if safe_io.same_file(out, model):
            raise QCFSError(f"{model}: the default output for --backend {args.backend} is the input itself; "
                            f"pass -o OUT{SUFFIX[args.backend]} (outputs never overwrite inputs)")
    from qcfs.data import dataset_inputs

    inputs = [model, *(dataset_inputs(args.dataset, args.data_dir) if args.calibrate else [])]
    return safe_io.check_output(out, "-o" if args.output else "output", inputs=inputs)


if __name__ == "__main__":
    sys.exit(main())
