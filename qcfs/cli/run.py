"""`qcfs-run --dataset D --T 1,2,4,8`: simulate a converted QCFS network on a test set and tabulate, per T,
ANN accuracy (onnxruntime on the canonical ONNX, same samples), SNN accuracy, spikes/sample,
spikes/neuron/step and synaptic operations/sample (spikes × mean fan-out of the spiking neuron; the input is a
constant current and adds none).

MODEL may be a checkpoint (.pt from qcfs-train), an ONNX file or an IntNet (.intnet.npz; its ANN accuracy is
"n/a"). Without --model: models/<dataset>/model.pt, then ~/.cache/qcfs/<dataset>/model.pt; for digits one is
trained there on first use. --limit N takes the first N test samples in the dataset's canonical order.
JSON accuracies are fractions in [0, 1]; the table prints percent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from qcfs.data import DATASETS
from qcfs.errors import BackendError, QCFSError, cli_entry

BACKENDS = ("numpy", "lava")
NORMALIZE_HELP = (
    "input normalization when the model carries none (and overriding it when it does): 'MEAN,STD' for all "
    "channels, or per channel 'M1,M2,M3/S1,S2,S3'; default: the model's, else pixels in [0, 1] as is"
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad values as one line and exit code 2, without usage spam."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_ts(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; every T a positive integer."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            t = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"T values must be positive integers, got {part!r}") from None
        if t < 1:
            raise argparse.ArgumentTypeError(f"T values must be positive integers, got {t}")
        out.append(t)
    return sorted(set(out))


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
    p = _Parser(prog="qcfs-run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (.pt), ONNX, or IntNet (.intnet.npz); default: see above")
    p.add_argument("--dataset", required=True, choices=tuple(DATASETS))
    p.add_argument("--T", dest="Ts", type=parse_ts, default=[1, 2, 4, 8, 16, 32],
                   help="comma-separated time steps, all from one run of max(T) (default 1,2,4,8,16,32)")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--mode", choices=("int", "float"),
                   help="integer (hardware) or float IF network (default int; an IntNet file keeps its own)")
    p.add_argument("--timing", default="sync", choices=("sync", "pipelined"),
                   help="numpy backend: layer-synchronous or pipelined back-to-back stream (as Lava; slow)")
    p.add_argument("--limit", type=positive_int, help="first N test samples")
    p.add_argument("--batch", type=positive_int, default=256, help="samples per batch (default 256)")
    p.add_argument("--data-dir", help="dataset location (see README: Datasets)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--counts", help="write per-sample spike counts and logits at max(T) as .npz here")
    p.add_argument("--normalize", type=parse_normalize, help=NORMALIZE_HELP)
    p.add_argument("--timeout", type=positive_int, default=3600, help="lava backend: seconds (default 3600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# --- stages ---------------------------------------------------------------------------------------------
def load_network(model: Path, mode: str | None):  # type: ignore[no-untyped-def]
    """(IntNet, canonical ONNX or None) from any accepted model file."""
    from qcfs import pipeline
    from qcfs.intnet import load_intnet

    kind = pipeline.model_kind(model)
    if kind == "lava":
        raise QCFSError(f"{model}: a Lava file; pass the IntNet (.intnet.npz), ONNX or checkpoint it came from")
    if kind == "intnet":
        net = load_intnet(model)
        if mode is not None and mode != net.mode:
            raise QCFSError(f"{model}: is a {net.mode}-mode IntNet; --mode {mode} needs the ONNX or checkpoint")
        return net, None
    canon = pipeline.canonical_onnx(model)
    return pipeline.to_intnet(canon, mode=mode or "int"), canon


def apply_normalize(net, normalize):  # type: ignore[no-untyped-def]
    if normalize is None:
        return net
    mean, std = normalize
    c = net.input.shape[0]
    if len(mean) not in (1, c):
        raise QCFSError(f"--normalize gives {len(mean)} channel(s), the model has {c}")
    if len(mean) == 1:
        mean, std = mean * c, std * c
    return dataclasses.replace(net, input=dataclasses.replace(net.input, mean=mean, std=std))


def ann_accuracy(canon, images01: np.ndarray, labels: np.ndarray, mean, std, batch: int) -> float:  # type: ignore[no-untyped-def]
    """Top-1 accuracy of the canonical ONNX under onnxruntime on exactly the samples the SNN sees."""
    import onnxruntime as ort

    sess = ort.InferenceSession(canon.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    c = images01.shape[1]
    m = np.broadcast_to(np.asarray(mean, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    correct = 0
    for start in range(0, len(images01), batch):
        x = ((images01[start : start + batch] - m) / s).astype(np.float32)
        correct += int((np.argmax(sess.run(None, {name: x})[0], axis=1) == labels[start : start + batch]).sum())
    return correct / len(images01)


def simulate(net, images01: np.ndarray, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    progress = not args.no_progress
    if args.backend == "lava":
        try:
            from qcfs.runtime.lava.backend import simulate_lava
        except ImportError as err:
            raise BackendError(f"Lava backend unavailable ({err}); install it with scripts/setup_env.sh") from None
        return simulate_lava(net, images01, args.Ts, timeout_s=args.timeout, progress=progress)
    from qcfs.runtime.numpy_snn import simulate as simulate_numpy

    try:
        return simulate_numpy(net, images01, args.Ts, timing=args.timing, batch_size=args.batch, progress=progress)
    except ValueError as err:
        raise QCFSError(f"cannot simulate this network: {err}") from None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def format_table(rows: list[dict], ann_acc: float | None) -> str:
    head = f"{'T':>5} {'ANN acc %':>10} {'SNN acc %':>10} {'spikes/sample':>14} {'spikes/neuron/step':>19} " \
           f"{'synops/sample':>14}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['T']:>5} {_pct(ann_acc):>10} {_pct(r['accuracy']):>10} {r['spikes_per_sample']:>14.1f} "
                     f"{r['spikes_per_neuron_per_step']:>19.4f} {r['synops_per_sample']:>14.4g}")
    return "\n".join(lines)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from qcfs.data import load_split
    from qcfs.defaults import default_model
    from qcfs.runtime.metrics import net_stats, per_t_rows

    model = Path(args.model) if args.model else default_model(args.dataset)
    net, canon = load_network(model, args.mode)
    net = apply_normalize(net, args.normalize)
    images, labels = load_split(args.dataset, "test", args.data_dir)
    if tuple(images.shape[1:]) != tuple(net.input.shape):
        raise QCFSError(f"{model}: expects input {tuple(net.input.shape)}, {args.dataset} has {images.shape[1:]}")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    ann_acc = None
    if canon is not None:
        ann_acc = ann_accuracy(canon, images, labels, net.input.mean, net.input.std, args.batch)
    result = simulate(net, images, args)
    stats = net_stats(net)
    rows = per_t_rows(result, stats, labels)
    print(f"model {model}  dataset {args.dataset} ({len(labels)} test samples)  backend {args.backend}  "
          f"mode {net.mode}  timing {result.timing}  ANN MACs/sample {stats.ann_macs:.4g}")
    print(format_table(rows, ann_acc))
    try:
        write_outputs(args, model, net, ann_acc, len(labels), stats, rows, result)
    except OSError as err:
        raise QCFSError(f"cannot write results: {err}") from None
    return 0


def write_outputs(args, model, net, ann_acc, samples, stats, rows, result) -> None:  # type: ignore[no-untyped-def]
    if args.json:
        doc = {
            "model": str(model), "dataset": args.dataset, "backend": args.backend, "mode": net.mode,
            "samples": int(samples), "ann_accuracy": ann_acc, "timing": result.timing,
            "ann_macs_per_sample": stats.ann_macs, "neurons": stats.total_neurons,
            "results": [{k: r[k] for k in ("T", "accuracy", "spikes_per_sample", "spikes_per_layer",
                                           "synops_per_sample", "spikes_per_neuron_per_step")} for r in rows],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if args.counts:
        with open(args.counts, "wb") as fh:  # np.savez would append ".npz" to other suffixes
            np.savez(fh, **result.counts_arrays())


if __name__ == "__main__":
    sys.exit(main())
