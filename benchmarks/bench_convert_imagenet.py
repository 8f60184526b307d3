"""What converting the paper's ImageNet networks costs: checkpoint-free random-weight VGG-16 and ResNet-34 at
224×224 (frontend.models, seeded), exported to ONNX, then canonical ONNX → IntNet (`pipeline.to_intnet`), then
one image for T = 2 on the NumPy runtime, then loading the saved IntNet: each phase in a fresh subprocess, so
its peak RSS (VmHWM) is its own.

Why it matters: the toolchain composes the pooling before a dense layer into that layer's weights (exact, and
what the hardware needs), which at 224 makes VGG-16's first FC 4096 × 100,352 and ResNet-34's readout
1000 × 401,408; the passes' temporaries then decide whether a 24 GB machine can convert them at all.

    python benchmarks/bench_convert_imagenet.py [--nets vgg16,resnet34] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_section import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MD_START, MD_END = "<!-- bench_convert_imagenet:start -->", "<!-- bench_convert_imagenet:end -->"


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(net_name: str, onnx_path: str) -> dict:
    """In a fresh process: export (if needed), convert, simulate one image; timings and peak RSS."""
    import numpy as np
    import torch

    from qcfs import pipeline
    from qcfs.exporters.onnx_export import export_module
    from qcfs.frontend.models import ModelConfig, build_model
    from qcfs.runtime.numpy_snn import simulate

    path = Path(onnx_path)
    saved = path.with_suffix(".intnet.npz")
    t0 = time.perf_counter()
    if saved.exists():  # third phase, own process: loading the saved IntNet (validation included)
        from qcfs.intnet import load_intnet

        load_intnet(saved)
        return {"load_s": time.perf_counter() - t0, "load_peak_rss_mib": peak_rss_mib(),
                "intnet_file_mib": saved.stat().st_size / 2**20}
    if not path.exists():  # export in its own process, so the conversion's peak RSS is the conversion's
        torch.manual_seed(0)
        cfg = ModelConfig(net_name, 3, 1000, 224, L=4, lam_init=2.0)
        export_module(build_model(cfg).eval(), {"config": cfg, "dataset": "imagenet"}, path)
        return {"export_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    net = pipeline.to_intnet(pipeline.canonical_onnx(path))
    t2 = time.perf_counter()
    convert_peak = peak_rss_mib()
    weights = sum(int(s.weight.size) for layer in net.layers for s in layer.synapses)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 224, 224))
    t3 = time.perf_counter()
    r = simulate(net, x, [1, 2], progress=False)
    t4 = time.perf_counter()
    net.save(saved)
    return {"net": net_name, "convert_s": t2 - t1, "convert_peak_rss_mib": convert_peak,
            "weights": weights, "simulate_1_image_T2_s": t4 - t3, "peak_rss_mib": peak_rss_mib(),
            "spikes_T2": int(sum(int(c.sum()) for c in r.spikes[2].values()))}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--_worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="vgg16,resnet34")
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="qcfs-bench-convert-") as tmp:
        for name in args.nets.split(","):
            row: dict = {}
            for _phase in ("export", "convert", "load"):
                out = subprocess.run([sys.executable, __file__, "--_worker", name, str(Path(tmp) / f"{name}.onnx")],
                                     capture_output=True, text=True, check=True)
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(rows[-1], flush=True)
    doc = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join(["python", "benchmarks/bench_convert_imagenet.py", *sys.argv[1:]]),
           "machine": f"{platform.node()} ({os.cpu_count()} cores, shared VM, no GPU)",
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "convert_imagenet.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [MD_START,
             f"`{doc['command']}` — {doc['date']}, {doc['machine']}, load before/after "
             f"{doc['loadavg_before'][0]:.1f} / {doc['loadavg_after'][0]:.1f}; random seeded weights, 224×224, "
             "1000 classes; each net in a fresh process (raw: `benchmarks/results/convert_imagenet.json`).", "",
             "| net | weights after composition | canonical ONNX → IntNet (s) | peak RSS of the conversion (MiB) "
             "| 1 image, T = 2, NumPy (s) | peak RSS incl. simulation (MiB) | IntNet file (MiB) "
             "| load_intnet (s) | its peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['weights']:,} | {r['convert_s']:.1f} | {r['convert_peak_rss_mib']:.0f} | "
                     f"{r['simulate_1_image_T2_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['intnet_file_mib']:.0f} | "
                     f"{r['load_s']:.1f} | {r['load_peak_rss_mib']:.0f} |")
    lines.append(MD_END)
    md = "\n".join(lines)
    print(md)
    if args.md:
        write_section(args.md, MD_START, MD_END, md, "## Converting ImageNet-size networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
