"""Same-run speed of every exact SNN backend per image·step, against onnxruntime's fp32 ANN forward.

Networks: `cnn`, `resnet20` and `cifarnet` are the shipped models (models/fashion-mnist, models/cifar10-resnet20, models/cifar10; the ANN is their
canonical ONNX under onnxruntime, QCFS activations included), `vgg16` the random-weight VGG-16 shape of
bench_numpy_runtime.build (its ANN uses ReLU). Images are random in [0, 1]: speed does not depend on them
beyond the spike rate, which is recorded.

Backends (all give identical integers; tests prove it): numpy (layer-major, simulate's defaults; the run of
2026-12-05 in BENCHMARKS.md had synapse="auto" as default, now "dense"), numpy-auto (each spike-driven current
sparse (CSR) or dense per call by the crossover measured for its shape), numpy-dense
(every current im2col + GEMM), numpy-sparse (every supported current CSR), numpy-before (dense currents and
the IF loop's operations as before the sliced, float-membrane update: the same-run baseline of the NumPy
changes), numpy-1worker (the layer-major loop in one thread, BLAS with its own threads, as before
2026-12-06; `numpy` splits the samples between --threads workers), numpy-step (step-major), ort-int8 / ort-float32 (the .snn.onnx graph with either kernel
choice, session.run only; the row "auto_kernels" says which one `--snn-kernels auto` exports), torch-f32
(per-layer proved float32, CPU) and torch-f64, and the peer SpikingJelly IF (single- and multi-step, `IFNode(v_reset=None)`
with v(0) = θ/2 on the same integer weights in float32; installed with `pip install --no-deps
spikingjelly loguru`, no torchvision; skipped when absent).

Timing: every configuration runs B images × T steps; repetitions are interleaved (one of each backend, then
the next round) and the median is kept, so load from other jobs on a shared machine hits all alike; the
load average and the busiest other processes are recorded before and after. Peak memory: the largest RSS
growth over the process's RSS before the call, sampled every 2 ms during the first (untimed) call.

    python benchmarks/bench_speed.py [--nets cnn,resnet20,vgg16] [--batch 32] [--T 8] [--reps 3] [--threads N]
        [--only numpy,numpy-dense,ort-int8] [--md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_section import write_section  # noqa: E402
import bench_numpy_runtime as bnr  # noqa: E402

from qcfs.intnet import IntNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = {"cnn": "fashion-mnist", "resnet20": "cifar10-resnet20", "cifarnet": "cifar10"}
MD_START, MD_END = "<!-- bench_speed:start -->", "<!-- bench_speed:end -->"
# Images per call tried for the ANN baseline and the peer: each is timed at all of them (and at the whole
# batch), and the fastest counts, so a cache-sized call does not favour qcfs's ort backend (RUN_SAMPLES = 16).
PER_CALL = (16, 4, 1)
# Pause before each timed call. Why: the previous backend's worker threads busy-wait after their last task
# (OpenBLAS for ~2^28 cycles, onnxruntime's and OpenMP's spinning pools for less) and, on two cores, slow the
# next backend by up to 2× depending only on which ran before it; measured here on 2026-12-05.
SETTLE_S = 0.3


# --- networks ---------------------------------------------------------------------------------------------
def load(name: str):  # type: ignore[no-untyped-def]
    """(IntNet, ANN ModelProto) of a benchmark network."""
    if name in SHIPPED:
        from qcfs import pipeline

        canon = pipeline.canonical_onnx(ROOT / "models" / SHIPPED[name] / "model.onnx")
        return pipeline.to_intnet(canon, mode="int"), canon
    return bnr.build(name)


def ann_runner(model, images: np.ndarray, threads: int, per_call: int = 0) -> Callable[[], object]:  # type: ignore[no-untyped-def]
    """onnxruntime's fp32 ANN over `images`, `per_call` images per session.run (0: all at once)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = ((images - 0.5) / 0.25).astype(np.float32)
    step = per_call or len(x)
    return lambda: [sess.run(None, {name: x[i : i + step]}) for i in range(0, len(x), step)]


def ort_runner(net: IntNet, images: np.ndarray, T: int, kernels: str, threads: int) -> Callable[[], object]:
    """The ort backend's loop as qcfs-run runs it (run_session: its own images per session.run, results
    gathered); graph and session are built once, outside the timing."""
    from qcfs.exporters.snn_onnx import build_snn_onnx
    from qcfs.runtime.ort_snn import run_session, session

    sess = session(build_snn_onnx(net, kernels), threads)
    return lambda: run_session(sess, net, images, [T])


def fused_runner(net: IntNet, images: np.ndarray, T: int, threads: int) -> Callable[[], object]:
    """The fused backend (onnxruntime currents + numba IF) as qcfs-run calls it; sessions built once."""
    from qcfs.runtime.fused_snn import FusedPlan, simulate_fused

    plan = FusedPlan(net, threads)
    return lambda: simulate_fused(net, images, [T], batch_size=len(images), progress=False, plan=plan)


def chunked(f: Callable[[np.ndarray], Callable[[], object]], images: np.ndarray, per_call: int
            ) -> Callable[[], object]:
    """A runner over `images` in calls of `per_call` images (each call's runner built once, outside timing)."""
    calls = [f(images[i : i + per_call]) for i in range(0, len(images), per_call)]
    return lambda: [c() for c in calls]


def sj_runner(net: IntNet, images: np.ndarray, T: int, multi_step: bool) -> Callable[[], object]:
    """SpikingJelly's IF neurons driven by the same integer weights (float32 conv/linear in torch)."""
    import torch
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional, neuron

    from qcfs.semantics import encode_input

    mode = "m" if multi_step else "s"
    ws = {(l.name, j): torch.as_tensor(np.asarray(s.weight, np.float32)) for l in net.layers
          for j, s in enumerate(l.synapses)}
    bs = {l.name: torch.as_tensor(np.asarray(l.bias, np.float32)) for l in net.layers}
    nodes = {l.name: neuron.IFNode(v_threshold=float(l.threshold), v_reset=None, step_mode=mode)
             for l in net.if_layers}
    x = torch.as_tensor(encode_input(images, net.input.mean, net.input.std, net.input.scale, net.input.bits)
                        .astype(np.float32))

    def syn(layer, j, src):  # type: ignore[no-untyped-def]
        s = layer.synapses[j]
        w = ws[(layer.name, j)]
        if s.kind == "dense":
            return src.reshape(src.shape[0], -1) @ w.T
        top, left, bottom, right = s.padding
        return F.conv2d(F.pad(src, (left, right, top, bottom)), w, stride=tuple(s.stride), groups=s.groups)

    def current(layer, state):  # type: ignore[no-untyped-def]
        cur = sum(syn(layer, j, state[s.source]) for j, s in enumerate(layer.synapses))
        return cur + (bs[layer.name].view(1, -1, 1, 1) if cur.dim() == 4 else bs[layer.name])

    def reset() -> None:
        for l in net.if_layers:
            functional.reset_net(nodes[l.name])
            nodes[l.name].v = float(l.v_init)  # v(0) = θ/2: SpikingJelly expands a float v to the input

    @torch.no_grad()
    def single() -> torch.Tensor:
        reset()
        const = {l.name: current(l, {"input": x}) for l in net.layers
                 if all(s.source == "input" for s in l.synapses)}
        acc = 0
        for _ in range(T):
            state = {"input": x}
            for l in net.layers:
                cur = const[l.name] if l.name in const else current(l, state)
                if l.kind == "readout":
                    acc = acc + cur
                else:
                    state[l.name] = nodes[l.name](cur)
        return acc

    @torch.no_grad()
    def multi() -> torch.Tensor:
        reset()
        b = len(x)
        seq: dict[str, torch.Tensor] = {"input": x}
        for l in net.layers:
            if all(s.source == "input" for s in l.synapses):
                c = current(l, seq)
                cur = c.unsqueeze(0).expand(T, *c.shape)
            else:
                flat = {s.source: seq[s.source].flatten(0, 1) for s in l.synapses}
                c = current(l, flat)
                cur = c.reshape(T, b, *c.shape[1:])
            if l.kind == "readout":
                return cur.sum(0)
            seq[l.name] = nodes[l.name](cur.contiguous())
        raise AssertionError("no readout")

    return multi if multi_step else single


def numpy_before(f: Callable[[], object]) -> Callable[[], object]:
    """`f` with the layer-major NumPy loop as it was before the spike-driven change (the same-run baseline of
    numpy / numpy-dense): int64 membranes and every IF operation over the whole membrane (one slice)."""
    from qcfs.runtime import numpy_neuron, numpy_snn

    def run() -> object:
        saved = numpy_snn.membrane_dtype, numpy_neuron.IF_SLICE_BYTES
        numpy_snn.membrane_dtype = lambda *a: np.dtype(np.int64)
        numpy_neuron.IF_SLICE_BYTES = 1 << 62
        try:
            return f()
        finally:
            numpy_snn.membrane_dtype, numpy_neuron.IF_SLICE_BYTES = saved

    return run


def runners(net: IntNet, ann, images: np.ndarray, T: int, threads: int) -> dict[str, Callable[[], object]]:  # type: ignore[no-untyped-def]
    from qcfs.runtime.numpy_snn import simulate
    from qcfs.runtime.torch_snn import simulate_torch

    b = len(images)
    out: dict[str, Callable[[], object]] = {
        "ann (ort fp32)": ann_runner(ann, images, threads),
        **{f"ann (ort fp32, {c}/call)": ann_runner(ann, images, threads, c) for c in PER_CALL if c < b},
        "numpy": lambda: simulate(net, images, [T], batch_size=b, progress=False, threads=threads),
        "numpy-1worker": lambda: simulate(net, images, [T], batch_size=b, progress=False, threads=1),
        "numpy-before": numpy_before(lambda: simulate(net, images, [T], batch_size=b, progress=False,
                                                      synapse="dense")),
        "numpy-auto": lambda: simulate(net, images, [T], batch_size=b, progress=False, synapse="auto"),
        "numpy-dense": lambda: simulate(net, images, [T], batch_size=b, progress=False, synapse="dense"),
        "numpy-sparse": lambda: simulate(net, images, [T], batch_size=b, progress=False, synapse="sparse"),
        "numpy-step": lambda: simulate(net, images, [T], batch_size=b, progress=False, order="step"),
        "ort-int8": ort_runner(net, images, T, "int8", threads),
    }
    try:
        out["ort-float32"] = ort_runner(net, images, T, "float32", threads)
    except ValueError as err:
        print(f"  ort-float32 not exact here: {err}", flush=True)
    try:
        out["fused"] = fused_runner(net, images, T, threads)
    except ValueError as err:
        print(f"  fused not exact here: {err}", flush=True)
    out["torch-f32"] = lambda: simulate_torch(net, images, [T], batch_size=b, progress=False)
    out["torch-f64"] = lambda: simulate_torch(net, images, [T], batch_size=b, progress=False,
                                              precision="float64")
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401

        for mode in ("single", "multi"):
            out[f"spikingjelly-{mode}"] = sj_runner(net, images, T, multi_step=mode == "multi")
            for c in (c for c in PER_CALL if 1 < c < b):  # the peer gets the same chance at cache-sized calls
                out[f"spikingjelly-{mode} ({c}/call)"] = chunked(
                    lambda x, mode=mode: sj_runner(net, x, T, multi_step=mode == "multi"), images, c)
    except ImportError as err:
        print(f"  SpikingJelly unavailable ({err}); peer rows skipped", flush=True)
    return out


# --- measuring --------------------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(f: Callable[[], object]) -> tuple[int, object]:
    """(largest RSS growth in bytes while f runs, f's result), sampled every 2 ms in a thread."""
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss() - base)
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out = f()
    finally:
        done.set()
        th.join()
    return max(peak[0], _rss() - base), out


def load_snapshot() -> dict:
    """What else ran: load average and the busiest processes other than this one."""
    ps = subprocess.run(["ps", "-eo", "pid,pcpu,rss,comm", "--sort=-pcpu"], capture_output=True, text=True)
    me = str(os.getpid())
    top = [line.split(None, 3) for line in ps.stdout.splitlines()[1:9]]
    return {"loadavg": os.getloadavg(),
            "top": [{"pid": int(p), "cpu_pct": float(c), "rss_mib": int(r) // 1024, "cmd": n}
                    for p, c, r, n in top if p != me]}


def run_header(script: str, **fields: object) -> dict:
    """The start of a benchmark's JSON document: its command line, UTC date, machine (CPU, ISA, BLAS kernels)
    and what else ran (load_snapshot), then `fields`."""
    return {"command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": bnr.machine(),
            **fields, "load_before": load_snapshot()}


def sj_agrees(net: IntNet, images: np.ndarray, T: int) -> bool:
    """SpikingJelly (float32, no saturation) gives our integer logits when no membrane saturates here."""
    from qcfs.runtime.numpy_snn import simulate

    ref = simulate(net, images[:4], [T], progress=False).logits[T]
    got = sj_runner(net, images[:4], T, multi_step=False)().numpy()
    return bool(np.array_equal(np.rint(got).astype(np.int64), ref))


def interleaved(rs: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Seconds of each runner in `reps` rounds; each round runs every runner once, after a SETTLE_S pause."""
    times: dict[str, list[float]] = {k: [] for k in rs}
    for _ in range(reps):
        for label, f in rs.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            f()
            times[label].append(time.perf_counter() - t0)
    return times


def measure(name: str, batch: int, T: int, reps: int, threads: int, only: set[str] | None = None) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    net, ann = load(name)
    images = np.random.default_rng(1).uniform(0, 1, (batch, *net.input.shape))
    rs = runners(net, ann, images, T, threads)
    if only:  # the ANN (every ratio is to it) and numpy (its counts give the spike rate) always run
        rs = {k: f for k, f in rs.items() if k in only or k.startswith("ann") or k == "numpy"}
    peaks, results = {}, {}
    for label, f in rs.items():  # first call: warm-up and memory
        peaks[label], results[label] = peak_growth(f)
    times = interleaved(rs, reps)
    anns = [k for k in rs if k.startswith("ann")]
    base = min(anns, key=lambda k: statistics.median(times[k]))  # the ANN's fastest images-per-call
    res = results["numpy"]
    neurons = sum(int(np.prod(l.shape)) for l in net.if_layers)
    rate = sum(float(c.mean()) for c in res.spikes[T].values()) / neurons / T
    rows = []
    for label in rs:
        units = batch if label.startswith("ann") else batch * T
        per = statistics.median(times[label]) / units
        # paired: this backend's time over the baseline ANN's in the same round, median over rounds (load that
        # hits one round hits both); spread = the rounds' lowest and highest ratio
        paired = [t / units / (a / batch) for t, a in zip(times[label], times[base])]
        rows.append({"net": name, "backend": label, "batch": batch, "T": T,
                     "unit": "image" if label.startswith("ann") else "image·step", "baseline": base,
                     "ms_per_unit": 1e3 * per, "ratio_to_ann": statistics.median(paired),
                     "ratio_range": [min(paired), max(paired)],
                     # best against best: each one's fastest round (the least disturbed on a shared machine)
                     "ratio_of_fastest": min(times[label]) / units / (min(times[base]) / batch),
                     "times_s": times[label],
                     "peak_rss_growth_mib": peaks[label] / 2**20, "spikes_per_neuron_per_step": rate})
        print(f"{name:9s} {label:34s} {1e3 * per:9.3f} ms/{rows[-1]['unit']:11s} ratio "
              f"{rows[-1]['ratio_to_ann']:6.2f}  "
              f"peak +{peaks[label] / 2**20:7.1f} MiB", flush=True)
    from qcfs.exporters.snn_onnx import choose_kernels

    auto = choose_kernels(net)
    print(f"{name:9s} qcfs-export --snn-kernels auto picks {auto}", flush=True)
    for r in rows:
        r["auto_kernels"] = auto
    if "spikingjelly-single" in rs:
        rows[-1]["sj_equals_int_logits"] = sj_agrees(net, images, T)
    return rows


# --- output -----------------------------------------------------------------------------------------------
def table(doc: dict) -> str:
    lines = ["| network | spikes/neuron/step | backend | ms per image·step (median) | ratio to ORT fp32 ANN "
             "(paired median, range) | fastest / fastest | peak RSS growth MiB |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in doc["results"]:
        unit = "" if r["unit"] == "image·step" else " (per image)"
        lo, hi = r.get("ratio_range", [r["ratio_to_ann"]] * 2)
        fastest = r.get("ratio_of_fastest")
        lines.append(f"| {r['net']} | {r['spikes_per_neuron_per_step']:.3f} | {r['backend']}{unit} | "
                     f"{r['ms_per_unit']:.3f} | {r['ratio_to_ann']:.2f} ({lo:.2f}–{hi:.2f}) | "
                     f"{'' if fastest is None else f'{fastest:.2f}'} | {r['peak_rss_growth_mib']:.0f} |")
    return "\n".join(lines)


def md_section(doc: dict) -> str:
    m = doc["machine"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} ×{b.get('num_threads')}"
                     for b in m.get("blas", []))
    before, after = doc["load_before"], doc["load_after"]
    others = ", ".join(sorted({p["cmd"] for p in before["top"] + after["top"] if p["cpu_pct"] >= 5}))
    return "\n".join([
        MD_START,
        f"`{doc['command']}` on {doc['date']} — {m.get('cpu_model')} ({m.get('cpus')} cores, shared; ISA: "
        f"{', '.join(f for f in m.get('isa', []) if f.startswith('avx')) or '?'}), "
        f"numpy {m.get('numpy')}, onnxruntime {m.get('onnxruntime')}, torch {doc.get('torch')}; BLAS: {blas}; "
        f"numba target: {m.get('numba_target', '?')}. "
        f"B = {doc['batch']} images × T = {doc['T']} steps per configuration, {doc['reps']} interleaved "
        f"repetitions with {SETTLE_S} s pauses; ratios to the ANN at its fastest images-per-call (paired: per "
        f"round, median over rounds). Load average before/after: "
        f"{', '.join(f'{x:.1f}' for x in before['loadavg'])} / {', '.join(f'{x:.1f}' for x in after['loadavg'])}"
        f" (other busy processes: {others or 'none seen'}). Raw: `{doc['out']}`.",
        "",
        table(doc),
        MD_END,
    ])


def write_md(path: Path, section: str) -> None:
    write_section(path, MD_START, MD_END, section, "### Exact SNN backends per image·step (bench_speed.py)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default="cnn,resnet20,vgg16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="onnxruntime/torch threads, and the NumPy and fused backends' workers")
    ap.add_argument("--only", help="comma-separated backend labels to run (default: all; ann and numpy always run)")
    ap.add_argument("--out", default=str(RESULTS / "speed.json"))
    ap.add_argument("--md", help="replace (or append) the bench_speed section of this markdown file")
    args = ap.parse_args()
    import torch

    doc = run_header("bench_speed.py", torch=torch.__version__, batch=args.batch, T=args.T, reps=args.reps,
                     threads=args.threads, out=os.path.relpath(args.out, ROOT))
    doc.update(timing="median over interleaved repetitions; ANN per image, SNN per image·step", results=[])
    for name in args.nets.split(","):
        doc["results"] += measure(name, args.batch, args.T, args.reps, args.threads,
                                  set(args.only.split(",")) if args.only else None)
    doc["load_after"] = load_snapshot()
    from qcfs.runtime.synapse_choice import crossovers

    # numpy's synapse="auto": the crossover density (× SAFETY) it measured per synapse shape in this process
    doc["numpy_sparse_crossovers"] = {repr(k): v for k, v in crossovers().items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    if args.md:
        write_md(Path(args.md), md_section(doc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
