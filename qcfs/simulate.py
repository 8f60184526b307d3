"""One entry point to every SNN backend: `run_backend(net, images01, opts) -> SimResult`.

Why here and not in the CLI: the same call runs in the `qcfs-run` process, in each chunk of a lazily read split
and inside Dask workers (qcfs.distributed), so it takes a small picklable options object rather than argparse's
Namespace, and turns backend failures into one-line QCFSErrors wherever it runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qcfs.errors import BackendError, QCFSError
from qcfs.intnet import IntNet
from qcfs.runtime.result import SimResult


@dataclass(frozen=True)
class SimOptions:
    """What a backend needs besides the network and the images (all plain values: picklable for Dask)."""

    backend: str = "numpy"
    Ts: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    timing: str = "sync"
    batch: int = 256
    device: str | None = None  # torch backend: cpu | cuda
    pre_steps: int = 0
    netx_semantics: str | None = None
    timeout: float = 3600.0  # lava / netx: seconds
    progress: bool = True
    raster_neurons: int = 0  # only numpy records a raster
    # a model file given as --model that the backend runs as is (None: export the IntNet on the fly)
    lava_file: str | None = None
    snn_onnx_file: str | None = None
    netx_file: str | None = None

    def quiet(self) -> SimOptions:
        """The same run without progress bars (chunks and shards show their own)."""
        return replace(self, progress=False)


def model_file_options(model: Path) -> dict[str, str | None]:
    """The SimOptions fields that make a backend read the model file itself when it is one that backend runs
    (.lava.npz: lava, .snn.onnx: ort, .net.h5: netx) instead of exporting the IntNet on the fly."""
    from qcfs.pipeline import model_kind

    kind = model_kind(model)
    return {"lava_file": str(model) if kind == "lava" else None,
            "snn_onnx_file": str(model) if kind == "snn-onnx" else None,
            "netx_file": str(model) if kind == "netx" else None}


def fused_or_numpy(net: IntNet) -> str:
    """What `qcfs-run` runs when no backend is named (and no NumPy-only option is set): `fused` where it can
    run this network (integer mode, int8 spike-fed weights, int32 sums), else the NumPy reference. Why: the
    same integers (tests/test_fused_snn.py), ~3× faster (whole CIFAR-10 test set, resnet20, T = 1…32: 112 s
    against 332 s, BENCHMARKS.md section 3). The check runs FusedPlan's checks without building its sessions."""
    try:
        from qcfs.runtime.fused_snn import FusedPlan

        FusedPlan(net, threads=1, sessions=False)
    except (ImportError, ValueError):
        return "numpy"
    return "fused"


def run_backend(net: IntNet, images01: np.ndarray, opts: SimOptions) -> SimResult:
    """Simulate `images01` ([N, C, H, W] in [0, 1]) on the chosen backend."""
    Ts = list(opts.Ts)
    if opts.backend == "lava":
        try:
            from qcfs.runtime.lava.backend import simulate_lava
        except ImportError as err:
            raise BackendError(f"Lava backend unavailable ({err}); install it with scripts/setup_env.sh") from None
        return simulate_lava(opts.lava_file or net, images01, Ts, timeout_s=opts.timeout, progress=opts.progress)
    if opts.backend == "netx":
        return _on_netx(net, images01, opts)
    if opts.backend == "torch":
        return _on_torch(net, images01, opts)
    if opts.backend == "ort":
        return _on_ort(net, images01, opts)
    if opts.backend == "fused":
        return _on_fused(net, images01, opts)
    return simulate_numpy(net, images01, Ts, opts.timing, opts.batch, opts.raster_neurons, opts.progress,
                          opts.pre_steps)


def simulate_numpy(net: IntNet, images01: np.ndarray, Ts: list[int], timing: str, batch: int,
                   raster_neurons: int, progress: bool, pre_steps: int = 0) -> SimResult:
    from qcfs.runtime.numpy_snn import simulate as simulate_np

    try:
        return simulate_np(net, images01, Ts, timing=timing, batch_size=batch, raster_neurons=raster_neurons,
                           progress=progress, pre_steps=pre_steps)
    except ValueError as err:
        raise QCFSError(f"cannot simulate this network: {err}") from None


def _on_netx(net: IntNet, images01: np.ndarray, opts: SimOptions) -> SimResult:
    """A .net.h5 given as --model runs as is; anything else is exported to a temporary .net.h5 first."""
    from qcfs.runtime.lava.compat import netx_available

    if not netx_available():
        raise BackendError("netx backend unavailable: lava-dl is not installed; run scripts/setup_env.sh")
    from qcfs.exporters.netx_export import export_netx
    from qcfs.runtime.lava.netx_backend import simulate_netx

    with tempfile.TemporaryDirectory(prefix="qcfs-netx-") as tmp:
        path = opts.netx_file or export_netx(net, Path(tmp) / "m.net.h5")
        return simulate_netx(path, images01, list(opts.Ts), semantics=opts.netx_semantics or "qcfs",
                             timeout_s=opts.timeout, progress=opts.progress)


def check_torch_device(name: str | None) -> None:
    """Asking for CUDA on a machine without one is a usage error, reported before any work is done."""
    try:
        import torch
    except ImportError as err:
        raise BackendError(f"torch backend unavailable ({err}); install torch") from None
    if name == "cuda" and not torch.cuda.is_available():
        raise QCFSError("--device cuda: no CUDA GPU available to torch here; use --device cpu")


def _on_torch(net: IntNet, images01: np.ndarray, opts: SimOptions) -> SimResult:
    try:
        from qcfs.runtime.torch_snn import simulate_torch
    except ImportError as err:
        raise BackendError(f"torch backend unavailable ({err}); install torch") from None
    try:
        return simulate_torch(net, images01, list(opts.Ts), batch_size=opts.batch, device=opts.device or "cpu",
                              progress=opts.progress, pre_steps=opts.pre_steps)
    except ValueError as err:
        raise QCFSError(f"cannot simulate this network: {err}") from None


def _on_fused(net: IntNet, images01: np.ndarray, opts: SimOptions) -> SimResult:
    """onnxruntime's int8 GEMMs and numba's IF loop (runtime/fused_snn.py)."""
    from qcfs.runtime.fused_snn import simulate_fused

    try:
        return simulate_fused(net, images01, list(opts.Ts), batch_size=opts.batch, progress=opts.progress)
    except ImportError as err:  # numba is imported on first use
        raise BackendError(f"fused backend unavailable ({err}); install numba") from None
    except ValueError as err:
        raise QCFSError(f"cannot simulate this network on the fused backend: {err}") from None


def _on_ort(net: IntNet, images01: np.ndarray, opts: SimOptions) -> SimResult:
    """An .snn.onnx model runs as exported; anything else is exported to the same graph in memory first."""
    from qcfs.runtime.ort_snn import simulate_ort

    try:
        return simulate_ort(net, images01, list(opts.Ts), model=opts.snn_onnx_file, batch_size=opts.batch,
                            progress=opts.progress)
    except ValueError as err:
        raise QCFSError(f"cannot simulate this network on onnxruntime: {err}") from None
