"""NumPy SNN runtime throughput (image·steps/s) versus onnxruntime on the equivalent ANN (images/s).

Networks are built here so the benchmark needs no trained model: a `cnn` as the zoo's (28×28×1: conv 32, conv
64, pool, conv 64, pool, dense 128, readout) and a VGG-16 (32×32×3: 13 conv 3×3 64-64-P-128-128-P-256×3-P-
512×3-P-512×3-P, dense 512→4096→4096→10). The IntNet is what the converter makes of such a net: every average
pool composed into the next synapse (a 2×2 pool + conv 3×3 pad 1 becomes a conv 6×6 stride 2 pad 2; the last
pool widens the first dense layer), random 8-bit integer weights, and thresholds calibrated so each layer's
rate (a layer's IF rate ≈ clip(current/θ, 0, 1)) is about RATE spikes per neuron per step. The ONNX ANN has
the same convs with AveragePool and Relu (cheaper than a QCFS activation: the comparison favours the ANN).

ratio = (seconds per SNN image·step) / (seconds per ANN image). Usage:
    python benchmarks/bench_numpy_runtime.py [--nets cnn,vgg16] [--batch 32] [--T 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from qcfs.intnet import InputSpec, IntNet, Layer, Synapse
from qcfs.runtime import numpy_synapse
from qcfs.runtime.metrics import net_stats
from qcfs.runtime.numpy_snn import simulate
from qcfs.runtime.numpy_synapse import SynapsePlan

RATE = 0.1
RESULTS = Path(__file__).resolve().parent / "results"
ARCHS = {
    "cnn": ((1, 28, 28), [32, 64, "P", 64, "P"], [128]),
    "vgg16": ((3, 32, 32), [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P",
                            512, 512, 512, "P"], [4096, 4096]),
}


# --- networks ---------------------------------------------------------------------------------------------
def _int_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(np.rint(rng.normal(0.0, 40.0, shape)), -127, 127).astype(np.int64)


def _calibrate(cur: np.ndarray) -> int:
    """Even θ with mean(clip(cur/θ, 0, 1)) ≈ RATE (bisection on the rate model of an IF neuron)."""
    lo, hi = 1e-3, float(np.abs(cur).max()) * 4 + 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(cur / mid, 0, 1).mean() > RATE else (lo, mid)
    return max(2, 2 * int(round(hi / 2)))


def build(arch: str, seed: int = 0, calib_images: int = 8) -> tuple[IntNet, "onnx.ModelProto"]:  # noqa: F821
    """IntNet (converter-style, pools composed) and the ONNX ANN (pools explicit) of one architecture."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    shape, convs, fcs = ARCHS[arch]
    c, h, w = shape
    inp = InputSpec(shape=shape, mean=(0.5,) * c, std=(0.25,) * c, scale=64.0, bits=8)
    x = np.clip(np.rint(rng.normal(0, 1, (calib_images, h, w, c)) * 64), -128, 127)  # NHWC rates model
    layers, nodes, inits = [], [], []
    src, src_shape, pending_pool, act, onnx_in, depth = "input", shape, False, x, "input", 0
    for i, item in enumerate(convs + fcs + ["readout"]):
        if item == "P":
            pending_pool = True
            nodes.append(helper.make_node("AveragePool", [onnx_in], [f"pool{i}"], kernel_shape=[2, 2],
                                          strides=[2, 2]))
            onnx_in = f"pool{i}"
            continue
        name = f"l{i}"
        dense = isinstance(item, str) or item in fcs and i >= len(convs)
        if not dense:
            cout = int(item)
            wt = _int_weights(rng, (cout, src_shape[0], 3, 3))
            nodes.append(helper.make_node("Conv", [onnx_in, f"{name}.w", f"{name}.b"], [f"{name}.y"],
                                          pads=[1, 1, 1, 1]))
            inits += [numpy_helper.from_array(wt.astype(np.float32), f"{name}.w"),
                      numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")]
            if pending_pool:  # pool ∘ conv3×3 pad 1 == conv6×6 stride 2 pad 2 with each tap spread over 2×2
                syn = Synapse(src, "conv", np.repeat(np.repeat(wt, 2, 2), 2, 3), stride=(2, 2), padding=(2,) * 4)
            else:
                syn = Synapse(src, "conv", wt, padding=(1, 1, 1, 1))
            out_shape: tuple[int, ...] = (cout, src_shape[1] // (2 if pending_pool else 1),
                                          src_shape[2] // (2 if pending_pool else 1))
        else:
            cout = 10 if item == "readout" else int(item)
            n_in = int(np.prod(src_shape)) // (4 if pending_pool else 1)
            wt = _int_weights(rng, (cout, n_in))
            if onnx_in.startswith("pool") or src_shape != (n_in,):
                nodes.append(helper.make_node("Flatten", [onnx_in], [f"{name}.flat"]))
                onnx_in = f"{name}.flat"
            nodes.append(helper.make_node("Gemm", [onnx_in, f"{name}.w", f"{name}.b"], [f"{name}.y"], transB=1))
            inits += [numpy_helper.from_array(wt.astype(np.float32), f"{name}.w"),
                      numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")]
            if pending_pool:  # the last pool widens the dense layer: each weight over its 2×2 block
                cs, hs, ws = src_shape
                w4 = wt.reshape(cout, cs, hs // 2, ws // 2)
                wt = np.repeat(np.repeat(w4, 2, 2), 2, 3).reshape(cout, -1)
            syn = Synapse(src, "dense", wt)
            out_shape = (cout,)
        pending_pool = False
        plan = SynapsePlan(syn, src_shape, np.dtype(np.float64))
        cur = plan(act)
        depth += 1
        kind = "readout" if item == "readout" else "if"
        theta = _calibrate(cur) if kind == "if" else 1
        layers.append(Layer(name, kind, out_shape, np.zeros(cout, np.int64), theta, theta // 2, [syn],
                            depth=depth, float32_exact=True))
        act = np.clip(cur / theta, 0, 1)
        if kind == "if":
            nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.a"]))
            onnx_in = f"{name}.a"
        src, src_shape = name, out_shape
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes, arch, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    net = IntNet(mode="int", input=inp, layers=layers, L=4)
    return net, model


# --- timing ------------------------------------------------------------------------------------------------
def ann_runner(model, images: np.ndarray, threads: int):  # type: ignore[no-untyped-def]
    """A callable running onnxruntime on the whole batch (session built and warmed up here)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = ((images - 0.5) / 0.25).astype(np.float32)
    sess.run(None, {"input": x})
    return lambda: sess.run(None, {"input": x})


def snn_runner(net: IntNet, images: np.ndarray, T: int, **kw):  # type: ignore[no-untyped-def]
    """A callable running the NumPy runtime on the whole batch for T steps (compile and encoding included)."""
    simulate(net, images[:2], [2], progress=False, **kw)  # warm-up
    return lambda: simulate(net, images, [T], batch_size=len(images), progress=False, **kw)


def interleaved(runners: dict, reps: int) -> dict[str, list[float]]:  # type: ignore[type-arg]
    """Alternate the runners so load from other processes on a shared machine hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(reps):
        for k, f in runners.items():
            pool = runners[k].__dict__.get("pool", True)
            numpy_synapse.POOL_FACTORING = pool
            t0 = time.perf_counter()
            out = f()
            times[k].append(time.perf_counter() - t0)
            runners[k].__dict__["result"] = out
            numpy_synapse.POOL_FACTORING = True
    return times


def machine() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0], "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as fh:
            lines = fh.read().splitlines()
        info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), "")
        flags = next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), [])
        # what decides which BLAS / onnxruntime / torch kernels run (AVX2 vs AVX-512, VNNI int8 dot products)
        info["isa"] = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")) or f in ("sse4_2", "f16c"))
    except OSError:
        pass
    try:
        import subprocess

        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info["lscpu_model"] = next((l.split(":", 1)[1].strip() for l in out.splitlines()
                                    if l.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
                        for d in threadpool_info()]
    except ImportError:
        pass
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    try:  # the CPU numba compiles the fused backend's loops for (NUMBA_CPU_NAME overrides the host's)
        import llvmlite.binding as llvm

        info["numba_target"] = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    except ImportError:
        pass
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default="cnn,vgg16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime intra-op threads")
    ap.add_argument("--variants", action="store_true", help="also time float64-only and no pool factoring")
    ap.add_argument("--out", default=str(RESULTS / "numpy_runtime.json"))
    args = ap.parse_args()
    doc = {"timing": "min over interleaved repetitions (shared machine); SNN time includes compile+encode",
           "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "batch": args.batch, "T": args.T, "reps": args.reps, "ort_threads": args.threads, "rate_target": RATE,
           "results": []}
    print(json.dumps(doc["machine"]), flush=True)
    for arch in args.nets.split(","):
        net, model = build(arch)
        images = np.random.default_rng(1).uniform(0, 1, (args.batch, *net.input.shape))
        runners = {"ann": ann_runner(model, images, args.threads), "default": snn_runner(net, images, args.T)}
        if args.variants:
            runners["float64 GEMMs"] = snn_runner(net, images, args.T, precision="float64")
            numpy_synapse.POOL_FACTORING = False
            runners["no pool factoring"] = snn_runner(net, images, args.T)
            runners["no pool factoring"].__dict__["pool"] = False
            numpy_synapse.POOL_FACTORING = True
        times = interleaved(runners, args.reps)
        ann = min(times["ann"]) / len(images)
        neurons = sum(int(np.prod(l.shape)) for l in net.if_layers)
        for label in [k for k in runners if k != "ann"]:
            snn = min(times[label]) / (len(images) * args.T)
            res = runners[label].__dict__["result"]
            rate = sum(float(c.mean()) for c in res.spikes[args.T].values()) / neurons / args.T
            row = {"net": arch, "variant": label, "ann_s_per_image": ann, "ann_images_per_s": 1 / ann,
                   "snn_s_per_image_step": snn, "snn_image_steps_per_s": 1 / snn, "ratio": snn / ann,
                   "ann_times_s": times["ann"], "snn_times_s": times[label], "spikes_per_neuron_per_step": rate,
                   "ann_macs_per_image": net_stats(net).ann_macs}
            doc["results"].append(row)
            print(f"{arch:6s} {label:18s} ANN {1 / ann:9.1f} img/s   SNN {1 / snn:9.1f} img·step/s   "
                  f"ratio {snn / ann:5.2f}   rate {rate:.3f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
