"""Lava backend throughput on a VGG-16-shaped integer network (CIFAR-sized), T = 4, pipelined.

What is measured (all in one run, on whatever machine runs this; `nproc` is printed):
  * images/s after start-up and the start-up time, separately: two full simulate_lava() calls with
    N_small and N_big images; throughput = (N_big - N_small) / (t_big - t_small), start-up =
    t_small - N_small / throughput (subprocess start, Lava compile, process spawn, result read);
  * exactness of the N_big run vs qcfs.runtime.numpy_snn (pipelined): identical --counts arrays;
  * our im2col Conv model vs Lava's stock PyConvModelFixed on one VGG layer (64->64, 3x3, 32x32):
    (a) the per-step synaptic computation timed in-process, same input, same weights;
    (b) end-to-end Lava runs of a one-conv network with each model (steps/s).
Writes benchmarks/results/lava.json and benchmarks/results/lava.md.

Usage: python benchmarks/bench_lava.py [--small 2] [--big 12] [--T 4]
The network has random integer weights (trained models come later); speed does not depend on them.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the hand-built IntNet helpers (NetBuilder)

from lava_nets import NetBuilder, images  # noqa: E402

from qcfs.intnet import IntNet  # noqa: E402
from qcfs.runtime.lava.backend import simulate_lava  # noqa: E402

VGG16 = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


def vgg16_intnet(seed: int = 0) -> IntNet:
    """13 convs 3x3; every 2x2 avg-pool folded into the next layer (conv 6x6/stride 2/pad 2, or the
    first dense layer reading the 2x2 map), classifier 512->4096->4096->10."""
    b = NetBuilder((3, 32, 32), seed)
    src, pending_pool, i = "input", False, 0
    for item in VGG16:
        if item == "P":
            pending_pool = True
            continue
        i += 1
        syn = b.conv_syn(src, item, 6, stride=2, pad=2) if pending_pool else b.conv_syn(src, item, 3, pad=1)
        src, pending_pool = b.add(f"conv{i}", [syn]), False
    src = b.add("fc1", [b.dense_syn(src, 4096)])  # reads 512x2x2: the last pool folded into fc1
    src = b.add("fc2", [b.dense_syn(src, 4096)])
    b.add("out", [b.dense_syn(src, 10)], kind="readout")
    return b.net()


def one_conv_intnet() -> IntNet:
    b = NetBuilder((3, 32, 32), 5)
    c1 = b.add("c1", [b.conv_syn("input", 64, 3, pad=1)])
    c2 = b.add("c2", [b.conv_syn(c1, 64, 3, pad=1)])
    b.add("out", [b.dense_syn(c2, 10)], kind="readout")
    return b.net()


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def conv_kernel_speedup(reps: int = 3) -> dict:
    """Per-step synaptic work of VGG's 64->64 3x3 conv at 32x32: stock Lava conv vs our im2col plan."""
    from qcfs.runtime.lava.compat import ensure_lava

    ensure_lava()
    from lava.proc.conv import utils

    from qcfs.runtime.lava.conv_model import Im2colPlan

    rng = np.random.default_rng(0)
    x = (rng.random((32, 32, 64)) < 0.3).astype(np.int32)
    w = rng.integers(-7, 9, size=(64, 3, 3, 64)).astype(np.int32)
    plan = Im2colPlan(w, x.shape, (1, 1), (1, 1, 1, 1), 1, max_abs_input=1)
    ref, t_stock = timed(utils.conv, x.astype(bool), w, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    t_ours = min(timed(plan, x)[1] for _ in range(reps))
    assert np.array_equal(plan(x), ref.astype(np.int64))
    return {"stock_s_per_step": t_stock, "ours_s_per_step": t_ours, "speedup": t_stock / t_ours}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=2)
    ap.add_argument("--big", type=int, default=12)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--stock-steps-images", type=int, default=1)
    ap.add_argument("--kernel-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kernel_only:  # runs in its own interpreter: importing Lava pins the multiprocessing start method
        print(json.dumps(conv_kernel_speedup()))
        return 0
    T = args.T
    net = vgg16_intnet()
    x = images(net, args.big, seed=3)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    _, t_small = timed(simulate_lava, net, x[: args.small], [T], progress=False, timeout_s=1200)
    res, t_big = timed(simulate_lava, net, x, [T], progress=False, timeout_s=1200)
    ips = (args.big - args.small) / (t_big - t_small)
    startup = t_small - args.small / ips
    print(f"VGG-16 T={T}: N={args.small}: {t_small:.1f} s, N={args.big}: {t_big:.1f} s "
          f"-> {ips:.2f} images/s after start-up, start-up {startup:.1f} s")
    from qcfs.runtime.numpy_snn import simulate

    ref = simulate(net, x, [T], timing="pipelined", progress=False).counts_arrays()
    got = res.counts_arrays()
    exact = all(np.array_equal(got[k], ref[k]) for k in ref) and set(got) == set(ref)
    rates = {layer.name: float(got[layer.name].mean() / (T * np.prod(layer.shape))) for layer in net.if_layers}
    print(f"exact vs numpy_snn (pipelined): {exact}; firing rates {min(rates.values()):.3f}..{max(rates.values()):.3f}")

    import subprocess

    kern = json.loads(subprocess.run([sys.executable, __file__, "--kernel-only"], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(f"conv 64->64 3x3 32x32 per step: stock {kern['stock_s_per_step'] * 1e3:.1f} ms, "
          f"im2col {kern['ours_s_per_step'] * 1e3:.2f} ms -> x{kern['speedup']:.0f}")
    one = one_conv_intnet()
    xo = images(one, args.stock_steps_images, seed=4)
    steps = args.stock_steps_images * T + one.readout.depth
    r_stock, t_stock = timed(simulate_lava, one, xo, [T], progress=False, timeout_s=1200, stock_conv=True)
    r_ours, t_ours = timed(simulate_lava, one, xo, [T], progress=False, timeout_s=1200)
    same = all(np.array_equal(a, b) for a, b in zip(r_stock.counts_arrays().values(), r_ours.counts_arrays().values()))
    print(f"one-conv Lava net, {steps} steps incl. start-up: stock Conv {t_stock:.1f} s, ours {t_ours:.1f} s "
          f"(x{t_stock / t_ours:.1f}); identical counts: {same}")

    out = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "T": T, "timing": "pipelined",
        "network": "VGG-16 (13 conv, pools folded as 6x6/s2/p2), 32x32x3, classifier 512-4096-4096-10",
        "n_small": args.small, "t_small_s": t_small, "n_big": args.big, "t_big_s": t_big,
        "images_per_s": ips, "startup_s": startup, "exact_vs_numpy_snn": exact, "firing_rates": rates,
        "conv_kernel": kern, "one_conv_net": {"steps": steps, "stock_s": t_stock, "ours_s": t_ours,
                                              "identical": same},
        "command": " ".join([Path(sys.executable).name] + sys.argv),
    }
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "lava.json").write_text(json.dumps(out, indent=2) + "\n")
    (res_dir / "lava.md").write_text(
        f"### Lava backend (lava-nc 0.10.0, CPU fixed-point simulator)\n\n"
        f"Measured {out['date']} on {out['cpus']} CPUs with `{out['command']}`.\n\n"
        f"| what | value |\n|---|---|\n"
        f"| VGG-16 (32x32, T={T}, pipelined) throughput after start-up | {ips:.2f} images/s |\n"
        f"| start-up (subprocess, compile, spawn) | {startup:.1f} s |\n"
        f"| counts identical to NumPy runtime ({args.big} images) | {exact} |\n"
        f"| conv 64->64 3x3 @32x32, one step: stock Lava model vs ours | {kern['stock_s_per_step'] * 1e3:.0f} ms vs "
        f"{kern['ours_s_per_step'] * 1e3:.1f} ms (x{kern['speedup']:.0f}) |\n"
        f"| one-conv Lava net end-to-end ({steps} steps + start-up): stock vs ours | {t_stock:.1f} s vs {t_ours:.1f} s |\n\n"
        f"Throughput = (N_big - N_small) / (t_big - t_small) over two full runs; start-up is the rest.\n")
    print(f"wrote {res_dir / 'lava.json'} and {res_dir / 'lava.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
