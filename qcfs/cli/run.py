"""`qcfs-run --dataset D --T 1,2,4,8`: simulate a converted QCFS network on a test set and tabulate, per T,
ANN accuracy (onnxruntime on the canonical ONNX, same samples), SNN accuracy, spikes/sample,
spikes/neuron/step and synaptic operations/sample (spikes × mean fan-out of the spiking neuron; the input is a
constant current and adds none).

MODEL may be a checkpoint (.pt from qcfs-train), an ONNX file or an IntNet (.intnet.npz; its ANN accuracy is
"n/a"). Without --model: models/<dataset>/model.onnx (else model.pt), then the same names in
~/.cache/qcfs/<dataset>/; for digits one is trained there on first use. --limit N takes N test samples spread
evenly over the whole test set (indices floor(k(n-1)/(N-1) + 1/2), k = 0..N-1: deterministic, and fair to
class-sorted sets such as ImageFolder copies); --subset prefix takes the first N instead. --json records the
rule and the indices. JSON accuracies are fractions in [0, 1]; the table prints percent.

Outputs (--json, --counts, --report) are checked before any work: never an input file, only regular files or
new paths in existing writable folders; each is written to a temporary file and renamed on success. A run
estimated to need more than --max-hours (or more memory than the machine has) is refused up front.

Backends: numpy (reference, both timings), ort (onnxruntime on the exported integer SNN graph, layer-
synchronous, bit-identical to numpy; the default for an .snn.onnx model), torch (layer-synchronous,
--device cpu|cuda; bit-identical counts to numpy), lava (fixed-point simulator, pipelined), netx (the model as a
lava-dl .net.h5 through netx's loader in Lava; --netx-semantics qcfs = exact, stock = netx's own CUBA/LIF
neurons; README "Formats"). --report DIR writes report.md, report.json and PNG figures; for an ONNX or
checkpoint it also simulates the other mode (NumPy, same samples and T) so the accuracy plot shows the ANN, the
float SNN and the integer SNN; --lava-json adds the points of an earlier `qcfs-run --backend lava --json FILE`.

--workers N / --scheduler ADDRESS shard the samples over a Dask cluster (a new local one of N processes, or a
running one); the merged results equal a single-process run (README: Running on a cluster).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import qcfs
from qcfs import safe_io
from qcfs.cli import OneLineParser
from qcfs.cli.values import MAX_TIMEOUT_S, number
from qcfs.data import DATASETS
from qcfs.data.subset import RULES as SUBSET_RULES
from qcfs.errors import QCFSError, cli_entry
from qcfs.evaluate import DEFAULT_SHARD, SHARDS_PER_WORKER
from qcfs.report.run_report import RASTER_NEURONS

if TYPE_CHECKING:
    import onnx

    from qcfs.data.eval_split import EvalSplit
    from qcfs.evaluate import Execution
    from qcfs.intnet import IntNet
    from qcfs.report.run_report import Run
    from qcfs.runtime.result import SimResult
    from qcfs.simulate import SimOptions

BACKENDS = ("numpy", "torch", "lava", "ort", "fused", "netx")
NETX_SEMANTICS = ("qcfs", "stock")
DEVICES = ("cpu", "cuda")
NORMALIZE_HELP = (
    "input normalization when the model carries none (and overriding it when it does): 'MEAN,STD' for all "
    "channels, or per channel 'M1,M2,M3/S1,S2,S3'; default: the model's, else pixels in [0, 1] as is"
)


MAX_T = 10**9  # time steps: far beyond any run that finishes (the budget refuses long ones), yet every count
# and step index stays an exact float64 and int64 (a 400-digit T overflowed float conversions)


def parse_ts(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; every T an integer in 1..MAX_T."""
    try:
        ts = sorted({positive_int(part.strip()) for part in text.split(",")})
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"T values must be positive integers, got {text!r}") from None
    if ts[-1] > MAX_T:
        digits = str(ts[-1])
        shown = digits if len(digits) <= 15 else f"a {len(digits)}-digit number"
        raise argparse.ArgumentTypeError(f"T values must be at most {MAX_T:,}, got {shown}")
    return ts


def worker_count_arg(text: str) -> int:
    """--workers N: N local processes; more than MAX_WORKERS_PER_CPU per CPU only thrashes (an existing
    cluster of any size: --scheduler)."""
    n = positive_int(text)
    cap = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if n > cap:
        raise argparse.ArgumentTypeError(f"--workers {n} would start {n} processes on this machine's "
                                         f"{os.cpu_count() or 1} CPUs; use at most {cap} (a larger cluster: "
                                         "--scheduler ADDRESS)")
    return n


MAX_WORKERS_PER_CPU = 4


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """'0.5,0.25' or '0.49,0.48,0.45/0.25,0.24,0.26' -> (means, stds); stds must be positive."""
    try:
        if "/" in text:
            m_s, s_s = text.split("/")
            mean = tuple(float(v) for v in m_s.split(","))
            std = tuple(float(v) for v in s_s.split(","))
        else:
            m, s = text.split(",")
            mean, std = (float(m),), (float(s),)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MEAN,STD or M1,M2,../S1,S2,.., got {text!r}") from None
    if len(mean) != len(std) or not all(s > 0 for s in std) or not all(np.isfinite(mean + std)):
        raise argparse.ArgumentTypeError(f"--normalize needs as many means as stds, stds > 0; got {text!r}")
    return mean, std


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (.pt), ONNX, IntNet (.intnet.npz), netx (.net.h5) or NIR (.nir); "
                                   "default: see above")
    p.add_argument("--dataset", required=True, choices=tuple(DATASETS))
    p.add_argument("--T", dest="Ts", type=parse_ts, default=[1, 2, 4, 8, 16, 32],
                   help="comma-separated time steps, all from one run of max(T) (default 1,2,4,8,16,32)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="default: ort for an .snn.onnx model; else fused where it runs the network (same integers "
                        "as numpy, faster) and no numpy-only option is set; else numpy")
    p.add_argument("--mode", choices=("int", "float"),
                   help="integer (hardware) or float IF network (default int; an IntNet file keeps its own)")
    p.add_argument("--netx-semantics", choices=NETX_SEMANTICS,
                   help="backend netx: qcfs (default; our IF via a netx Network subclass, exact) or stock (netx "
                        "unmodified: CUBA/LIF, hard reset)")
    p.add_argument("--timing", default="sync", choices=("sync", "pipelined"),
                   help="numpy backend: layer-synchronous or pipelined back-to-back stream (as Lava; slow)")
    p.add_argument("--device", choices=DEVICES, help="torch backend: where to simulate (default cpu)")
    p.add_argument("--limit", type=positive_int,
                   help="N test samples spread evenly over the test set (see --subset)")
    p.add_argument("--subset", choices=SUBSET_RULES, default="spread",
                   help="with --limit: 'spread' (default, evenly spaced indices) or 'prefix' (the first N)")
    p.add_argument("--batch", type=positive_int, default=256, help="samples per batch (default 256)")
    p.add_argument("--data-dir", help="dataset location (see README: Datasets)")
    p.add_argument("--download", action="store_true", help="fetch the dataset from its official source into "
                   "--data-dir (default ~/.cache/qcfs/<dataset>) if missing, checksum-verified (README: Datasets)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--counts", help="write per-sample spike counts and logits at max(T) as .npz here")
    p.add_argument("--report", metavar="DIR", help="write report.md, report.json and PNG figures into DIR")
    p.add_argument("--lava-json", metavar="FILE",
                   help="with --report: results of an earlier `qcfs-run --backend lava --json FILE` to plot")
    p.add_argument("--normalize", type=parse_normalize, help=NORMALIZE_HELP)
    p.add_argument("--pre-steps", type=int, default=0, metavar="RHO",
                   help="two-phase inference: run RHO steps, correct each neuron's offset spikes, then count T "
                        "steps (numpy/torch, sync timing; latency reported as RHO + T + depth)")
    p.add_argument("--timeout", type=number(0, MAX_TIMEOUT_S, lo_open=True), default=3600,
                   help="lava backend: seconds (default 3600)")
    p.add_argument("--max-hours", type=number(0, 24 * 365, lo_open=True), default=24.0,
                   help="refuse runs estimated (optimistically) to take longer (default 24)")
    p.add_argument("--workers", type=worker_count_arg, metavar="N",
                   help="shard the samples over a new local Dask cluster of N worker processes (README: "
                        "Running on a cluster)")
    p.add_argument("--scheduler", metavar="ADDRESS|FILE",
                   help="shard the samples over an existing Dask cluster: its address (tcp://head:8786) or its "
                        "scheduler file (dask scheduler --scheduler-file, dask-mpi); its workers must see --model "
                        "and --data-dir at the same paths")
    p.add_argument("--shard-size", type=positive_int, metavar="K",
                   help=f"samples per shard (default: Dask {SHARDS_PER_WORKER} shards per worker, at most "
                        f"{DEFAULT_SHARD}; a lazily read split such as imagenet: {DEFAULT_SHARD})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Option combinations argparse cannot express; fail before any model or data is loaded."""
    if args.backend is None:
        args.backend = default_backend(args)
    if args.backend in ("ort", "fused") and args.timing == "pipelined":
        raise QCFSError(f"--backend {args.backend} is layer-synchronous only; use --timing sync or --backend numpy")
    if args.backend == "torch" and args.timing == "pipelined":
        raise QCFSError("--backend torch is layer-synchronous only; use --timing sync or --backend numpy")
    if args.device is not None and args.backend != "torch":
        raise QCFSError(f"--device applies to --backend torch only (got --backend {args.backend})")
    if args.backend == "torch":
        from qcfs.simulate import check_torch_device

        check_torch_device(args.device)
    if args.workers and args.scheduler:
        raise QCFSError("--workers starts a local Dask cluster, --scheduler uses an existing one: pass only one")
    if args.shard_size and not (args.workers or args.scheduler or args.dataset == "imagenet"):
        raise QCFSError("--shard-size applies to sharded runs: pass --workers N or --scheduler ADDRESS too")
    if not 0 <= args.pre_steps <= 1024:
        raise QCFSError(f"--pre-steps must be in 0..1024, got {args.pre_steps}")
    if args.pre_steps and (args.backend not in ("numpy", "torch") or args.timing == "pipelined"):
        raise QCFSError(f"--pre-steps (two-phase inference) runs on --backend numpy or torch with --timing sync; "
                        f"--backend {args.backend} has no phase schedule (Lava's IF process, the SNN ONNX graph)")
    if args.netx_semantics is not None and args.backend != "netx":
        raise QCFSError(f"--netx-semantics applies to --backend netx only (got --backend {args.backend})")
    if args.lava_json and not args.report:
        raise QCFSError("--lava-json only adds points to a report; pass --report DIR too")
    if args.subset != "spread" and args.limit is None:
        raise QCFSError("--subset chooses which samples --limit N takes; pass --limit too")


def default_backend(args: argparse.Namespace) -> str:
    """The backend when --backend is not given: ort for an .snn.onnx file; the NumPy reference where an option
    only it (or another backend) serves is set (pipelined timing, --pre-steps, --report's raster, --device,
    --netx-semantics); else "auto", settled once the network is loaded (qcfs.simulate.fused_or_numpy)."""
    if (args.model or "").endswith(".snn.onnx"):
        return "ort"
    if args.timing == "pipelined" or args.pre_steps or args.report or args.device is not None \
            or args.netx_semantics is not None:
        return "numpy"
    return "auto"


def check_outputs(args: argparse.Namespace, model: str | Path | None) -> None:
    """Every output path, before any model or data is loaded: not an input, not another output, a regular file
    or a new path in a writable folder (qcfs.safe_io)."""
    from qcfs.data import dataset_inputs
    from qcfs.report.writer import REPORT_FILES

    inputs = [model, args.lava_json, *dataset_inputs(args.dataset, args.data_dir)]
    named = [("--json", args.json), ("--counts", args.counts)]
    outs = [path for _, path in named if path]
    for i, (flag, path) in enumerate(named):
        if path:
            safe_io.check_output(path, flag, inputs=inputs, others=[p for j, (_, p) in enumerate(named) if j != i])
    if args.report:
        safe_io.check_output_dir(args.report, "--report", REPORT_FILES, inputs=[*inputs, *outs])


def command_line(argv: list[str] | None) -> str:
    """The invocation as a copy-pastable shell command (for report.json / --json provenance)."""
    return shlex.join(["qcfs-run", *(sys.argv[1:] if argv is None else argv)])


# --- printing -----------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def format_table(rows: list[dict], ann_acc: float | None) -> str:
    head = f"{'T':>5} {'latency':>8} {'ANN acc %':>10} {'SNN acc %':>10} {'spikes/sample':>14} " \
           f"{'spikes/neuron/step':>19} {'synops/sample':>14} {'m':>3} {'payload bits':>13}"
    lines = [head]
    for r in rows:  # m and payload bits last: the columns before keep their positions
        lines.append(f"{r['T']:>5} {r['latency_steps']:>8} {_pct(ann_acc):>10} {_pct(r['accuracy']):>10} "
                     f"{r['spikes_per_sample']:>14.1f} {r['spikes_per_neuron_per_step']:>19.4f} "
                     f"{r['synops_per_sample']:>14.4g} {r.get('max_spikes_per_step', 1):>3} "
                     f"{r.get('payload_bits_per_sample', 0.0):>13.4g}")
    return "\n".join(lines)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    check_outputs(args, args.model)  # before a download, so a bad output path costs no transfer
    from qcfs.data.download import requested_data_dir

    args.data_dir = requested_data_dir(args.dataset, args.data_dir, args.download, progress=not args.no_progress)
    check_outputs(args, args.model)  # again: the data folder may only now be known (--download's default)
    from qcfs.data.eval_split import open_eval_split
    from qcfs.defaults import default_model
    from qcfs.evaluate import evaluate, execution
    from qcfs.report.lava_json import load_lava_json
    from qcfs.report.run_report import Run
    from qcfs.run_record import write_outputs

    lava_doc = load_lava_json(args.lava_json, args.dataset) if args.lava_json else None
    model = Path(args.model) if args.model else default_model(args.dataset)
    network = qcfs.load(model, mode=args.mode, normalize=args.normalize)
    net, canon = network.intnet, network.canonical_onnx
    if args.backend == "auto":
        from qcfs.simulate import fused_or_numpy

        args.backend = fused_or_numpy(net)
    split = open_eval_split(args.dataset, args.data_dir, input_shape=tuple(net.input.shape),
                            num_classes=net.num_classes, model=str(model), limit=args.limit, rule=args.subset)
    if args.normalize is not None:
        from qcfs.toolchain.renormalize import PINNED_SAMPLES, pinned_warning

        note = pinned_warning(net.input, split.source.images(split.indices[:PINNED_SAMPLES]))
        if note:
            print(f"qcfs-run: warning: {note}", file=sys.stderr)
    opts = sim_options(args, model)
    canon_bytes = canon.SerializeToString() if canon is not None else None
    n = len(split.indices)
    with execution(split.source, n, workers=args.workers, scheduler=args.scheduler,
                   shard_size=args.shard_size) as ex:
        check_run_budget(net, n, args, workers=ex.workers, resident=ex.shard)
        ev = evaluate(ex, net, canon_bytes, split.source, split.spec, split.indices, opts)
        doc = summarize(args, model, net, ev.result, split.labels, ev.ann_accuracy(n), command_line(argv),
                        backend=ev.result.backend if args.backend == "netx" else None)
        doc["subset"] = split.subset
        if ev.execution:
            doc["execution"] = ev.execution
        try:
            write_outputs(doc, ev.result, json_path=args.json, counts_path=args.counts)
            if args.report:
                paths = report(args, ex, split, Run(net, ev.result, doc), canon, opts, lava_doc)
                print(f"report: {paths[-1]} ({len(paths)} files in {Path(args.report)})")
        except OSError as err:
            raise QCFSError(f"cannot write results: {err}") from None
    return 0


def sim_options(args: argparse.Namespace, model: Path) -> SimOptions:
    """The backend options of this run. A model file the backend reads itself (.lava.npz, .snn.onnx, .net.h5)
    runs as exported, unless --normalize changed the input spec it was exported with."""
    from qcfs.simulate import SimOptions, model_file_options

    files = model_file_options(model) if args.normalize is None else {}
    return SimOptions(
        backend=args.backend, Ts=tuple(args.Ts), timing=args.timing, batch=args.batch, device=args.device,
        pre_steps=args.pre_steps, netx_semantics=args.netx_semantics, timeout=args.timeout,
        progress=not args.no_progress, raster_neurons=RASTER_NEURONS if args.report else 0, **files)


def check_run_budget(net: IntNet, n: int, args: argparse.Namespace, workers: int = 1,
                     resident: int | None = None) -> None:
    """Refuse (one line, qcfs.budget) a run that surely cannot finish in --max-hours or fit in memory; say so
    when it will be long."""
    from qcfs.budget import check_run

    notice = check_run(net, n, args.Ts, args.batch, args.backend, device=args.device,
                       raster_neurons=RASTER_NEURONS if args.report else 0, workers=workers, resident=resident,
                       max_hours=args.max_hours)
    if notice:
        print(f"qcfs-run: {notice}", file=sys.stderr)


def summarize(args: argparse.Namespace, model: Path, net: IntNet, result: SimResult, labels: np.ndarray,
              ann_acc: float | None, command: str, backend: str | None = None) -> dict[str, Any]:
    """Print the header and table of one simulation and return its `--json` document (qcfs.run_record)."""
    from qcfs.run_record import calibration_note, run_document, run_rows

    rows = run_rows(net, result, labels)
    backend = backend or args.backend
    print(f"model {model}  dataset {args.dataset} ({len(labels)} test samples)  backend {backend}  "
          f"mode {net.mode}  timing {result.timing}  ANN MACs/sample {rows.stats.ann_macs:.4g}")
    print(format_table(rows.rows, ann_acc))
    note = calibration_note(net, result.Ts)
    if note:
        print(f"qcfs-run: note: {note}", file=sys.stderr)
    return run_document(command=command, model=model, dataset=args.dataset, backend=backend, net=net,
                        result=result, labels=labels, ann_accuracy=ann_acc, rows=rows)


def report(args: argparse.Namespace, ex: Execution, split: EvalSplit, main_run: Run,
           canon: onnx.ModelProto | None, opts: SimOptions, lava_doc: dict[str, Any] | None) -> list[Path]:
    """--report DIR (qcfs.report.run_report): for an ONNX or checkpoint model the other mode is simulated too
    (NumPy, same samples and T, sharded like the main run) and tabulated like it."""
    from qcfs.evaluate import evaluate
    from qcfs.report.run_report import Run, companion_network, companion_options, write_run_report

    companion = None
    other = companion_network(canon, main_run.net.mode)
    if other is not None:
        numpy_opts = companion_options(opts)
        print(f"report: also simulating the {other.mode}-mode network (numpy, {numpy_opts.timing})")
        ev = evaluate(ex, other, None, split.source, split.spec, split.indices, numpy_opts)
        doc = summarize(args, Path(main_run.doc["model"]), other, ev.result, split.labels,
                        main_run.doc["ann_accuracy"], main_run.doc["command"], backend="numpy")
        companion = Run(other, ev.result, doc)
    return write_run_report(args.report, split.source.images(split.indices[:1]), main_run, companion, lava_doc,
                            args.Ts, args.pre_steps)


if __name__ == "__main__":
    sys.exit(main())
