"""Low-latency benchmark: accuracy, spikes and latency of every calibration method at every T, next to the
uncalibrated network and two-phase inference, on one model (one run, one JSON, one Markdown table, one plot).

    python benchmarks/low_latency.py --dataset digits --model models/digits/model.onnx --out benchmarks/results/ll_digits

Test samples are spread evenly over the whole test split (ImageFolder copies are sorted by class); calibration
uses `--calib-samples` seeded training images only (qcfs.toolchain.snn_calib.sampling). `auto` is
`--snn-calib auto` itself (calibrate_auto: every candidate calibrated for the target T on 3/4 of the calibration
images, the best on the held-out quarter kept), so its row is what a user asking for that T gets.
`--spikes-per-step 2,4` adds graded-spike rows (qcfs.toolchain.graded: currents × m, m spikes per message).
Latency = pre-steps + T + depth(readout) hardware steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_table import machine  # noqa: E402  (benchmarks/ is a folder of scripts)
from qcfs import pipeline
from qcfs.evaluate import ann_correct
from qcfs.data import load_split
from qcfs.intnet import IntNet
from qcfs.runtime.metrics import net_stats, per_t_rows
from qcfs.toolchain.graded import make_graded
from qcfs.toolchain.snn_calib import calibrate, calibrate_auto

ROW_KEYS = ("T", "pre_steps", "latency_steps", "accuracy", "spikes_per_sample", "max_spikes_per_step",
            "spike_values_per_sample", "payload_bits_per_sample", "synops_per_sample")
from qcfs.toolchain.snn_calib.sampling import calibration_images01


def simulate(net: IntNet, x: np.ndarray, Ts: list[int], backend: str, pre_steps: int = 0):  # type: ignore[no-untyped-def]
    if backend == "torch":
        from qcfs.runtime.torch_snn import simulate_torch

        return simulate_torch(net, x, Ts, progress=False, pre_steps=pre_steps)
    if backend == "ort" and not pre_steps:  # the SNN-as-ONNX graph (bit-identical to NumPy, tested)
        from qcfs.runtime.ort_snn import simulate_ort

        return simulate_ort(net, x, Ts, progress=False)
    from qcfs.runtime.numpy_snn import simulate as simulate_np

    return simulate_np(net, x, Ts, progress=False, pre_steps=pre_steps)


def rows_of(net: IntNet, x: np.ndarray, y: np.ndarray, Ts: list[int], backend: str, pre_steps: int = 0) -> list[dict]:
    res = simulate(net, x, Ts, backend, pre_steps)
    return [{k: r[k] for k in ROW_KEYS} for r in per_t_rows(res, net_stats(net), y)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir")
    ap.add_argument("--test-samples", type=int, default=0, help="evenly spaced test samples (0: all)")
    ap.add_argument("--calib-samples", type=int, default=1024)
    ap.add_argument("--targets", default="1,2,4", help="target T of the calibration")
    ap.add_argument("--methods", default="bias,potential,bias-snn,potential-snn,neuron,neuron-snn,auto",
                    help="calibration methods per target T; auto = --snn-calib auto (held-out selection)")
    ap.add_argument("--spikes-per-step", default="", help="graded rows: comma-separated m (uncalibrated net)")
    ap.add_argument("--eval-T", default="1,2,4,8")
    ap.add_argument("--calib-eval-T", help="T evaluated for calibrated networks (default: --eval-T); a shorter "
                    "list keeps whole-test-set runs affordable")
    ap.add_argument("--pre-steps", default="", help="two-phase rows: comma-separated RHO:T pairs, e.g. 4:4,2:6")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "torch", "ort"),
                    help="runtime for the evaluations (all exact; ort falls back to numpy for two-phase rows)")
    ap.add_argument("--out", required=True, help="output prefix (writes PREFIX.json, PREFIX.md, PREFIX.png)")
    args = ap.parse_args()
    t_start = time.time()
    canon = pipeline.canonical_onnx(Path(args.model))
    net = pipeline.to_intnet(canon)
    x, y = load_split(args.dataset, "test", args.data_dir)
    if args.test_samples and args.test_samples < len(y):
        idx = np.unique(np.linspace(0, len(y) - 1, args.test_samples).round().astype(np.int64))
        x, y = x[idx], y[idx]
    eval_T = [int(t) for t in args.eval_T.split(",")]
    calib_T = [int(t) for t in args.calib_eval_T.split(",")] if args.calib_eval_T else eval_T
    xc, yc, _ = calibration_images01(args.dataset, args.data_dir, tuple(net.input.shape), args.calib_samples, 0)
    doc: dict = {
        "command": "python benchmarks/low_latency.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dataset": args.dataset, "model": args.model, "test_samples": int(len(y)),
        "calib_samples": int(len(yc)), "backend": args.backend,
        "ann_accuracy": ann_correct(canon.SerializeToString(), x, y, net.input.mean, net.input.std, 256) / len(y),
        "runs": [],
    }
    print(f"ANN {100 * doc['ann_accuracy']:.2f} % on {len(y)} test samples", flush=True)
    doc["runs"].append({"method": "none", "target_T": None, "rows": rows_of(net, x, y, eval_T, args.backend)})
    print("none", [round(100 * r["accuracy"], 2) for r in doc["runs"][-1]["rows"]], flush=True)
    for m in (int(v) for v in filter(None, args.spikes_per_step.split(","))):
        doc["runs"].append({"method": f"graded m={m}", "target_T": None,
                            "rows": rows_of(make_graded(net, m), x, y, eval_T, args.backend)})
        print(doc["runs"][-1]["method"], [round(100 * r["accuracy"], 2) for r in doc["runs"][-1]["rows"]],
              flush=True)
    for pair in filter(None, args.pre_steps.split(",")):
        rho, t = (int(v) for v in pair.split(":"))
        doc["runs"].append({"method": f"two-phase ρ={rho}", "target_T": None,
                            "rows": rows_of(net, x, y, [t], args.backend, rho)})
        print(doc["runs"][-1]["method"], doc["runs"][-1]["rows"], flush=True)
    methods = args.methods.split(",")
    for T in (int(t) for t in args.targets.split(",")):
        runs = {}
        for m in methods:
            t0 = time.perf_counter()
            if m == "auto":
                cal, report = calibrate_auto(net, xc, yc, T=T, progress=False)
            else:
                cal, report = calibrate(net, xc, T=T, method=m, progress=False, labels=yc)
            secs = time.perf_counter() - t0
            label = report.method if m == "auto" else m
            run = {"method": label, "target_T": T, "calib_seconds": secs, "train_accuracy": report.train_accuracy,
                   "rows": rows_of(cal, x, y, calib_T, args.backend), "net": cal}
            runs[m] = run
            print(m, T, f"{secs:.0f}s", [round(100 * r["accuracy"], 2) for r in run["rows"]], flush=True)
            for pair in filter(None, args.pre_steps.split(",")):
                rho, t = (int(v) for v in pair.split(":"))
                if t == T:
                    doc["runs"].append({"method": f"{m} + two-phase ρ={rho}", "target_T": T,
                                        "rows": rows_of(cal, x, y, [t], args.backend, rho)})
                    print(doc["runs"][-1]["method"], doc["runs"][-1]["rows"], flush=True)
        for run in runs.values():
            run.pop("net", None)
            doc["runs"].append(run)
    doc["seconds"] = time.time() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(doc, eval_T) + "\n")
    plot(doc, out.with_suffix(".png"))
    print(markdown(doc, eval_T))


def markdown(doc: dict, eval_T: list[int]) -> str:
    head = "| method | calibrated for T | m | " + " | ".join(f"T={t}" for t in eval_T) + \
        " | spikes/sample at target T | payload bits/sample | calibration (s) |"
    lines = [f"{doc['dataset']}, `{doc['model']}`, {doc['test_samples']} test samples (evenly spaced), ANN "
             f"{100 * doc['ann_accuracy']:.2f} %; integer SNN accuracy in % ({doc['backend']} runtime); "
             f"`{doc['command']}`, {doc['date']}", "", head, "|" + "---|" * (len(eval_T) + 6)]
    for run in doc["runs"]:
        rows = {r["T"]: r for r in run["rows"]}
        if any(r["pre_steps"] for r in run["rows"]):
            (r,) = run["rows"]
            cells = [f"ρ + T = {r['pre_steps']} + {r['T']}: **{100 * r['accuracy']:.2f}**" if t == r["T"] else "—"
                     for t in eval_T]
        else:
            cells = [f"{100 * rows[t]['accuracy']:.2f}" if t in rows else "—" for t in eval_T]
        tgt = run.get("target_T")
        at = rows.get(tgt, run["rows"][0]) if tgt else run["rows"][0]
        secs = f"{run['calib_seconds']:.0f}" if "calib_seconds" in run else "—"
        lines.append(f"| {run['method']} | {tgt or '—'} | {at.get('max_spikes_per_step', 1)} | " + " | ".join(cells)
                     + f" | {at['spikes_per_sample']:.0f} | {at.get('payload_bits_per_sample', 0):.0f} | {secs} |")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in doc["runs"]:
        if any(r["pre_steps"] for r in run["rows"]) or run["method"].startswith("auto"):
            continue
        lat = [r["latency_steps"] for r in run["rows"]]
        acc = [100 * r["accuracy"] for r in run["rows"]]
        label = run["method"] if run["target_T"] is None else f"{run['method']} (T*={run['target_T']})"
        ax.plot(lat, acc, marker="o", label=label, lw=2.5 if run["method"] == "none" else 1.2)
    ax.axhline(100 * doc["ann_accuracy"], color="k", ls="--", lw=1, label="ANN")
    ax.set_xlabel("latency (hardware steps: T + depth)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{doc['dataset']}: calibrated integer SNN vs latency")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
