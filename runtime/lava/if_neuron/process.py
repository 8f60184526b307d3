"""Lava Processes for QCFS integrate-and-fire layers, the accumulate-only readout and a spike delay line.

Why our own Processes: Lava's LIF has a leak, a 13-bit bias mantissa, a threshold shifted by 6 bits and
resets to 0; QCFS needs no leak, subtractive reset, 24-bit bias/threshold, v_init = θ/2 and a reset at every
sample window so samples run back to back (qcfs.semantics, pipelined discipline). Lava's model discovery
imports every .py in this folder, so it holds nothing else.

Window parameters shared by all three (global Lava steps t = 1, 2, ...):
    reset_interval  T (= T_max of the run)
    reset_offset    first step of sample 0's window, d + 1 for a layer at depth d
    num_samples     N; steps outside [reset_offset, reset_offset + N·T) are idle (no spikes, no counting)
Sample n's window is reset_offset + n·T ... reset_offset + n·T + T − 1; v ← v_init at its first step.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


def _window_vars(proc: AbstractProcess, reset_interval: int, reset_offset: int, num_samples: int) -> None:
    proc.reset_interval = Var(shape=(1,), init=int(reset_interval))
    proc.reset_offset = Var(shape=(1,), init=int(reset_offset))
    proc.num_samples = Var(shape=(1,), init=int(num_samples))


class IF(AbstractProcess):
    """Integer IF population: v ← sat(v + a_in + bias); s = v ≥ vth; v ← v − vth·s. With max_spikes m > 1 the
    output port carries graded spikes s = clip(floor(v/vth), 0, m) (qcfs.semantics), read by synapses with
    num_message_bits > 0.

    `counts[n, k]` = spikes (messages) of the whole population for sample n within its first k + 1 steps, so
    the host reads N·T numbers per layer instead of per-neuron state; `values[n, k]` the same for the summed
    payloads (equal to counts when m = 1).
    """

    def __init__(self, *, shape: tuple[int, ...], vth: int, v_init: np.ndarray | int, bias: np.ndarray,
                 reset_interval: int, reset_offset: int, num_samples: int,
                 v_min: int, v_max: int, max_spikes: int = 1, name: str | None = None) -> None:
        super().__init__(shape=shape, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        v0 = np.broadcast_to(np.asarray(v_init, dtype=np.int64), shape).copy()  # per neuron (calibration)
        self.v = Var(shape=shape, init=v0)
        self.vth = Var(shape=(1,), init=int(vth))
        self.v_init = Var(shape=shape, init=v0)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, dtype=np.int64), shape).copy())
        self.v_min = Var(shape=(1,), init=int(v_min))
        self.v_max = Var(shape=(1,), init=int(v_max))
        _window_vars(self, reset_interval, reset_offset, num_samples)
        self.counts = Var(shape=(num_samples, reset_interval), init=0)
        self.values = Var(shape=(num_samples, reset_interval), init=0)
        self.max_spikes = Var(shape=(1,), init=int(max_spikes))


class Readout(AbstractProcess):
    """Accumulate-only output layer: acc ← acc + a_in + bias within each sample window.

    `logits[n, k, :]` = accumulated current of sample n after its first k + 1 steps (flattened).
    """

    def __init__(self, *, shape: tuple[int, ...], bias: np.ndarray, reset_interval: int,
                 reset_offset: int, num_samples: int, name: str | None = None) -> None:
        super().__init__(shape=shape, name=name)
        self.a_in = InPort(shape=shape)
        self.acc = Var(shape=shape, init=0)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, dtype=np.int64), shape).copy())
        _window_vars(self, reset_interval, reset_offset, num_samples)
        self.logits = Var(shape=(num_samples, reset_interval, int(np.prod(shape))), init=0)


class Delay(AbstractProcess):
    """Delays a spike/graded stream by `delay` ≥ 1 steps (residual shortcuts, IntNet Synapse.delay).

    Why: Lava's Dense/Conv add exactly one step and only DelayDense has per-synapse delays (no conv, and a
    dense matrix for a shortcut would be huge); a FIFO in front of any synapse is the simplest exact fix.
    """

    def __init__(self, *, shape: tuple[int, ...], delay: int, name: str | None = None) -> None:
        super().__init__(shape=shape, delay=delay, name=name)
        if delay < 1:
            raise ValueError("Delay needs delay >= 1")
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.fifo = Var(shape=(delay,) + tuple(shape), init=0)
