"""`qcfs-export MODEL --backend onnx|intnet|lava|netx|nir`: checkpoint -> ONNX -> canonical graph -> IntNet ->
Lava / lava-dl netx (.net.h5) / NIR (.nir). An exported .intnet.npz, .net.h5 or .nir converts to the others."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qcfs.cli import OneLineParser
from qcfs.errors import QCFSError, cli_entry

BACKENDS = ("onnx", "intnet", "lava", "netx", "nir")
SUFFIX = {"onnx": ".onnx", "intnet": ".intnet.npz", "lava": ".lava.npz", "netx": ".net.h5", "nir": ".nir"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-export", description=__doc__)
    p.add_argument("model", help="checkpoint (.pt from qcfs-train), ONNX, IntNet (.intnet.npz), netx (.net.h5) or NIR (.nir)")
    p.add_argument("--backend", default="onnx", choices=BACKENDS, help="what to write (default: onnx)")
    p.add_argument("-o", "--output", help="output path (default: next to MODEL with the backend's suffix)")
    p.add_argument("--mode", default="int", choices=("int", "float"), help="integer or float IF network")
    p.add_argument("--weight-bits", type=int, default=8, help="signed weight bit width (default 8)")
    p.add_argument("--opset", type=int, default=20, help="ONNX opset of the export (default 20)")
    p.add_argument("--show-passes", action="store_true", help="print the conversion pass pipeline as it runs")
    p.add_argument("--calibrate", choices=("relu",), help="convert a plain ReLU network by data calibration")
    p.add_argument("--dataset", help="dataset for --calibrate")
    p.add_argument("--data-dir", help="dataset location for --calibrate")
    p.add_argument("--L", type=int, default=4, help="quantization steps for --calibrate (default 4)")
    p.add_argument("--percentile", type=float, default=99.9, help="activation percentile for λ (default 99.9)")
    return p


def default_output(model: Path, backend: str) -> Path:
    stem = model.name
    for suffix in (".intnet.npz", ".lava.npz", ".net.h5", ".nir", ".onnx", ".pt", ".pth"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return model.with_name(stem + SUFFIX[backend])


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.weight_bits < 2 or args.weight_bits > 16:
        raise QCFSError(f"--weight-bits must be in 2..16, got {args.weight_bits}")
    if args.L < 1:
        raise QCFSError(f"--L must be a positive integer, got {args.L}")
    if args.calibrate and not args.dataset:
        raise QCFSError("--calibrate relu needs --dataset (samples to measure activations on)")
    model = Path(args.model)
    out = Path(args.output) if args.output else default_output(model, args.backend)
    from qcfs import pipeline

    written = pipeline.export(
        model,
        out,
        backend=args.backend,
        mode=args.mode,
        weight_bits=args.weight_bits,
        opset=args.opset,
        show_passes=args.show_passes,
        calibrate=args.calibrate,
        dataset=args.dataset,
        data_dir=args.data_dir,
        L=args.L,
        percentile=args.percentile,
    )
    print(f"wrote {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
