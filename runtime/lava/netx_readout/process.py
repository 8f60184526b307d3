"""The qcfs readout as a netx block neuron: Readout plus the s_out port every netx block connects.

Why a Process of its own: netx blocks wire `neuron.s_out` to the block's `out` (and the last block's to the
Network's), and our Readout has no spikes. s_out stays silent (zeros); the logits are read from `logits` as
for the Readout. Lava's model discovery imports every .py in this folder, so it holds nothing else.
"""

from __future__ import annotations

from lava.magma.core.process.ports.ports import OutPort

from qcfs.runtime.lava.if_neuron.process import Readout


class NetxReadout(Readout):
    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.s_out = OutPort(shape=self.a_in.shape)
