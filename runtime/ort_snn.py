"""Run an integer SNN through onnxruntime (the `.snn.onnx` graph of qcfs.exporters.snn_onnx), fast on CPU.

Why: onnxruntime's ConvInteger/MatMulInteger compute the spike currents exactly with u8×s8 kernels, and the
layer-major graph leaves only the elementwise IF recurrence per step. Same contract as the NumPy runtime's
layer-synchronous `simulate` (tests check counts and logits bit for bit); no raster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from qcfs.intnet import IntNet
from qcfs.runtime.result import ChunkResults, SimResult, sync_inputs

SNN_ONNX_BYTES = 512 << 20  # rough budget for one session call: T·N spike maps and currents alive at once
# At most this many images per session call. Why: each Scan step runs its ~6 elementwise IF operations over one
# step's membrane of the whole call; with 16 images a resnet20 layer's membrane (16·64 KB) stays in L2, with 32
# it does not. Measured (a scratch A/B of the bench_speed runners in one process, AMD EPYC 2 cores, 2026-12-05):
# 16 images per call ran resnet20 0.72 → 0.55 and the cnn 0.69 → 0.46 of the fp32 ANN's time per image·step
# against 32 per call;
# VGG-16 (convolution-bound) was the same at 16 and 32 and 8 % slower at 8. The samples do not interact, so
# the results do not depend on it (tests run other chunkings).
RUN_SAMPLES = 16


def session(model, threads: int = 0):  # type: ignore[no-untyped-def]
    """An onnxruntime session of an snn-onnx ModelProto (or file path); threads=0: onnxruntime's default."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    src = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def chunk_size(net: IntNet, T: int) -> int:
    """Samples per session call: at most RUN_SAMPLES, fewer when the int32 currents and uint8 spikes of every
    layer for T steps would exceed SNN_ONNX_BYTES."""
    neurons = sum(int(np.prod(layer.shape)) for layer in net.layers)
    return max(1, min(RUN_SAMPLES, SNN_ONNX_BYTES // (T * neurons * 10)))


def _verified_model(path: str | Path, net: IntNet):  # type: ignore[no-untyped-def]
    """The verified graph of an .snn.onnx file, refused unless it states `net` (the file may have changed
    since `net` was read from it)."""
    from qcfs.errors import ModelFileError
    from qcfs.exporters.lava_export import intnet_digest

    model, stated = load_snn_onnx(path)
    if intnet_digest(stated) != intnet_digest(net):
        raise ModelFileError(f"{path}: states another network than the one being simulated (changed since it "
                             "was loaded?)")
    return model


def simulate_ort(net: IntNet, images01: np.ndarray, Ts: list[int], *, model=None, batch_size: int = 256,  # type: ignore[no-untyped-def]
                 threads: int = 0, progress: bool = True, kernels: str = "auto") -> SimResult:
    """Simulate with onnxruntime; `model` is the exported ModelProto or path (built from `net` when None)."""
    from qcfs.exporters.snn_onnx import build_snn_onnx

    images01, Ts = sync_inputs(net.input.shape, images01, Ts)
    if isinstance(model, (str, Path)):  # a file runs only once verified, as the network `net` it states
        model = _verified_model(model, net)
    sess = session(model if model is not None else build_snn_onnx(net, kernels), threads)
    return run_session(sess, net, images01, Ts, batch_size=batch_size, progress=progress)


def run_session(sess, net: IntNet, images01: np.ndarray, Ts: list[int], *, batch_size: int = 256,  # type: ignore[no-untyped-def]
                progress: bool = False) -> SimResult:
    """Run an open session of `net`'s snn-onnx graph over images (float [N, C, H, W] in [0, 1]) in calls of at
    most chunk_size images; simulate_ort's loop, separate so that a caller that times it (the speed benchmark)
    can build the session once."""
    images01, Ts = sync_inputs(net.input.shape, images01, Ts)
    names = [o.name for o in sess.get_outputs()]
    T = Ts[-1]
    layers = [layer.name for layer in net.if_layers]
    m = int(net.max_spikes_per_step)
    out_all = ChunkResults(len(images01), Ts, net.num_classes, layers, m)
    step = min(batch_size, chunk_size(net, T))
    for start in tqdm(range(0, len(images01), step), desc="onnxruntime SNN", disable=not progress, leave=False):
        x = np.ascontiguousarray(images01[start : start + step])
        out = dict(zip(names, sess.run(None, {"images": x, "T": np.array(T, dtype=np.int64)})))
        out_all.put(start, out["logits"], {name: out[f"spikes:{name}"] for name in layers},
                    {name: out[f"values:{name}"] for name in layers} if m > 1 else {})
    return out_all.result("ort")


def load_snn_onnx(path: str | Path):  # type: ignore[no-untyped-def]
    """(ModelProto, its source IntNet) of an .snn.onnx file whose graph is exactly what that network exports
    to (qcfs.exporters.snn_onnx_verify); unreadable, foreign or edited files raise ModelFileError."""
    from qcfs.exporters.snn_onnx_verify import verified_snn_onnx

    return verified_snn_onnx(path)
