"""`qcfs-export MODEL --backend onnx|intnet|lava`: checkpoint -> ONNX -> canonical graph -> IntNet -> Lava."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qcfs import safe_io
from qcfs.cli import OneLineParser
from qcfs.cli.values import L_VALUE, integer, number
from qcfs.errors import QCFSError, cli_entry

BACKENDS = ("onnx", "intnet", "lava")
SUFFIX = {"onnx": ".onnx", "intnet": ".intnet.npz", "lava": ".lava.npz"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-export", description=__doc__)
    p.add_argument("model", help="checkpoint (.pt from qcfs-train), ONNX file, or IntNet (.intnet.npz)")
    p.add_argument("--backend", default="onnx", choices=BACKENDS, help="what to write (default: onnx)")
    p.add_argument("-o", "--output", help="output path (default: next to MODEL with the backend's suffix)")
    p.add_argument("--mode", default="int", choices=("int", "float"), help="integer or float IF network")
    p.add_argument("--weight-bits", type=integer(2, 16, "a bit width"), default=8,
                   help="signed weight bit width (default 8)")
    p.add_argument("--opset", type=integer(1, 10_000, "an opset"),
                   help="--backend onnx: opset of the written file, 13..20 (default 20); refused when the graph "
                        "cannot be converted exactly")
    p.add_argument("--show-passes", action="store_true", help="print the conversion pass pipeline as it runs")
    p.add_argument("--calibrate", choices=("relu",), help="convert a plain ReLU network by data calibration")
    p.add_argument("--dataset", help="dataset for --calibrate")
    p.add_argument("--data-dir", help="dataset location for --calibrate")
    p.add_argument("--L", type=L_VALUE, default=4, help="quantization steps for --calibrate (default 4)")
    p.add_argument("--percentile", type=number(0, 100, lo_open=True), default=99.9,
                   help="activation percentile for λ (default 99.9)")
    return p


def default_output(model: Path, backend: str) -> Path:
    stem = model.name
    for suffix in (".intnet.npz", ".lava.npz", ".onnx", ".pt", ".pth"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return model.with_name(stem + SUFFIX[backend])


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.calibrate and not args.dataset:
        raise QCFSError("--calibrate relu needs --dataset (samples to measure activations on)")
    if args.opset is not None:
        if args.backend != "onnx":
            raise QCFSError(f"--opset applies to --backend onnx only (the {args.backend} file holds no ONNX graph)")
        from qcfs.exporters.opset import check_opset

        check_opset(args.opset)
    model = safe_io.safe_model_input(args.model)
    out = plan_output(model, args)
    from qcfs import pipeline

    with safe_io.atomic_path(out) as tmp:  # the target is replaced only when the export succeeded
        pipeline.export(
            model,
            tmp,
            backend=args.backend,
            mode=args.mode,
            weight_bits=args.weight_bits,
            opset=args.opset or 20,
            show_passes=args.show_passes,
            calibrate=args.calibrate,
            dataset=args.dataset,
            data_dir=args.data_dir,
            L=args.L,
            percentile=args.percentile,
        )
    print(f"wrote {out}", file=sys.stderr)
    return 0


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
