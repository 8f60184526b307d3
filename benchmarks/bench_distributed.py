"""Speed-up of sharded evaluation on Dask (`qcfs-run --workers N`) on this machine, and what sharding costs.

Workload: the shipped resnet20 on CIFAR-10 (JPEG q75 copy at $QCFS_CIFAR10_DIR), N evenly spaced test samples,
integer SNN on the NumPy runtime (layer-major), T = T_max, plus the ANN on onnxruntime per shard, exactly as
`qcfs-run --dataset cifar10 --limit N --T ... --workers W` does it (qcfs.evaluate / qcfs.distributed are
called directly so the cluster start-up is timed apart from the evaluation).

Configurations, interleaved round by round (median kept; load from other jobs hits all alike):
  single    this process, no Dask, BLAS with its default threads (what `qcfs-run` without --workers does)
  single-1t this process, no Dask, BLAS limited to 1 thread (threadpoolctl): the work of one Dask worker
  dask-1    LocalCluster, 1 worker process (1 thread, 1 BLAS thread: Dask's default)
  dask-2    LocalCluster, 2 worker processes (default shard size: 4 shards per worker)
  dask-2-big the same cluster with 2 shards per worker (fewer per-shard fixed costs)
Every configuration's merged counts are checked equal to `single`'s (else the benchmark fails).
Overheads: cluster start-up, network scatter (broadcast to every worker), and per shard the wall time beyond
the shards' own compute (queueing, result transfer, merge), from the run's `execution` block.

    python benchmarks/bench_distributed.py [--limit 1000] [--T 8] [--reps 2] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_section import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MD_START, MD_END = "<!-- bench_distributed:start -->", "<!-- bench_distributed:end -->"


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for d in threadpool_info()]


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    T = a.T_max
    return bool(np.array_equal(a.logits[T], b.logits[T])
                and all(np.array_equal(a.spikes[T][k], b.spikes[T][k]) for k in a.spikes[T]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--md", type=Path, help="update this Markdown file between the bench_distributed markers")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    from qcfs import pipeline
    from qcfs.distributed import connect, evaluate_on_dask
    from qcfs.evaluate import cluster_shard_size, evaluate_local
    from qcfs.data.samples import SplitSpec, open_split
    from qcfs.simulate import SimOptions
    from qcfs.data.subset import subset_indices

    data_dir = os.environ.get("QCFS_CIFAR10_DIR")
    if not data_dir:
        sys.exit("set QCFS_CIFAR10_DIR (the CIFAR-10 copy); see README: Datasets")
    canon = pipeline.canonical_onnx(ROOT / "models" / "cifar10" / "model.onnx")
    net = pipeline.to_intnet(canon, mode="int")
    spec = SplitSpec("cifar10", "test", data_dir)
    source = open_split(spec)
    idx = subset_indices(len(source.labels), args.limit, "spread")
    opts = SimOptions(Ts=(1, 2, 4, args.T), progress=False)
    canon_bytes = canon.SerializeToString()
    load_before = os.getloadavg()

    def local(threads: int | None):  # type: ignore[no-untyped-def]
        def run():  # type: ignore[no-untyped-def]
            if threads is None:
                return evaluate_local(net, canon_bytes, source, idx, opts)
            with threadpool_limits(threads):
                return evaluate_local(net, canon_bytes, source, idx, opts)
        return run

    clusters, startup = {}, {}
    for w in (1, 2):
        t0 = time.perf_counter()
        cm = connect(w, None)
        client = cm.__enter__()
        startup[str(w)] = time.perf_counter() - t0
        clusters[w] = (cm, client)
        # warm-up: every worker opens (decodes) the split once, as the first run on a fresh cluster does
        t0 = time.perf_counter()
        evaluate_on_dask(client, net, canon_bytes, spec, idx[: 8 * w], opts, 4)
        startup[f"{w}-warmup"] = time.perf_counter() - t0

    def dask(w: int, per_worker: int | None = None):  # type: ignore[no-untyped-def]
        """per_worker None: the shard size qcfs-run picks by default."""
        client = clusters[w][1]
        shard = cluster_shard_size(len(idx), w) if per_worker is None else -(-len(idx) // (per_worker * w))
        return lambda: evaluate_on_dask(client, net, canon_bytes, spec, idx, opts, shard)

    # dask-2-big: 2 shards per worker (qcfs-run --shard-size n/4) instead of the default 4
    configs = {"single": local(None), "single-1t": local(1), "dask-1": dask(1), "dask-2": dask(2),
               "dask-2-big": dask(2, 2)}
    times: dict[str, list[float]] = {k: [] for k in configs}
    execs: dict[str, list[dict]] = {k: [] for k in configs}
    ref = None
    try:
        for r in range(args.reps):
            for name, f in configs.items():
                t0 = time.perf_counter()
                ev = f()
                times[name].append(time.perf_counter() - t0)
                execs[name].append(ev.execution)
                if ref is None:
                    ref = ev
                elif not (same(ref.result, ev.result) and ref.ann_correct == ev.ann_correct):
                    sys.exit(f"{name}: results differ from the single-process run")
                print(f"round {r + 1} {name:10s} {times[name][-1]:8.2f} s", flush=True)
    finally:
        for cm, _ in clusters.values():
            cm.__exit__(None, None, None)
    med = {k: statistics.median(v) for k, v in times.items()}
    last = {k: v[-1] for k, v in execs.items() if v[-1]}
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "benchmarks/bench_distributed.py", *sys.argv[1:]]),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, shared VM, no GPU)",
        "workload": f"resnet20 CIFAR-10 (JPEG q75 copy), {len(idx)} evenly spaced test samples, integer SNN "
                    f"numpy layer-major, T up to {args.T}, ANN on onnxruntime per shard",
        "blas": blas_info(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "seconds": times, "median_seconds": med,
        "speedup_dask2_over_dask1": med["dask-1"] / med["dask-2"],
        "speedup_dask2_over_single": med["single"] / med["dask-2"],
        "speedup_dask2big_over_dask1": med["dask-1"] / med["dask-2-big"],
        "speedup_single_over_single1t": med["single-1t"] / med["single"],
        "cluster_startup_seconds": startup, "execution": last,
        "identical_results": True,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    print(md)
    if args.md:
        write_section(args.md, MD_START, MD_END, f"{MD_START}\n{md}\n{MD_END}",
                      "## Scale-out: sharded evaluation on Dask")
    return 0


def markdown(doc: dict) -> str:
    med = doc["median_seconds"]
    lines = [f"`{doc['command']}` — {doc['date']}, {doc['machine']}; {doc['workload']}. Load average before "
             f"{', '.join(f'{x:.2f}' for x in doc['loadavg_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in doc['loadavg_after'])}. BLAS: "
             + "; ".join(f"{b['internal_api']} {b['version']} {b['architecture']} ({b['num_threads']} threads)"
                         for b in doc["blas"]) + ".", "",
             "| configuration | median s | ratio to dask-1 |", "|---|---:|---:|"]
    for k in ("single", "single-1t", "dask-1", "dask-2", "dask-2-big"):
        lines.append(f"| {k} | {med[k]:.2f} | {med['dask-1'] / med[k]:.2f}× |")
    ex = doc["execution"]
    lines += ["", f"Speed-up of `--workers 2` over `--workers 1`: **{doc['speedup_dask2_over_dask1']:.2f}×** "
              f"with the default 4 shards per worker (over the single process without Dask: "
              f"{doc['speedup_dask2_over_single']:.2f}×); with 2 shards per worker (`dask-2-big`): "
              f"**{doc['speedup_dask2big_over_dask1']:.2f}×**. Every "
              "configuration's counts, logits and ANN hits equal the single process's.", "",
              "| overhead | dask-1 | dask-2 | dask-2-big |", "|---|---:|---:|---:|",
              f"| cluster start-up (s) | {doc['cluster_startup_seconds']['1']:.2f} | "
              f"{doc['cluster_startup_seconds']['2']:.2f} | (same cluster) |",
              f"| first run on the fresh cluster, each worker decoding the split (s) | "
              f"{doc['cluster_startup_seconds']['1-warmup']:.2f} | {doc['cluster_startup_seconds']['2-warmup']:.2f} | |"]
    for key, label in (("shards", "shards"), ("shard_size", "samples per shard"),
                       ("scatter_seconds", "network + ANN scatter (s)"),
                       ("overhead_seconds_per_shard", "per-shard overhead beyond compute (s)")):
        lines.append(f"| {label} | {ex['dask-1'][key]} | {ex['dask-2'][key]} | {ex['dask-2-big'][key]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
