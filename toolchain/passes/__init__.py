"""Conversion passes, one small class each; the order they run in is qcfs.toolchain.convert.build_pipeline."""

from qcfs.toolchain.passes.avgpool import LowerAvgPool
from qcfs.toolchain.passes.base import Pass
from qcfs.toolchain.passes.batchnorm import FoldBatchNorm
from qcfs.toolchain.passes.cleanup import DropIdentity, FuseBiasAdd
from qcfs.toolchain.passes.compose import ComposeLinear
from qcfs.toolchain.passes.fold_lambda import FoldLambda
from qcfs.toolchain.passes.quantize import Quantize
from qcfs.toolchain.passes.sumpool import KeepSumPool
from qcfs.toolchain.passes.synapses import FormSynapses

__all__ = ["ComposeLinear", "DropIdentity", "FoldBatchNorm", "FoldLambda", "FormSynapses", "FuseBiasAdd",
           "KeepSumPool", "LowerAvgPool", "Pass", "Quantize"]
