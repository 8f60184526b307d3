"""qcfs: deploy QCFS-trained ANNs as exact integer integrate-and-fire SNNs.

Public API (stable; everything else is internal and may change):

    import qcfs
    net = qcfs.convert(model, example_input=x)   # torch.nn.Module, onnx.ModelProto or any model file path
    res = net.simulate(images, T=[1, 2, 4])       # qcfs.SimResult: logits[T], spikes[T][layer], accuracy(labels)
    net.save("model.nir")                         # intnet | lava | netx | nir | snn-onnx | onnx

    qcfs.load(path)            any model file -> Network (mode=, normalize= as qcfs-run --mode/--normalize)
    qcfs.export_onnx(m, path)  the canonical QCFS ONNX file (opset=), without building the IF network
    qcfs.train(...)            train a zoo model with QCFS activations -> checkpoint path
    qcfs.Network               calibrate(images, target_T=, method=), calibrate_on(dataset, ...), graded(M),
                               simulate, metrics, ann_logits, fit_report, save(path, format=, opset=, ...)
    qcfs.SimResult             what every backend returns
    qcfs.QCFS                  the activation to build your own torch model with (in place of ReLU)
    qcfs.QCFSError             the one-line error every failure raises
    qcfs.HardwareProfile       bit widths the integer network must fit (convert(profile=...))

Data flow behind it (one sub-package per stage):
    qcfs.frontend   torch: QCFS activation, model zoo, training
    qcfs.exporters  torch -> ONNX (first-class qcfs::QCFS op); integer network -> Lava, netx, NIR, SNN-ONNX files
    qcfs.toolchain  ONNX import/canonicalisation, graph passes, integer IF network (IntNet)
    qcfs.runtime    NumPy reference runtime, torch, onnxruntime and Lava backends
    qcfs.report     tables, plots, energy estimates
Shared contracts live in this package: `semantics` (the SNN's meaning), `intnet` (the file every backend
reads), `data` (datasets: loaders, download, ImageNet trees, subsets; NumPy only), `errors` (one-line user
errors). The CLIs (`qcfs.cli`) only parse arguments and print around this API (`qcfs-export` is convert,
calibrate_on, graded, save or export_onnx; `qcfs-run` loads with load); the work is done here and in the stages.
Importing qcfs imports neither torch nor onnxruntime; they load when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from qcfs.api import Network, SimResult, convert, export_onnx, load, train  # noqa: E402
from qcfs.errors import QCFSError  # noqa: E402
from qcfs.intnet import HardwareProfile  # noqa: E402

if TYPE_CHECKING:
    from qcfs.frontend.qcfs_act import QCFS

# QCFS (torch) is public too, but reached through __getattr__ below so that `import qcfs` stays torch-free
__all__ = ["HardwareProfile", "Network", "QCFSError", "SimResult", "convert", "export_onnx", "load", "train"]


def __getattr__(name: str) -> Any:
    """`qcfs.QCFS` imports torch only when asked for (the simulation processes stay torch-free)."""
    if name == "QCFS":
        from qcfs.frontend.qcfs_act import QCFS

        return QCFS
    raise AttributeError(f"module 'qcfs' has no attribute {name!r}")
