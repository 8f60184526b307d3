"""Will it fit, measured: synapses as stored, synaptic memory and estimated Loihi 2 chips (report.resources, an
estimate) for every shipped model and the paper's 224×224 VGG-16 / ResNet-34 (random seeded weights, built as
benchmarks/bench_convert_imagenet.py builds them), with average pooling composed into the next synapse vs kept
as a separate sum-pool stage (--pool compose | separate). Each conversion runs in a fresh process (the 224
VGG-16 composed needs ~12 GB), one at a time.

    python benchmarks/bench_fit.py [--nets digits,fashion-mnist,cifar10,vgg16-224,resnet34-224] [--md BENCHMARKS.md]
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
MD_START, MD_END = "<!-- bench_fit:start -->", "<!-- bench_fit:end -->"
SHIPPED = ("digits", "fashion-mnist", "cifar10", "cifar10-resnet20")
IMAGENET = {"vgg16-224": "vgg16", "resnet34-224": "resnet34"}


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def export_imagenet(arch: str, path: Path) -> None:
    import torch

    from qcfs.exporters.onnx_export import export_module
    from qcfs.frontend.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch, 3, 1000, 224, L=4, lam_init=2.0)
    export_module(build_model(cfg).eval(), {"config": cfg, "dataset": "imagenet"}, path)


def worker(model: str, pool: str) -> dict:
    """In a fresh process: convert with `pool`, then the Loihi 2 estimate."""
    from qcfs import pipeline
    from qcfs.report.resources import fit_report

    t0 = time.perf_counter()
    net = pipeline.to_intnet(pipeline.canonical_onnx(Path(model)), pool=pool)
    convert_s = time.perf_counter() - t0
    rep = fit_report(net)
    t = rep.totals
    return {"pool": pool, "synapses": t["synapses"], "memory_bytes": t["memory_bytes"], "neurons": t["neurons"],
            "cores": t["cores"], "chips": rep.chips_needed, "pool_stages": rep.pool_stages,
            "latency_steps_added": rep.latency_steps_added, "readout_depth": int(net.readout.depth),
            "weights_in_intnet": sum(int(s.weight.size) for layer in net.layers for s in layer.synapses),
            "convert_s": convert_s, "peak_rss_mib": peak_rss_mib(),
            "placeable": rep.refusal is None, "refusal": rep.refusal,
            "largest": max(((p.name, p.synapses) for p in rep.populations), key=lambda kv: kv[1])}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--_worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--_export":
        export_imagenet(sys.argv[2], Path(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join((*SHIPPED, *IMAGENET)))
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qcfs-bench-fit-") as tmp:
        for name in args.nets.split(","):
            if name in IMAGENET:
                model = Path(tmp) / f"{name}.onnx"
                subprocess.run([sys.executable, __file__, "--_export", IMAGENET[name], str(model)], check=True)
            else:
                model = ROOT / "models" / name / "model.onnx"
            for pool in ("compose", "separate"):
                out = subprocess.run([sys.executable, __file__, "--_worker", str(model), pool],
                                     capture_output=True, text=True, check=True)
                rows.append({"net": name, **json.loads(out.stdout.strip().splitlines()[-1])})
                print(rows[-1], flush=True)
    doc = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join(["python", "benchmarks/bench_fit.py", *sys.argv[1:]]),
           "machine": f"{cpu_model()}, {os.cpu_count()} cores, shared VM, no GPU",
           "profile": "loihi2 (qcfs.report.chip_profiles.LOIHI2; estimate, not measured on hardware)", "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fit.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [MD_START,
             f"`{doc['command']}` — {doc['date']}, {doc['machine']}; profile {doc['profile']}; ImageNet nets: random "
             "seeded weights, 224×224, 1000 classes; each conversion in a fresh process (raw: "
             "`benchmarks/results/fit.json`). Synapses as stored: convolution kernels once (shared), dense layers "
             "unrolled, sum-pool stages C·k²; memory at 8-bit weights; chips by the partitioning rule of "
             "report/resources.py. All numbers are estimates.", "",
             "| net | pooling | synapses (stored) | synaptic memory (MiB) | neurons | cores | est. Loihi 2 chips "
             "| every neuron placeable | pool stages | latency + steps | largest population (synapses) |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['pool']} | {r['synapses']:,} | {r['memory_bytes'] / 2**20:.1f} | "
                     f"{r['neurons']:,} | {r['cores']:,} | {r['chips']} | "
                     f"{'yes' if r['placeable'] else 'no: ' + r['refusal'].split(':')[0]} | {r['pool_stages']} | "
                     f"{r['latency_steps_added']} | {r['largest'][0]} ({r['largest'][1]:,}) |")
    lines.append(MD_END)
    md = "\n".join(lines)
    print(md)
    if args.md:
        write_section(args.md, MD_START, MD_END, md,
                      "## 9. Will it fit: Loihi 2 resources, composed vs separate pooling (issue 21)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
