"""Next to the paper: the shipped CIFAR-10 model's integer SNN on the whole test split at T = 1…32, beside Bu et
al.'s CIFAR-10 rows, with calibrated and two-phase rows from a low_latency.py run (one JSON, Markdown, PNG).

    python benchmarks/paper_table.py --data-dir DIR --out benchmarks/results/paper_table \
        [--model models/cifar10/model.onnx] [--backend ort] [--low-latency benchmarks/results/low_latency_X.json]

The uncalibrated row is one `qcfs-run` (run here as a subprocess and timed end to end: data decoding, the ANN on
the same samples, conversion and the SNN for every T). Calibrated rows are read from low_latency.py's JSON,
only where the network was calibrated for the T it is evaluated at. The paper's rows are quoted from the paper
(Bu et al., ICLR 2022, Table 2/3: VGG-16 and ResNet-20 on CIFAR-10, L = 4); they are not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TS = [1, 2, 4, 8, 16, 32]
# Bu et al. (ICLR 2022), CIFAR-10, QCFS L = 4 (quoted, not measured): ANN and SNN accuracy (%) per T
PAPER = {
    "paper VGG-16 (300 epochs, GPU)": {"ANN": 95.52, 2: 91.18, 4: 93.96, 8: 94.95, 16: 95.40, 32: 95.54},
    "paper ResNet-20 (300 epochs, GPU)": {"ANN": 91.77, 2: 73.20, 4: 83.75, 8: 89.55, 16: 91.62, 32: 92.24},
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU model and the cores this process may use, as every record here names the machine."""
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores"


def write_outputs(doc: dict, prefix: str, markdown: Callable[[dict], str],
                  plot: Callable[[dict, Path], None]) -> str:
    """PREFIX.json, PREFIX.md and PREFIX.png from one result document; returns the Markdown table."""
    out = Path(prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    md = markdown(doc)
    out.with_suffix(".md").write_text(md + "\n")
    plot(doc, out.with_suffix(".png"))
    return md


def run_qcfs(model: str, data_dir: str, backend: str) -> tuple[dict, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "qcfs.cli.run", "--model", model, "--dataset", "cifar10", "--data-dir",
               data_dir, "--T", ",".join(map(str, TS)), "--backend", backend, "--json", str(out), "--no-progress"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - t0
        shown = "qcfs-run " + " ".join(cmd[3:]).replace(str(out), "RUN.json")
        return json.loads(out.read_text()), seconds, shown


def calibrated_rows(low_latency: dict) -> dict[str, dict]:
    """{row label: {T: accuracy %}} for runs calibrated for the T they are read at, and two-phase rows."""
    rows: dict[str, dict] = {}
    for run in low_latency["runs"]:
        method, target = run["method"], run.get("target_T")
        for r in run["rows"]:
            if r["pre_steps"]:
                label = f"two-phase: {method}" if target else f"two-phase ({method})"
                rows.setdefault(label, {})[r["T"]] = (100 * r["accuracy"], r["pre_steps"])
            elif target is not None and r["T"] == target and not method.startswith("auto"):
                rows.setdefault(f"calibrated for T: {method}", {})[r["T"]] = 100 * r["accuracy"]
    return rows


def markdown(doc: dict) -> str:
    ours = doc["ours"]
    head = "| | ANN | " + " | ".join(f"T={t}" for t in TS) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(TS)]
    for name, row in PAPER.items():
        lines.append(f"| {name} | {row['ANN']:.2f} | " + " | ".join(
            f"{row[t]:.2f}" if t in row else "—" for t in TS) + " |")
    ann = 100 * ours["ann_accuracy"]
    acc = {r["T"]: 100 * r["accuracy"] for r in ours["results"]}
    lines.append(f"| **ours {doc['arch']}, int SNN, uncalibrated** | **{ann:.2f}** | " +
                 " | ".join(f"**{acc[t]:.2f}**" for t in TS) + " |")
    lines.append("| ours: SNN − ANN | | " + " | ".join(f"{acc[t] - ann:+.2f}" for t in TS) + " |")
    spikes = {r["T"]: r["spikes_per_sample"] for r in ours["results"]}
    lines.append("| ours: spikes/sample | | " + " | ".join(f"{spikes[t]:,.0f}" for t in TS) + " |")
    n_ll = doc.get("low_latency_test_samples")
    on = f", {n_ll:,} evenly spaced test samples" if n_ll and n_ll != ours["samples"] else ""
    for label, row in doc.get("calibrated", {}).items():
        cells = []
        for t in TS:
            v = row.get(t)
            if v is None:
                cells.append("—")
            elif isinstance(v, (list, tuple)):
                cells.append(f"{v[0]:.2f} (ρ = {v[1]})")
            else:
                cells.append(f"{v:.2f}")
        lines.append(f"| ours: {label}{on} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in PAPER.items():
        ts = [t for t in TS if t in row]
        ax.plot(ts, [row[t] for t in ts], ls="--", marker="s", label=name)
    ours = doc["ours"]
    ax.plot([r["T"] for r in ours["results"]], [100 * r["accuracy"] for r in ours["results"]], marker="o", lw=2.5,
            label=f"ours {doc['arch']} (int SNN)")
    ax.axhline(100 * ours["ann_accuracy"], color="k", lw=1, label=f"ours {doc['arch']} ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T (time steps)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_ylim(bottom=max(0, min(100 * r["accuracy"] for r in ours["results"]) - 5))
    ax.set_title("Integer SNN next to Bu et al. (ICLR 2022), L = 4")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/cifar10/model.onnx")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--backend", default="ort", help="qcfs-run backend (all exact; ort is the fastest on CPU)")
    ap.add_argument("--low-latency", help="a low_latency.py JSON on the same model: calibrated/two-phase rows")
    ap.add_argument("--label", default="cifarnet", help="the model's name in the table")
    ap.add_argument("--out", required=True, help="output prefix (PREFIX.json, PREFIX.md, PREFIX.png)")
    ap.add_argument("--reuse", help="a JSON this script wrote: keep its timed qcfs-run (no rerun) and only add the "
                    "--low-latency rows (a timing is only honest on a quiet machine)")
    args = ap.parse_args()
    if args.reuse:
        doc = json.loads(Path(args.reuse).read_text())
    else:
        doc = measure(args)
    if args.low_latency:
        ll = json.loads(Path(args.low_latency).read_text())
        doc["calibrated"] = calibrated_rows(ll)
        doc["low_latency_command"] = ll["command"]
        doc["low_latency_test_samples"] = ll["test_samples"]
    print(write_outputs(doc, args.out, markdown, plot))
    print(f"qcfs-run (whole test split, T = {TS[0]}…{TS[-1]}, {doc['qcfs_run']}): {doc['qcfs_run_seconds']:.0f} s")


def measure(args: argparse.Namespace) -> dict:
    ours, seconds, command = run_qcfs(args.model, args.data_dir, args.backend)
    return {
        "command": "python benchmarks/paper_table.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "low_latency"),
        "qcfs_run": command, "qcfs_run_seconds": round(seconds, 1),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "arch": args.label,
        "ours": ours,
    }


if __name__ == "__main__":
    main()
