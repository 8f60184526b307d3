"""qcfs: deploy QCFS-trained ANNs as exact integer integrate-and-fire SNNs.

Data flow (one sub-package per stage):
    qcfs.frontend   torch: QCFS activation, model zoo, training
    qcfs.exporters  torch -> ONNX (first-class qcfs::QCFS op); integer network -> Lava files
    qcfs.toolchain  ONNX import/canonicalisation, graph passes, integer IF network (IntNet)
    qcfs.runtime    NumPy reference runtime, Lava fixed-point simulator backend
    qcfs.report     tables, plots, energy estimates
Shared contracts live in this package: `semantics` (the SNN's meaning), `intnet` (the file every backend
reads), `data` (datasets, NumPy only), `errors` (one-line user errors).
"""

__version__ = "0.1.0"
