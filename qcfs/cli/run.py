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
import contextlib
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qcfs import safe_io
from qcfs.data import DATASETS
from qcfs.cli import OneLineParser
from qcfs.cli.values import MAX_TIMEOUT_S, number
from qcfs.data.subset import RULES as SUBSET_RULES
from qcfs.errors import QCFSError, cli_entry
from qcfs.evaluate import DEFAULT_SHARD, SHARDS_PER_WORKER

if TYPE_CHECKING:
    import onnx

    from qcfs.intnet import IntNet
    from qcfs.runtime.result import SimResult

BACKENDS = ("numpy", "torch", "lava", "ort", "netx")
NETX_SEMANTICS = ("qcfs", "stock")
DEVICES = ("cpu", "cuda")
RASTER_NEURONS = 16  # neurons per layer in the report's raster plot (sample 0)
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
    p.add_argument("--backend", choices=BACKENDS, help="default: ort for an .snn.onnx model, else numpy")
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
        args.backend = "ort" if (args.model or "").endswith(".snn.onnx") else "numpy"
    if args.backend == "ort" and args.timing == "pipelined":
        raise QCFSError("--backend ort is layer-synchronous only; use --timing sync or --backend numpy")
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


# --- stages ---------------------------------------------------------------------------------------------
def load_network(model: Path, mode: str | None, normalize=None):  # type: ignore[no-untyped-def]
    """(IntNet, canonical ONNX or None) from any accepted model file. `normalize` (from --normalize) is
    applied where the input scale can follow it: in the ONNX before conversion, so the 8-bit input scale is
    recomputed for the new range; an exported IntNet keeps its scale, which is refused if it would saturate."""
    from qcfs import pipeline

    kind = pipeline.model_kind(model)
    if kind in pipeline.EXPORTED:
        net = pipeline.load_exported(model, kind)
        if mode is not None and mode != net.mode:
            raise QCFSError(f"{model}: is a {net.mode}-mode IntNet; --mode {mode} needs the ONNX or checkpoint")
        return apply_normalize(net, normalize, model), None
    canon = pipeline.canonical_onnx(model)
    if normalize is not None:
        from qcfs.toolchain.renormalize import with_normalization

        canon = with_normalization(canon, *normalize)
    return pipeline.to_intnet(canon, mode=mode or "int"), canon


def apply_normalize(net, normalize, model: Path | None = None):  # type: ignore[no-untyped-def]
    """--normalize on an exported IntNet: its input scale was fixed at export; keep it only if no pixel of the
    new normalization saturates the quantized input (else refuse: re-export from the ONNX or checkpoint)."""
    if normalize is None:
        return net
    from qcfs.toolchain.renormalize import broadcast_channels, check_scale_fits

    mean, std = broadcast_channels(*normalize, net.input.shape[0])
    check_scale_fits(net.input, mean, std, str(model or "model"))
    return dataclasses.replace(net, input=dataclasses.replace(net.input, mean=mean, std=std))


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
    from qcfs.defaults import default_model
    from qcfs.data.samples import SplitSpec, data_dir_str, open_split

    check_outputs(args, args.model)  # again: the data folder may only now be known (--download's default)
    from qcfs.report.lava_json import load_lava_json

    lava_doc = load_lava_json(args.lava_json, args.dataset) if args.lava_json else None
    model = Path(args.model) if args.model else default_model(args.dataset)
    net, canon = load_network(model, args.mode, args.normalize)
    spec = SplitSpec(args.dataset, "test", data_dir_str(args.data_dir))
    source = open_split(spec)
    if tuple(source.shape) != tuple(net.input.shape):
        raise QCFSError(f"{model}: expects input {tuple(net.input.shape)}, {args.dataset} has {tuple(source.shape)}")
    if args.dataset == "imagenet":
        from qcfs.data.imagenet import check_class_count

        check_class_count(source, net.num_classes, str(model))
    from qcfs.data.subset import describe, subset_indices

    subset = describe(len(source.labels), args.limit, args.subset)
    idx = subset_indices(len(source.labels), args.limit, args.subset)
    labels = source.labels[idx]
    if args.normalize is not None:
        from qcfs.toolchain.renormalize import PINNED_SAMPLES, pinned_warning

        note = pinned_warning(net.input, source.images(idx[:PINNED_SAMPLES]))
        if note:
            print(f"qcfs-run: warning: {note}", file=sys.stderr)
    opts = sim_options(args, model, RASTER_NEURONS if args.report else 0)
    canon_bytes = canon.SerializeToString() if canon is not None else None
    with execution(args, source, len(idx)) as ex:
        check_run_budget(net, len(labels), args, workers=ex.workers, resident=ex.shard)
        ev = evaluate(ex, net, canon_bytes, source, spec, idx, opts)
        doc = summarize(args, model, net, ev.result, labels, ev.ann_accuracy(len(labels)), command_line(argv),
                        backend=ev.result.backend if args.backend == "netx" else None)
        doc["subset"] = subset
        if ev.execution:
            doc["execution"] = ev.execution
        try:
            write_outputs(args, doc, ev.result)
            if args.report:
                main_run = Run(net, ev.result, doc)
                companion = run_companion(ex, args, main_run, canon, source, spec, idx, opts)
                paths = write_run_report(args, source.images(idx[:1]), main_run, companion, lava_doc)
                print(f"report: {paths[-1]} ({len(paths)} files in {Path(args.report)})")
        except OSError as err:
            raise QCFSError(f"cannot write results: {err}") from None
    return 0


def sim_options(args: argparse.Namespace, model: Path, raster_neurons: int):  # type: ignore[no-untyped-def]
    """The backend options of this run. A model file the backend reads itself (.lava.npz, .snn.onnx, .net.h5)
    runs as exported, unless --normalize changed the input spec it was exported with."""
    from qcfs.pipeline import model_kind
    from qcfs.simulate import SimOptions

    kind = model_kind(model)
    as_is = args.normalize is None
    return SimOptions(
        backend=args.backend, Ts=tuple(args.Ts), timing=args.timing, batch=args.batch, device=args.device,
        pre_steps=args.pre_steps, netx_semantics=args.netx_semantics, timeout=args.timeout,
        progress=not args.no_progress, raster_neurons=raster_neurons,
        lava_file=str(model) if kind == "lava" and as_is else None,
        snn_onnx_file=str(model) if kind == "snn-onnx" and as_is else None,
        netx_file=str(model) if kind == "netx" and as_is else None)


@dataclasses.dataclass(frozen=True)
class Execution:
    """Where this run's shards go: a Dask client (None: this process), its worker count, and the samples per
    shard (None: an in-memory split at once), decided once for the run, its budget and its report."""

    client: Any
    workers: int
    shard: int | None


@contextlib.contextmanager
def execution(args: argparse.Namespace, source, n: int):  # type: ignore[no-untyped-def]
    """A Dask client for --workers/--scheduler, else none (this process; Dask is not even imported)."""
    if not (args.workers or args.scheduler):
        from qcfs.data.samples import ArraySource

        lazy = not isinstance(source, ArraySource)
        yield Execution(None, 1, args.shard_size or (DEFAULT_SHARD if lazy else None))
        return
    from qcfs.distributed import connect, worker_count
    from qcfs.evaluate import cluster_shard_size

    with connect(args.workers, args.scheduler) as client:
        workers = worker_count(client)
        yield Execution(client, workers, args.shard_size or cluster_shard_size(n, workers))


def evaluate(ex: Execution, net: IntNet, canon_bytes: bytes | None, source, spec,  # type: ignore[no-untyped-def]
             idx: np.ndarray, opts):  # -> qcfs.evaluate.Evaluation
    """The SNN (and the ANN, when there is one) on the samples `idx`: here, or sharded over Dask."""
    if ex.client is None:
        from qcfs.evaluate import evaluate_local

        return evaluate_local(net, canon_bytes, source, idx, opts, ex.shard)
    from qcfs.distributed import evaluate_on_dask

    return evaluate_on_dask(ex.client, net, canon_bytes, spec, idx, opts, ex.shard)


def check_run_budget(net: IntNet, n: int, args: argparse.Namespace, workers: int = 1,
                     resident: int | None = None) -> None:
    """Refuse (one line) a run that surely cannot finish in --max-hours or fit in memory; say so when long.
    With W Dask workers the time is that of n/W samples (perfect scaling: the estimate stays optimistic)."""
    from qcfs.budget import check_budget, estimate

    backend = args.backend if args.backend != "torch" else f"torch-{args.device or 'cpu'}"
    est = estimate(net, n, args.Ts, args.batch, backend, raster_neurons=RASTER_NEURONS if args.report else 0,
                   resident=resident)
    if workers > 1:
        est = dataclasses.replace(est, seconds=est.seconds / workers)
    what = f"--T {max(args.Ts)} on {n} samples with --batch {args.batch} ({args.backend}"
    what += f", {workers} workers)" if workers > 1 else ")"
    check_budget(est, what, args.max_hours)
    if est.seconds > 600:
        print(f"qcfs-run: {what} will take {est.describe()}", file=sys.stderr)


def summarize(args: argparse.Namespace, model: Path, net: IntNet, result: SimResult, labels: np.ndarray,
              ann_acc: float | None, command: str, backend: str | None = None) -> dict[str, Any]:
    """Print the header and table of one simulation and return its `--json` document."""
    from qcfs.runtime.metrics import net_stats, per_t_rows

    stats = net_stats(net)
    rows = per_t_rows(result, stats, labels)
    backend = backend or args.backend
    print(f"model {model}  dataset {args.dataset} ({len(labels)} test samples)  backend {backend}  "
          f"mode {net.mode}  timing {result.timing}  ANN MACs/sample {stats.ann_macs:.4g}")
    print(format_table(rows, ann_acc))
    cal_T = (net.metadata.get("snn_calibration") or {}).get("target_T")
    if isinstance(cal_T, int) and any(t != cal_T for t in result.Ts):
        print(f"qcfs-run: note: this network was calibrated for T = {cal_T}; rows at other T are not calibrated "
              f"for their window (export with --target-T T for the T you deploy)", file=sys.stderr)
    return {
        "command": command, "model": str(model), "dataset": args.dataset, "backend": backend,
        "mode": net.mode, "samples": int(len(labels)), "ann_accuracy": ann_acc, "timing": result.timing,
        "ann_macs_per_sample": stats.ann_macs, "neurons": stats.total_neurons,
        "snn_calibration": calibration_provenance(net),
        "max_spikes_per_step": int(net.max_spikes_per_step),
        "results": [{k: r[k] for k in ("T", "pre_steps", "latency_steps", "accuracy", "spikes_per_sample",
                                       "spikes_per_layer", "synops_per_sample", "spikes_per_neuron_per_step",
                                       "max_spikes_per_step", "spike_values_per_sample", "payload_bits_per_sample",
                                       "pre_spikes_per_sample", "pre_spikes_per_layer")}
                    for r in rows],
    }


def calibration_provenance(net: IntNet) -> dict[str, Any] | None:
    """What `qcfs-export --snn-calib` recorded (method, target T, samples, seed, data), without the
    per-layer error table; None for an uncalibrated network."""
    meta = net.metadata.get("snn_calibration")
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if k != "rate_error"}


def write_outputs(args: argparse.Namespace, doc: dict[str, Any], result: SimResult) -> None:
    if args.json:
        safe_io.write_text(args.json, json.dumps(doc, indent=2) + "\n")
    if args.counts:
        with safe_io.atomic_path(args.counts) as tmp, open(tmp, "wb") as fh:  # np.savez would add ".npz"
            np.savez(fh, **result.counts_arrays())


# --- report ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One simulated network with its results, as the report needs them."""

    net: IntNet
    result: SimResult
    doc: dict[str, Any]


def run_companion(ex: Execution, args: argparse.Namespace, first: Run, canon: onnx.ModelProto | None, source,  # type: ignore[no-untyped-def]
                  spec, idx: np.ndarray, opts) -> Run | None:
    """The other mode (float for int, int for float) of the same canonical ONNX on the same samples and T,
    on the NumPy runtime (sharded like the main run), so the report can put ANN, float SNN and integer SNN
    side by side. An IntNet file holds one mode only: None."""
    if canon is None:
        return None
    from qcfs import pipeline

    other = pipeline.to_intnet(canon, mode="float" if first.net.mode == "int" else "int")  # already renormalized
    timing = args.timing if args.backend == "numpy" else "sync"
    print(f"report: also simulating the {other.mode}-mode network (numpy, {timing})")
    numpy_opts = dataclasses.replace(opts, backend="numpy", timing=timing, raster_neurons=RASTER_NEURONS,
                                     lava_file=None, snn_onnx_file=None, netx_file=None)
    ev = evaluate(ex, other, None, source, spec, idx, numpy_opts)
    doc = summarize(args, Path(first.doc["model"]), other, ev.result, source.labels[idx],
                    first.doc["ann_accuracy"], first.doc["command"], backend="numpy")
    return Run(other, ev.result, doc)


def report_raster(run: Run, images: np.ndarray, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Raster of sample 0 from the NumPy runtime: reuse the run's own when numpy made it, else simulate
    that one sample (torch and Lava record no raster)."""
    if run.result.raster:
        return dict(run.result.raster)
    from qcfs.simulate import simulate_numpy

    one = simulate_numpy(run.net, images[:1], [max(args.Ts)], "sync", 1, RASTER_NEURONS, False, args.pre_steps)
    return dict(one.raster)


def write_run_report(args: argparse.Namespace, images: np.ndarray, main: Run, companion: Run | None,
                     lava_doc: dict[str, Any] | None) -> list[Path]:
    """The report's "snn" run is the integer network (the hardware one: spikes, energy, raster) and its
    "float" run the float network, whichever of them --mode asked for; an IntNet file has only its own."""
    runs = {r.net.mode: r for r in (main, companion) if r is not None}
    primary = runs.get("int", main)
    secondary = runs.get("float") if primary.net.mode == "int" else None
    from qcfs.report.writer import write_report

    return write_report(args.report, run_json=primary.doc, float_json=secondary.doc if secondary else None,
                        lava_json=lava_doc, net=primary.net, raster=report_raster(primary, images, args))


if __name__ == "__main__":
    sys.exit(main())
