"""ImageNet-size VGG-16 (224×224, 1000 classes, random weights) on the NumPy runtime: seconds per image·step
and peak memory per batch size, as ratios to onnxruntime's fp32 ANN forward measured in the same run.

Network: the zoo's `vgg16` at ModelConfig(image_size=224, num_classes=1000), seeded random weights, through
the normal export path (checkpoint → qcfs.pipeline.canonical_onnx → IntNet), built once into --cache (the
conversion alone peaks near 19 GB of RSS; a cached build is reused and says so in the JSON).

Each point runs in a fresh subprocess: load the IntNet, reset the kernel's peak-RSS mark
(/proc/self/clear_refs = 5), run `simulate` once (timed; it compiles the GEMM plans too), then read VmHWM.
So "peak RSS" = the process's peak during simulate (the IntNet's weights, their GEMM copies made by
compile_net, and the runtime's state); "growth" = that peak minus the RSS just before the call. The budget
column is qcfs.budget's lower-bound estimate for the same run (it must stay below the measured peak). Series:
  * capped: the runtime's default (layer-major chunks of layer_major_batch samples under LAYER_MAJOR_BYTES);
  * uncapped: LAYER_MAJOR_BYTES raised to 64 GB, so the whole batch is one chunk (shows the per-sample state).
The ANN baseline: the canonical ONNX (QCFS activations as functions) under onnxruntime, same images.

    nice python benchmarks/bench_imagenet_vgg.py [--batches 1,2,4,8] [--uncapped 4,8] [--T 4] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_section import write_section  # noqa: E402
import bench_numpy_runtime as bnr  # noqa: E402
from bench_speed import ann_runner, load_snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MD_START, MD_END = "<!-- bench_imagenet_vgg:start -->", "<!-- bench_imagenet_vgg:end -->"
NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _status() -> dict[str, int]:
    """VmRSS / VmHWM of this process in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) // 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5": reset VmHWM to the current RSS (Linux >= 4.0)
        fh.write("5")


# --- build (subprocess) -----------------------------------------------------------------------------------
def build(cache: Path) -> dict:
    """Checkpoint → canonical ONNX → IntNet of the seeded random 224 VGG-16; what is cached is reused."""
    import torch

    from qcfs import pipeline
    from qcfs.frontend.checkpoint import save_checkpoint
    from qcfs.frontend.models import ModelConfig, build_model

    cache.mkdir(parents=True, exist_ok=True)
    ckpt, onnx_path, intnet = cache / "vgg16_224.pt", cache / "vgg16_224.onnx", cache / "vgg16_224.intnet.npz"
    rec: dict = {}
    t0 = time.perf_counter()
    if not ckpt.exists():
        torch.manual_seed(0)
        cfg = ModelConfig("vgg16", 3, 1000, 224)
        save_checkpoint(ckpt, build_model(cfg).eval(), cfg, "imagenet", NORM)
    if not onnx_path.exists() or not intnet.exists():
        import onnx

        canon = pipeline.canonical_onnx(ckpt)
        rec["onnx_s"] = time.perf_counter() - t0
        onnx.save_model(canon, str(onnx_path))
        if not intnet.exists():
            net = pipeline.to_intnet(canon, mode="int")
            net.save(intnet)
            rec["convert_s"] = time.perf_counter() - t0
            rec["built_intnet_now"] = True
    rec.setdefault("built_intnet_now", False)
    rec["peak_rss_mib"] = _status()["VmHWM"]
    return rec


# --- one point (subprocess) -------------------------------------------------------------------------------
def point(cache: Path, batch: int, T: int, uncapped: bool) -> dict:
    from qcfs.budget import estimate
    from qcfs.intnet import load_intnet
    from qcfs.runtime import numpy_snn

    if uncapped:
        numpy_snn.LAYER_MAJOR_BYTES = 64 << 30
    t0 = time.perf_counter()
    net = load_intnet(cache / "vgg16_224.intnet.npz")
    load_s, loaded = time.perf_counter() - t0, _status()
    images = np.random.default_rng(1).uniform(0, 1, (batch, *net.input.shape)).astype(np.float32)
    base = _status()["VmRSS"]
    _reset_peak()
    t0 = time.perf_counter()
    res = numpy_snn.simulate(net, images, [T], batch_size=batch, progress=False)
    sim_s = time.perf_counter() - t0
    peak = _status()["VmHWM"]
    neurons = sum(int(np.prod(layer.shape)) for layer in net.if_layers)
    rate = sum(float(c.mean()) for c in res.spikes[T].values()) / neurons / T
    est = estimate(net, batch, [T], batch, "numpy")
    plans = numpy_snn.compile_net(net)
    chunk = min(batch, numpy_snn.layer_major_batch(plans, T, np.int64))
    return {"batch": batch, "T": T, "uncapped": uncapped, "chunk": chunk, "load_s": load_s,
            "load_peak_rss_mib": loaded["VmHWM"], "rss_before_mib": base, "peak_rss_mib": peak,
            "peak_growth_mib": peak - base, "simulate_s": sim_s, "s_per_image_step": sim_s / (batch * T),
            "spikes_per_neuron_per_step": rate, "budget_estimate_mib": est.bytes / 2**20,
            "logits_sum": int(res.logits[T].sum())}


def ann_point(cache: Path, batch: int, reps: int) -> dict:
    import onnx

    model = onnx.load(str(cache / "vgg16_224.onnx"))
    images = np.random.default_rng(1).uniform(0, 1, (batch, 3, 224, 224)).astype(np.float32)
    base = _status()["VmRSS"]
    _reset_peak()
    f = ann_runner(model, images, os.cpu_count() or 1)
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return {"batch": batch, "s_per_image": float(np.median(times)) / batch, "times_s": times,
            "peak_rss_mib": _status()["VmHWM"], "peak_growth_mib": _status()["VmHWM"] - base}


def decode_point(n: int = 16) -> dict:
    """Seconds to decode + resize-256 + crop-224 one ImageNet-typical JPEG (500×375, quality 90)."""
    import tempfile

    from PIL import Image

    from qcfs.data.imagenet import eval_image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):
            p = Path(tmp) / f"{i}.JPEG"
            smooth = rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)  # blocky content compresses like photos
            Image.fromarray(smooth).resize((500, 375), Image.BILINEAR).save(p, quality=90)
            paths.append(p)
        t0 = time.perf_counter()
        for p in paths:
            eval_image(p)
        return {"images": n, "s_per_image": (time.perf_counter() - t0) / n}


def _sub(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--_worker", json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_imagenet_vgg: worker {args} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(spec: list) -> None:
    kind, cache = spec[0], Path(spec[1])
    if kind == "build":
        rec = build(cache)
    elif kind == "ann":
        rec = ann_point(cache, int(spec[2]), int(spec[3]))
    elif kind == "decode":
        rec = decode_point()
    else:
        rec = point(cache, int(spec[2]), int(spec[3]), bool(spec[4]))
    print(json.dumps(rec))


# --- output -----------------------------------------------------------------------------------------------
def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for uncapped, label in ((False, "runtime default (chunked)"), (True, "one chunk (cap raised)")):
        pts = [p for p in doc["points"] if p["uncapped"] == uncapped]
        if pts:
            ax.plot([p["batch"] for p in pts], [p["peak_rss_mib"] / 1024 for p in pts], "o-", label=label)
    ax.axhline(doc["ann"]["peak_rss_mib"] / 1024, ls="--", c="gray", label="ORT fp32 ANN (batch %d)" % doc["ann"]["batch"])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak RSS during simulate (GiB)")
    ax.set_title(f"VGG-16 224×224, NumPy runtime, T = {doc['T']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(doc: dict) -> str:
    ann = doc["ann"]["s_per_image"]
    lines = ["| batch | chunk | s per image·step | ratio to ORT fp32 ANN per image | peak RSS MiB | growth MiB "
             "| budget estimate MiB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in doc["points"]:
        tag = " (cap raised)" if p["uncapped"] else ""
        lines.append(f"| {p['batch']}{tag} | {p['chunk']} | {p['s_per_image_step']:.2f} | "
                     f"{p['s_per_image_step'] / ann:.1f} | {p['peak_rss_mib']} | {p['peak_growth_mib']} | "
                     f"{p['budget_estimate_mib']:.0f} |")
    return "\n".join(lines)


def md_section(doc: dict) -> str:
    m = doc["machine"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} ×{b.get('num_threads')}"
                     for b in m.get("blas", []))
    la, lb = doc["load_before"]["loadavg"], doc["load_after"]["loadavg"]
    b = doc["build"]
    built = (f"converted in this run: {b.get('convert_s', 0):.0f} s, peak RSS {b['peak_rss_mib']} MiB"
             if b["built_intnet_now"] else "IntNet reused from the cache (built by the same code)")
    return "\n".join([
        MD_START,
        f"`{doc['command']}` on {doc['date']}, {m.get('cpu_model')} ({m.get('cpus')} cores, shared VM, no GPU); "
        f"BLAS: {blas}. Load average before/after: {', '.join(f'{x:.1f}' for x in la)} / "
        f"{', '.join(f'{x:.1f}' for x in lb)}. VGG-16 224×224, 1000 classes, seeded random weights, "
        f"checkpoint → ONNX → IntNet ({built}); T = {doc['T']}, random images, "
        f"{doc['points'][0]['spikes_per_neuron_per_step']:.3f} spikes per neuron·step. "
        f"Baseline: ORT fp32 ANN {doc['ann']['s_per_image']:.3f} s per image (batch {doc['ann']['batch']}, "
        f"peak RSS {doc['ann']['peak_rss_mib']} MiB). JPEG decode + resize + crop: "
        f"{1e3 * doc['decode']['s_per_image']:.1f} ms per 500×375 image. Raw: `{doc['out']}`, plot `{doc['png']}`.",
        "",
        table(doc),
        MD_END,
    ])


def write_md(path: Path, section: str) -> None:
    write_section(path, MD_START, MD_END, section, "## ImageNet-size VGG-16: time and memory")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--_worker":
        worker(json.loads(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--uncapped", default="4,8", help="batch sizes to rerun as one chunk ('' = none)")
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--ann-batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3, help="timed ANN repetitions")
    ap.add_argument("--cache", default="/tmp/qcfs_bench_imagenet_vgg")
    ap.add_argument("--md", help="replace (or append) this benchmark's section of this markdown file")
    args = ap.parse_args()
    day = dt.date.today().isoformat()
    out, png = RESULTS / f"imagenet_vgg16_{day}.json", RESULTS / f"imagenet_vgg16_{day}.png"
    cache = Path(args.cache)
    doc: dict = {"command": "nice python benchmarks/bench_imagenet_vgg.py " + " ".join(sys.argv[1:]),
                 "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": bnr.machine(),
                 "T": args.T, "load_before": load_snapshot(), "out": os.path.relpath(out, ROOT),
                 "png": os.path.relpath(png, ROOT), "points": []}
    doc["build"] = _sub(["build", str(cache)])
    print("build", doc["build"], flush=True)
    doc["ann"] = _sub(["ann", str(cache), args.ann_batch, args.reps])
    print("ann", doc["ann"], flush=True)
    doc["decode"] = _sub(["decode", str(cache)])
    runs = [(int(b), False) for b in args.batches.split(",") if b] + [(int(b), True) for b in args.uncapped.split(",") if b]
    for b, unc in runs:
        p = _sub(["point", str(cache), b, args.T, unc])
        p["ratio_to_ann"] = p["s_per_image_step"] / doc["ann"]["s_per_image"]
        doc["points"].append(p)
        print(f"batch {b:3d}{' uncapped' if unc else '         '} chunk {p['chunk']}  {p['s_per_image_step']:.2f} "
              f"s/image·step (x{p['ratio_to_ann']:.1f} ANN)  peak {p['peak_rss_mib']} MiB  "
              f"(+{p['peak_growth_mib']})  budget est {p['budget_estimate_mib']:.0f} MiB  load {os.getloadavg()[0]:.1f}",
              flush=True)
    doc["load_after"] = load_snapshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, png)
    print(table(doc))
    if args.md:
        write_md(Path(args.md), md_section(doc))
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
