"""Exact, fast fixed-point ProcessModel for Lava's stock Conv Process (selected via exception_proc_model_map).

Why hand-written: lava-nc 0.10.0's PyConvModelFixed loops scipy over every (C_out, C_in) pair (tens of
seconds per step for VGG-16), ignores weight_exp, wraps sums at 24 bits and only knows symmetric padding.
This model keeps Lava's Conv Process, its (W, H, C) layout and its TRUE-convolution kernel (C_out, kw, kh,
C_in), and computes the same sums as one im2col matrix product per group.

Exactness: every partial sum is an integer bounded by B = max|x| · max_o Σ|w_o|. If B < 2^24 the product
runs in float32 (every partial sum representable, any summation order is exact), if B < 2^53 in float64,
else in int64. The input bound comes from `num_message_bits` (0: spikes in {0, 1}; m: |x| < 2^m).
Sums are not wrapped at 24 bits (qcfs.semantics has no wrap; the exporter keeps B < 2^23, where the stock
model's wrap is a no-op).
Asymmetric padding (top, left, bottom, right) comes from proc_params["qcfs_padding"] when present.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv


def exact_dtype(bound: float) -> type:
    """The cheapest matmul dtype whose every partial sum up to `bound` is an exact integer."""
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    return np.int64


class Im2colPlan:
    """Precomputed gather indices and weight matrices for one conv; numpy only, testable without Lava.

    weight_whc: Lava layout (C_out, kw, kh, C_in/groups), flipped (true convolution).
    """

    def __init__(self, weight_whc: np.ndarray, input_whc: tuple[int, int, int],
                 stride_wh: tuple[int, int], padding_tlbr: tuple[int, int, int, int], groups: int,
                 max_abs_input: int, weight_exp: int = 0) -> None:
        w = np.asarray(weight_whc, dtype=np.int64)[:, ::-1, ::-1, :].transpose(0, 3, 2, 1)  # (Co, Ci/g, kh, kw)
        co, cig, kh, kw = w.shape
        W, H, C = input_whc
        pt, pl, pb, pr = padding_tlbr
        sw, sh = stride_wh
        self.groups, self.weight_exp = groups, int(weight_exp)
        self.Hp, self.Wp = H + pt + pb, W + pl + pr
        self.Ho, self.Wo = (self.Hp - kh) // sh + 1, (self.Wp - kw) // sw + 1
        self.pads = ((0, 0), (pt, pb), (pl, pr))
        bound = float(max_abs_input) * float(np.abs(w).reshape(co, -1).sum(axis=1).max(initial=0))
        self.dtype = exact_dtype(bound)
        # gather index into the padded (C/g, Hp, Wp) block of one group: rows (ci, i, j), cols (ho, wo)
        ci, i, j = np.meshgrid(np.arange(cig), np.arange(kh), np.arange(kw), indexing="ij")
        ho, wo = np.meshgrid(np.arange(self.Ho) * sh, np.arange(self.Wo) * sw, indexing="ij")
        rows = (ci * self.Hp * self.Wp + i * self.Wp + j).reshape(-1, 1)
        self.index = (rows + (ho * self.Wp + wo).reshape(1, -1)).astype(np.intp)
        cog = co // groups
        self.wmats = [w[g * cog:(g + 1) * cog].reshape(cog, -1).astype(self.dtype) for g in range(groups)]
        self.cig, self.co = cig, co

    def __call__(self, x_whc: np.ndarray) -> np.ndarray:
        """Conv of one (W, H, C) input; returns int64 (Wo, Ho, C_out)."""
        x = np.pad(np.asarray(x_whc).transpose(2, 1, 0).astype(self.dtype, copy=False), self.pads)
        x = x.reshape(self.groups, -1)
        outs = [wm @ np.take(x[g], self.index) for g, wm in enumerate(self.wmats)]
        out = (outs[0] if self.groups == 1 else np.concatenate(outs, axis=0)).reshape(self.co, self.Ho, self.Wo)
        out = out.astype(np.int64).transpose(2, 1, 0)
        if self.weight_exp > 0:
            out = np.left_shift(out, self.weight_exp)
        elif self.weight_exp < 0:
            out = np.right_shift(out, -self.weight_exp)
        return out


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvIm2colModelFixed(PyLoihiProcessModel):
    """Drop-in fixed-point model for lava.proc.conv.process.Conv (same Vars and ports)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=5)

    def __init__(self, proc_params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(proc_params)
        self._plan: Im2colPlan | None = None

    def _make_plan(self) -> Im2colPlan:
        if np.any(np.asarray(self.dilation) != 1):
            raise ValueError("PyConvIm2colModelFixed supports dilation 1 only")
        px, py = (int(p) for p in self.padding)
        tlbr = self.proc_params.get("qcfs_padding", None) or (py, px, py, px)
        bits = int(self.num_message_bits[0])
        return Im2colPlan(self.weight, tuple(self.s_in.shape), tuple(int(s) for s in self.stride),
                          tuple(int(p) for p in tlbr), int(self.groups[0]),
                          max_abs_input=1 if bits == 0 else 1 << bits, weight_exp=int(self.weight_exp[0]))

    def run_spk(self) -> None:
        if self._plan is None:
            self._plan = self._make_plan()
        self.a_out.send(self.a_buf)  # one step of synaptic delay, as every Lava synapse
        self.a_buf = self._plan(self.s_in.recv())
