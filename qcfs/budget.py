"""How long and how much memory a `qcfs-run` would need, estimated before it starts, so absurd values of
--T / --batch / --limit are refused in one line that says what they would take (instead of a run that
starts, shows no progress and never ends, or is killed for memory an hour in).

The estimates are deliberately optimistic (lower bounds on a fast machine), so a refusal means "surely too
much", never "maybe": every time step computes every synapse stage densely (cost = ANN MACs per sample per
step) at no more than `MAC_RATE` MAC/s, plus a fixed overhead per layer and step; memory counts the
membranes, spikes and scratch buffers of one batch and the per-sample results kept for every T.

NumPy memory (checked against a 224×224 VGG-16 in benchmarks/bench_imagenet_vgg.py): the IntNet's weights
plus compile_net's GEMM copies (float32 at least: 4 bytes per weight) plus one layer-major chunk, whose
batch the runtime caps at layer_major_batch; so a --batch larger than that costs nothing more and must
not be refused (it was, at 224: 256 × 13.6 M neurons × 33 B = 115 GB for a run that needs ~6 GB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from qcfs.errors import QCFSError
from qcfs.intnet import IntNet

# optimistic throughputs (MAC/s) and per-(layer, step) overheads (s); measured on the 2-core development VM:
# NumPy 2-6e9 MAC/s and ~200 µs per layer-step at batch 1, so these are 5x-10x faster than observed.
# onnxruntime's SNN graph did 1.3e11 dense-equivalent MAC/s there (cifarnet, 10,000 images at T = 32 in
# 170 s, 2026-12-05): under the numpy rate its notice claimed "at least 12.6 min" for a 3-minute run
# The fused backend ran 1.2-1.8x as fast as the SNN graph there (benchmarks/bench_speed.py): the same bound.
MAC_RATE = {"numpy": 3e10, "ort": 1e12, "fused": 1e12, "torch-cpu": 3e10, "torch-cuda": 5e13, "lava": 1e9}
STEP_OVERHEAD_S = {"numpy": 2e-5, "ort": 1e-5, "fused": 1e-5, "torch-cpu": 1e-5, "torch-cuda": 1e-5,
                   "lava": 1e-4}
# Lava's input: a RingBuffer of int32 columns, one per step, for a chunk of samples that the worker sizes to
# at most LAVA_MAX_RING_ELEMS elements but never less than one sample (in_elems x T: 2.6 GB at T = 10^7 for
# 8x8 digits). It is held at least LAVA_RING_COPIES times at once: np.repeat's result in the builder and the
# copy in the RingBuffer's process model (read from runtime/lava/build.py and lava-nc 0.10; a lower bound, not measured).
LAVA_MAX_RING_ELEMS = 1 << 24
LAVA_RING_COPIES = 2
BYTES_PER_NEURON = 33  # int64 membrane + int64 scratch + int64 constant current + bool spikes + int64 current
# fused: per neuron and step of the largest layer at least its int32 current and its uint8 spike (GEMM rows come
# on top, so this is a lower bound; at T = 10^7 a digits sample tried to allocate 153 GiB of rows)
FUSED_BYTES_PER_NEURON_STEP = 5
DEFAULT_MAX_HOURS = 24.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    bytes: int

    def describe(self) -> str:
        return f"at least {_duration(self.seconds)} and {_size(self.bytes)} of memory"


def _duration(s: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


def _size(b: float) -> str:
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b / 1024:.3g} kB"


def physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def weight_bytes(net: IntNet) -> int:
    return sum(int(np.asarray(s.weight).nbytes) for layer in net.layers for s in layer.synapses)


def weight_count(net: IntNet) -> int:
    return sum(int(np.asarray(s.weight).size) for layer in net.layers for s in layer.synapses)


def estimate(net: IntNet, n_samples: int, Ts: list[int], batch: int, backend: str, *,
             raster_neurons: int = 0, resident: int | None = None) -> Estimate:
    """`resident`: how many samples' images are decoded at once (a chunked evaluation of a lazy source such
    as ImageNet); None = all n_samples (an in-memory split)."""
    from qcfs.runtime.metrics import net_stats

    stats = net_stats(net)
    t_max = max(Ts)
    b = max(1, min(batch, n_samples))
    n_batches = -(-n_samples // b)
    layers = len(net.layers)
    key = backend if backend in MAC_RATE else "numpy"
    steps = n_samples * t_max
    if key == "lava":  # one stream of N·T steps (batch is irrelevant); results are kept per step: [N, T] per layer
        seconds = steps * (stats.ann_macs / MAC_RATE[key]) + (steps + layers) * STEP_OVERHEAD_S[key]
        memory = 2 * 8 * steps * (len(net.if_layers) + net.num_classes)
        per_sample = int(np.prod(net.input.shape)) * t_max
        ring = max(per_sample, min(n_samples * per_sample, LAVA_MAX_RING_ELEMS))
        return Estimate(seconds, int(memory + LAVA_RING_COPIES * 4 * ring))
    seconds = steps * stats.ann_macs / MAC_RATE[key] + n_batches * t_max * layers * STEP_OVERHEAD_S[key]
    all_neurons = stats.total_neurons + net.num_classes
    in_elems = int(net.input.shape[0] * net.input.shape[1] * net.input.shape[2])
    if key == "numpy":  # layer-major: the runtime splits the batch into chunks of layer_major_batch samples
        from qcfs.runtime.numpy_snn import LAYER_MAJOR_BYTES, layer_major_sample_bytes

        neurons = [int(np.prod(layer.shape)) for layer in net.layers]
        sample = layer_major_sample_bytes(neurons, t_max)
        chunk = min(b, max(1, LAYER_MAJOR_BYTES // sample))
        per_batch = chunk * sample + b * in_elems * 16 + weight_bytes(net) + 4 * weight_count(net)
    elif key == "fused":  # a chunk holds a layer's int32 currents and uint8 spikes for all T steps, ≥ 1 sample
        from qcfs.runtime.fused_snn import FUSED_BYTES

        sample = t_max * max(int(np.prod(layer.shape)) for layer in net.layers) * FUSED_BYTES_PER_NEURON_STEP
        chunk = min(b, max(1, FUSED_BYTES // sample))
        per_batch = chunk * sample + b * in_elems * 16 + weight_count(net)  # int8 weight copies
    else:
        per_batch = b * (all_neurons * BYTES_PER_NEURON + in_elems * 16)
    held = n_samples if resident is None else max(1, min(resident, n_samples))
    results = n_samples * len(Ts) * (len(net.if_layers) + net.num_classes) * 8 + held * in_elems * 16
    raster = t_max * raster_neurons * len(net.if_layers)
    return Estimate(seconds, int(per_batch + results + raster))


def check_budget(est: Estimate, what: str, max_hours: float = DEFAULT_MAX_HOURS) -> None:
    """One-line refusal when the run surely cannot finish in `max_hours` or fit in this machine's memory."""
    if est.seconds > max_hours * 3600:
        raise QCFSError(f"{what}: would take {est.describe()}, over the --max-hours {max_hours:g} limit; "
                        "use a smaller --T or --limit (or raise --max-hours)")
    mem = physical_memory()
    if mem is not None and est.bytes > 0.9 * mem:
        raise QCFSError(f"{what}: would need {est.describe()}, more than this machine's {_size(mem)}; "
                        "use a smaller --T, --batch or --limit")


LONG_RUN_S = 600.0  # a run estimated to take longer is announced before it starts


def check_run(net: IntNet, n: int, Ts: list[int], batch: int, backend: str, *, device: str | None = None,
              raster_neurons: int = 0, workers: int = 1, resident: int | None = None,
              max_hours: float = DEFAULT_MAX_HOURS) -> str | None:
    """Refuse (one line) a `qcfs-run` that surely cannot finish in `max_hours` or fit in memory; return a
    notice to print when it will be long (else None). With W Dask workers the time is that of n/W samples
    (perfect scaling: the estimate stays optimistic)."""
    key = backend if backend != "torch" else f"torch-{device or 'cpu'}"
    est = estimate(net, n, Ts, batch, key, raster_neurons=raster_neurons, resident=resident)
    if workers > 1:
        est = Estimate(est.seconds / workers, est.bytes)
    what = f"--T {max(Ts)} on {n} samples with --batch {batch} ({backend}"
    what += f", {workers} workers)" if workers > 1 else ")"
    check_budget(est, what, max_hours)
    return f"{what} will take {est.describe()}" if est.seconds > LONG_RUN_S else None
