"""The paper's third question on our recipe: which L (and φ) for which latency budget? Also compares
architectures trained for the same time budget. One JSON, Markdown table and PNG (accuracy vs T, one line per run).

    python benchmarks/l_study.py --data-dir DIR --out benchmarks/results/l_study \
        --run "L=4=study/L4.pt" --run "L=2=study/L2.pt" ...

Each --run is LABEL=CHECKPOINT (a qcfs-train .pt, or anything qcfs-run reads). Per run: one `qcfs-run` over the
whole test split at T = 1…32 (subprocess, timed end to end), plus what the checkpoint says about its training
(architecture, L, φ, epochs, seconds per epoch, the --recipe). Test accuracy is read once per reported number;
nothing here chooses a setting on the test set (the study reports, the user chooses).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_table import TS, machine, run_qcfs, write_outputs  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def training_facts(path: str) -> dict:
    """What the checkpoint records about how it was trained (empty for a non-checkpoint model file)."""
    if not path.endswith(".pt"):
        return {}
    from qcfs.frontend.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)  # weights_only: a checkpoint is never unpickled
    log = list(ckpt.get("log") or [])
    cfg = ckpt.get("config") or {}
    train_cfg = ckpt.get("train_config") or {}
    seconds = [float(r["epoch_seconds"]) for r in log if "epoch_seconds" in r]
    return {"arch": cfg.get("arch"), "L": cfg.get("L"), "phi": cfg.get("phi"), "recipe": train_cfg.get("recipe"),
            "epochs": len(log), "train_seconds": round(sum(seconds), 1),
            "final_train_acc": log[-1].get("train_acc") if log else None}


def markdown(doc: dict) -> str:
    head = "| run | arch | L | φ | epochs (s) | ANN | " + " | ".join(f"T={t}" for t in TS) + " |"
    lines = [head, "|---|---|---:|---:|---:|---:|" + "---:|" * len(TS)]
    for run in doc["runs"]:
        f, r = run["training"], run["result"]
        acc = {x["T"]: 100 * x["accuracy"] for x in r["results"]}
        trained = f"{f['epochs']} ({f['train_seconds']:.0f})" if f else "—"
        lines.append(f"| {run['label']} | {f.get('arch', '—')} | {f.get('L', '—')} | {f.get('phi', '—')} | {trained} "
                     f"| {100 * r['ann_accuracy']:.2f} | " + " | ".join(f"{acc[t]:.2f}" for t in TS) + " |")
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(doc["runs"]):
        r = run["result"]
        color = f"C{i}"
        ax.plot([x["T"] for x in r["results"]], [100 * x["accuracy"] for x in r["results"]], marker="o", color=color,
                label=f"{run['label']} (int SNN)")
        ax.axhline(100 * r["ann_accuracy"], color=color, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T (time steps)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("Integer SNN accuracy vs T (dotted: each run's ANN)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_run(text: str) -> tuple[str, str]:
    label, sep, path = text.rpartition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run expects LABEL=CHECKPOINT, got {text!r}")
    return label, path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=parse_run, action="append", required=True, help="LABEL=CHECKPOINT (repeat)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--backend", default="ort", help="qcfs-run backend (all exact; ort is the fastest on CPU)")
    ap.add_argument("--out", required=True, help="output prefix (PREFIX.json, PREFIX.md, PREFIX.png)")
    ap.add_argument("--reuse", help="a JSON this script wrote: keep its measured runs (matched by checkpoint path), measure only "
                    "the others")
    args = ap.parse_args()
    done = {r["model"]: r for r in json.loads(Path(args.reuse).read_text())["runs"]} if args.reuse else {}
    runs = []
    for label, path in args.run:
        if path in done:  # measured before: same checkpoint, so the same numbers; only the label may differ
            runs.append({**done[path], "label": label})
            continue
        result, seconds, command = run_qcfs(path, args.data_dir, args.backend)
        runs.append({"label": label, "model": path, "training": training_facts(path), "qcfs_run": command,
                     "qcfs_run_seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "result": result})
        print(f"{label}: ANN {100 * result['ann_accuracy']:.2f} %, SNN " + " / ".join(
            f"{100 * x['accuracy']:.2f}" for x in result["results"]) + f" ({seconds:.0f} s)", flush=True)
    doc = {"command": "python benchmarks/l_study.py " + " ".join(f"--run {lb}={p}" for lb, p in args.run)
           + f" --data-dir {args.data_dir} --backend {args.backend} --out {args.out}",
           "machine": machine(), "runs": runs}
    print(write_outputs(doc, args.out, markdown, plot))


if __name__ == "__main__":
    main()
