"""Speed vs spike rate of the NumPy reference's synapse paths, all in one run: dense (im2col + GEMM), sparse
(CSR @ W, qcfs.runtime.numpy_sparse) and auto (per call, by the crossover synapse_choice measured).

Two sweeps, both reported as ratios to dense measured in the same run (interleaved repetitions, median):
  * layers: every spike-fed synapse of the network, fed random spike maps of density d (B·T maps at once, as
    the layer-major loop feeds a block of steps); the network's total synapse time per density, per path.
  * net: the whole network (simulate, layer-major) with every IF layer's bias shifted by δ·θ, which moves
    its spike rate (measured: spikes per neuron per step over all IF layers); ms per image·step per path.
The machine (CPU model, ISA flags, BLAS kernels and threads via threadpoolctl) is recorded with the results.
Images are random in [0, 1] (speed depends on them only through the spike rate, which is recorded).

    python benchmarks/bench_sparse.py [--net resnet20] [--batch 16] [--T 8] [--reps 3] [--png PATH] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import load, load_snapshot, run_header  # noqa: E402
from md_section import write_section  # noqa: E402

from qcfs.intnet import IntNet  # noqa: E402
from qcfs.runtime.numpy_snn import compile_net, simulate  # noqa: E402
from qcfs.runtime.numpy_synapse import SynapsePlan, channel_last  # noqa: E402
from qcfs.runtime.synapse_choice import crossovers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PATHS = ("dense", "sparse", "auto")
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
SHIFTS = (-0.4, -0.2, 0.0, 0.2, 0.4)  # bias shift per IF layer, in units of its θ
MD_START, MD_END = "<!-- bench_sparse:start -->", "<!-- bench_sparse:end -->"


def _median_times(fs: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """One untimed call of each (warm-up, auto's calibration), then `reps` interleaved rounds; medians."""
    for f in fs.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fs}
    for _ in range(reps):
        for k, f in fs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def layer_sweep(net: IntNet, maps: int, reps: int) -> list[dict]:
    """Per spike-fed synapse and density: seconds per call of each path on `maps` random spike maps."""
    rows = []
    rng = np.random.default_rng(0)
    for lp in compile_net(net):
        spike_syns = [s for s in lp.layer.synapses if s.source != "input"]  # compile_net's order
        for (plan, src, _), syn in zip(lp.spiking, spike_syns):
            src_shape = tuple(next(l.shape for l in net.layers if l.name == src))
            plans = {p: SynapsePlan(syn, src_shape, plan.dtype, p) for p in PATHS}
            for d in DENSITIES:
                x = rng.random((maps, *channel_last(src_shape))) < d
                t = _median_times({p: (lambda q=q: q(x)) for p, q in plans.items()}, reps)
                rows.append({"layer": lp.name, "source": src, "kind": syn.kind, "density": d,
                             "sparse_supported": plans["sparse"].sparse_ok, **{f"s_{p}": t[p] for p in PATHS}})
            print(f"  {lp.name:>24s} <- {src:24s} " + " ".join(
                f"{r['density']:.2f}:{r['s_sparse'] / r['s_dense']:.2f}" for r in rows[-len(DENSITIES):]),
                flush=True)
    return rows


def shifted(net: IntNet, delta: float) -> IntNet:
    """The network with every IF layer's bias raised by round(δ·θ): more (δ > 0) or fewer spikes."""
    out = copy.deepcopy(net)
    for layer in out.if_layers:
        layer.bias = np.asarray(layer.bias) + int(round(delta * float(layer.threshold)))
    return out


def net_sweep(net: IntNet, images: np.ndarray, T: int, reps: int) -> list[dict]:
    rows = []
    b = len(images)
    neurons = sum(int(np.prod(l.shape)) for l in net.if_layers)
    for delta in SHIFTS:
        g = shifted(net, delta)
        res = simulate(g, images, [T], batch_size=b, progress=False, synapse="dense")
        rate = sum(float(c.mean()) for c in res.spikes[T].values()) / neurons / T
        fs = {p: (lambda p=p: simulate(g, images, [T], batch_size=b, progress=False, synapse=p)) for p in PATHS}
        t = _median_times(fs, reps)
        rows.append({"bias_shift_theta": delta, "spikes_per_neuron_per_step": rate,
                     **{f"ms_per_image_step_{p}": 1e3 * t[p] / (b * T) for p in PATHS}})
        print(f"  shift {delta:+.2f}θ rate {rate:.3f}: " + ", ".join(
            f"{p} {rows[-1][f'ms_per_image_step_{p}']:.3f} ms" for p in PATHS), flush=True)
    return rows


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for p, style in zip(PATHS, ("o-", "s-", "^--")):
        tot = [sum(r[f"s_{p}"] for r in doc["layers"] if r["density"] == d) for d in DENSITIES]
        dense = [sum(r["s_dense"] for r in doc["layers"] if r["density"] == d) for d in DENSITIES]
        a.plot(DENSITIES, [x / y for x, y in zip(tot, dense)], style, label=p)
        rows = sorted(doc["net"], key=lambda r: r["spikes_per_neuron_per_step"])
        b.plot([r["spikes_per_neuron_per_step"] for r in rows],
               [r[f"ms_per_image_step_{p}"] / r["ms_per_image_step_dense"] for r in rows], style, label=p)
    a.set(xlabel="input spike density of every synapse", ylabel="time / dense time (same run)",
          title=f"{doc['net_name']}: all spike-fed synapses, {doc['maps']} maps", xscale="log")
    b.set(xlabel="measured spikes per neuron per step", ylabel="time / dense time (same run)",
          title=f"{doc['net_name']}: whole net, B = {doc['batch']}, T = {doc['T']}")
    for ax in (a, b):
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend()
    m = doc["machine"]
    isa = ", ".join(f for f in m.get("isa", []) if f in ("avx2", "avx512f", "avx512_vnni"))
    fig.suptitle(f"{m.get('cpu_model')} ({isa}), {doc['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def md_section(doc: dict) -> str:
    m = doc["machine"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('architecture')} ×{b.get('num_threads')}"
                     for b in m.get("blas", []))
    lines = [MD_START,
             f"`{doc['command']}` on {doc['date']} — {m.get('lscpu_model') or m.get('cpu_model')} "
             f"({m.get('cpus')} cores, shared; ISA: {', '.join(f for f in m.get('isa', []) if f.startswith('avx'))}); "
             f"BLAS: {blas}; load average before/after {doc['load_before']['loadavg'][0]:.1f} / "
             f"{doc['load_after']['loadavg'][0]:.1f}. Raw: `{doc['out']}`, plot `{doc['png']}`.", "",
             "Whole network (bias of every IF layer shifted by δ·θ to move the spike rate), ms per image·step and "
             "ratio to dense in the same run:", "",
             "| δ | spikes/neuron/step | dense ms | sparse ms (ratio) | auto ms (ratio) |",
             "|---:|---:|---:|---:|---:|"]
    for r in doc["net"]:
        d = r["ms_per_image_step_dense"]
        lines.append(f"| {r['bias_shift_theta']:+.1f} | {r['spikes_per_neuron_per_step']:.3f} | {d:.3f} | "
                     f"{r['ms_per_image_step_sparse']:.3f} ({r['ms_per_image_step_sparse'] / d:.2f}) | "
                     f"{r['ms_per_image_step_auto']:.3f} ({r['ms_per_image_step_auto'] / d:.2f}) |")
    lines += ["", "All spike-fed synapses together on random spike maps of one density (sum of per-layer medians), "
              "ratio to dense:", "", "| density | sparse / dense | auto / dense |", "|---:|---:|---:|"]
    for d in DENSITIES:
        rs = [r for r in doc["layers"] if r["density"] == d]
        dense = sum(r["s_dense"] for r in rs)
        lines.append(f"| {d:.2f} | {sum(r['s_sparse'] for r in rs) / dense:.2f} | "
                     f"{sum(r['s_auto'] for r in rs) / dense:.2f} |")
    lines.append(MD_END)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="resnet20", help="cnn | resnet20 | cifarnet | vgg16 (see bench_speed.py)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-net", action="store_true", help="only the per-layer sweep")
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/sparse_<net>.json)")
    ap.add_argument("--png", default=None, help="plot (default benchmarks/results/sparse_<net>.png)")
    ap.add_argument("--md", help="replace (or append) the bench_sparse section of this markdown file")
    args = ap.parse_args()
    out = Path(args.out or RESULTS / f"sparse_{args.net}.json")
    png = Path(args.png or RESULTS / f"sparse_{args.net}.png")
    net, _ = load(args.net)
    images = np.random.default_rng(1).uniform(0, 1, (args.batch, *net.input.shape))
    doc = run_header("bench_sparse.py", net_name=args.net, batch=args.batch, T=args.T, reps=args.reps,
                     maps=args.batch * args.T, out=os.path.relpath(out, ROOT), png=os.path.relpath(png, ROOT))
    print(f"{args.net}: per-layer sweep ({doc['maps']} maps, sparse/dense per density)", flush=True)
    doc["layers"] = layer_sweep(net, doc["maps"], args.reps)
    doc["net"] = [] if args.skip_net else net_sweep(net, images, args.T, args.reps)
    doc["load_after"] = load_snapshot()
    doc["numpy_sparse_crossovers"] = {repr(k): v for k, v in crossovers().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if doc["net"]:
        plot(doc, png)
    section = md_section(doc) if doc["net"] else ""
    print(section)
    if args.md and section:
        write_section(Path(args.md), MD_START, MD_END, section,
                      f"### Speed vs spike rate: sparse and dense synapses (bench_sparse.py, {args.net})")
    print(f"wrote {out}" + (f" and {png}" if doc["net"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
