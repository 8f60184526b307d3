"""Fixed-point (integer, int64) CPU ProcessModels for IF, Readout and Delay; exactly qcfs.semantics.

The window bookkeeping follows the pipelined discipline of qcfs.semantics: a process at depth d sees sample
n during global steps n·T + d + 1 ... n·T + d + T and resets at the first of them.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from qcfs.runtime.lava.if_neuron.process import IF, Delay, Readout  # absolute: Lava re-executes this file standalone
from qcfs.semantics import fire, spike_dtype

_I64 = np.int64


class _WindowMixin:
    """Maps the global step to (sample n, step k within its window) or None when idle."""

    reset_interval: np.ndarray
    reset_offset: np.ndarray
    num_samples: np.ndarray
    time_step: int

    def window(self) -> tuple[int, int] | None:
        rel = self.time_step - int(self.reset_offset[0])
        if rel < 0:
            return None
        n, k = divmod(rel, int(self.reset_interval[0]))
        return (n, k) if n < int(self.num_samples[0]) else None


@implements(proc=IF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIFModelFixed(_WindowMixin, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, _I64, precision=24)
    # graded-capable like lava.proc.graded's models (24-bit payload); binary networks send 0/1
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    v_min: np.ndarray = LavaPyType(np.ndarray, _I64, precision=25)
    v_max: np.ndarray = LavaPyType(np.ndarray, _I64, precision=25)
    reset_interval: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    reset_offset: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    num_samples: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    counts: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    values: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    max_spikes: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)

    def run_spk(self) -> None:
        a = self.a_in.recv()
        win = self.window()
        if win is None:  # before the first / after the last window: silent, nothing counted
            self.s_out.send(np.zeros(self.s_out.shape, dtype=np.int32))
            return
        n, k = win
        v = self.v
        if k == 0:
            v[...] = self.v_init
        v += a.astype(_I64, copy=False)
        v += self.bias
        m = int(self.max_spikes[0])
        s = np.empty(v.shape, dtype=spike_dtype(m))
        fire(v, int(self.vth[0]), (int(self.v_min[0]), int(self.v_max[0])), s, m)  # qcfs.semantics, not a copy
        total = int(np.count_nonzero(s))
        value = total if m == 1 else int(s.sum(dtype=np.int64))
        self.counts[n, k] = total if k == 0 else self.counts[n, k - 1] + total
        self.values[n, k] = value if k == 0 else self.values[n, k - 1] + value
        self.s_out.send(s.astype(np.int32))


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutModelFixed(_WindowMixin, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, _I64, precision=24)
    acc: np.ndarray = LavaPyType(np.ndarray, _I64, precision=64)
    bias: np.ndarray = LavaPyType(np.ndarray, _I64, precision=24)
    reset_interval: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    reset_offset: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    num_samples: np.ndarray = LavaPyType(np.ndarray, _I64, precision=32)
    logits: np.ndarray = LavaPyType(np.ndarray, _I64, precision=64)

    def run_spk(self) -> None:
        readout_step(self, self.a_in.recv())


def readout_step(model, a: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """The readout's step, shared with the netx readout (Lava forbids subclassing a decorated model)."""
    win = _WindowMixin.window(model)
    if win is None:
        return
    n, k = win
    if k == 0:
        model.acc[...] = 0
    model.acc += a.astype(_I64, copy=False)
    model.acc += model.bias
    model.logits[n, k, :] = model.acc.reshape(-1)


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayModelFixed(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    fifo: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(proc_params)
        self._q: deque[np.ndarray] | None = None

    def run_spk(self) -> None:
        if self._q is None:
            self._q = deque(np.array(x) for x in self.fifo)
        self._q.append(np.asarray(self.s_in.recv(), dtype=np.int32))
        self.s_out.send(self._q.popleft())
