"""Fixed-point model of NetxReadout: exactly PyReadoutModelFixed's accumulation, plus a silent s_out."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from qcfs.runtime.lava.if_neuron.models import readout_step
from qcfs.runtime.lava.netx_readout.process import NetxReadout

_I64 = np.int64


@implements(proc=NetxReadout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNetxReadoutModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, _I64, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    acc: np.ndarray = LavaPyType(np.ndarray, _I64, precision=64)
    bias: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    reset_interval: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    reset_offset: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    num_samples: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    logits: np.ndarray = LavaPyType(np.ndarray, _I64, precision=64)

    def run_spk(self) -> None:
        readout_step(self, self.a_in.recv())
        self.s_out.send(np.zeros(self.s_out.shape, dtype=np.int32))
