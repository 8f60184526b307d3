"""Speed vs spike rate of the exact backends, as ratios to onnxruntime's fp32 ANN forward in the same run.

Every IF layer's bias is shifted by δ·θ (bench_sparse.shifted), which moves the network's spike rate (measured:
spikes per neuron per step over all IF layers, NumPy reference). At each rate: the ANN (unchanged: its cost
does not depend on the SNN's rate), `fused`, `ort` (both kernel choices) and NumPy (dense, and spike-driven
`synapse="sparse"`), interleaved rounds as in bench_speed.py, paired per-round ratios (median). Shows which
backends' cost follows the rate (spike-driven work) and which does not (dense work every step).

    python benchmarks/rate_sweep.py [--net resnet20] [--batch 32] [--T 8] [--reps 5] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sparse import shifted  # noqa: E402
from bench_speed import ann_runner, fused_runner, interleaved, load, load_snapshot, ort_runner, run_header  # noqa: E402
from md_section import write_section  # noqa: E402

from qcfs.runtime.numpy_snn import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = (-0.4, -0.2, 0.0, 0.2, 0.4)
MD_START, MD_END = "<!-- rate_sweep:start -->", "<!-- rate_sweep:end -->"


def sweep(name: str, batch: int, T: int, reps: int, threads: int) -> list[dict]:
    net, ann = load(name)
    images = np.random.default_rng(1).uniform(0, 1, (batch, *net.input.shape))
    neurons = sum(int(np.prod(l.shape)) for l in net.if_layers)
    rows = []
    for delta in SHIFTS:
        g = shifted(net, delta)
        res = simulate(g, images, [T], batch_size=batch, progress=False)
        rate = sum(float(c.mean()) for c in res.spikes[T].values()) / neurons / T
        rs = {"ann": ann_runner(ann, images, threads), "fused": fused_runner(g, images, T, threads),
              "ort-float32": ort_runner(g, images, T, "float32", threads),
              "ort-int8": ort_runner(g, images, T, "int8", threads),
              "numpy": lambda g=g: simulate(g, images, [T], batch_size=batch, progress=False),
              "numpy-sparse": lambda g=g: simulate(g, images, [T], batch_size=batch, progress=False,
                                                   synapse="sparse")}
        for f in rs.values():  # warm-up: compilation, sessions, buffers
            f()
        times = interleaved(rs, reps)
        row = {"bias_shift_theta": delta, "spikes_per_neuron_per_step": rate, "times_s": times}
        for k, v in times.items():
            if k != "ann":
                row[f"ratio_{k}"] = statistics.median(t / (batch * T) / (a / batch) for t, a in zip(v, times["ann"]))
        rows.append(row)
        print(f"  δ {delta:+.1f}θ rate {rate:.3f}: " + ", ".join(f"{k} {row[f'ratio_{k}']:.2f}" for k in rs
                                                                  if k != "ann"), flush=True)
    return rows


BACKENDS = ("fused", "ort-float32", "ort-int8", "numpy", "numpy-sparse")


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = sorted(doc["rows"], key=lambda r: r["spikes_per_neuron_per_step"])
    for k, style in zip(BACKENDS, ("o-", "s-", "s--", "^-", "^--")):
        ax.plot([r["spikes_per_neuron_per_step"] for r in rows], [r[f"ratio_{k}"] for r in rows], style, label=k)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="measured spikes per neuron per step", ylabel="time per image·step / ANN time per image",
           title=f"{doc['net']}: B = {doc['batch']}, T = {doc['T']}", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{doc['machine'].get('cpu_model')}, {doc['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def md_section(doc: dict) -> str:
    m = doc["machine"]
    lines = [MD_START,
             f"`{doc['command']}` on {doc['date']} — {m.get('cpu_model')} ({m.get('cpus')} cores; ISA: "
             f"{', '.join(f for f in m.get('isa', []) if f.startswith('avx'))}); load average before/after "
             f"{doc['load_before']['loadavg'][0]:.1f} / {doc['load_after']['loadavg'][0]:.1f}. Raw: `{doc['out']}`, "
             f"plot `{doc['png']}`. Ratio per image·step to the fp32 ANN per image (paired per round, median of "
             f"{doc['reps']}):", "",
             "| δ | spikes/neuron/step | " + " | ".join(BACKENDS) + " |", "|---:|---:|" + "---:|" * len(BACKENDS)]
    for r in doc["rows"]:
        lines.append(f"| {r['bias_shift_theta']:+.1f} | {r['spikes_per_neuron_per_step']:.3f} | "
                     + " | ".join(f"{r[f'ratio_{k}']:.2f}" for k in BACKENDS) + " |")
    lines.append(MD_END)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="resnet20", help="cnn | resnet20 | cifarnet | vgg16 (see bench_speed.py)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/rate_<net>.json)")
    ap.add_argument("--md", help="replace (or append) the rate_sweep section of this markdown file")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"rate_{args.net}.json")
    png = out.with_suffix(".png")
    doc = run_header("rate_sweep.py", net=args.net, batch=args.batch, T=args.T, reps=args.reps,
                     out=os.path.relpath(out, ROOT), png=os.path.relpath(png, ROOT))
    doc["rows"] = sweep(args.net, args.batch, args.T, args.reps, args.threads)
    doc["load_after"] = load_snapshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, png)
    if args.md:
        write_section(Path(args.md), MD_START, MD_END, md_section(doc), "### Speed vs spike rate (rate_sweep.py)")
    print(md_section(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
