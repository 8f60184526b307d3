"""How far apart two correct float32 evaluations of the same network may put a QCFS input, and so which floor
decisions may legitimately differ between torch and onnxruntime (or between two CPU kernel sets).

Why: a dot product of n float32 terms, summed in any order (blocked, vectorised, fused multiply-add), is within
γ_n·Σ|w_i·a_i| of the exact value, γ_n = n·u / (1 − n·u), u = 2⁻²⁴ (Higham, Accuracy and Stability of
Numerical Algorithms, §3.1). Errors already in the inputs add their γ_k: the k's of a chain add up. Two
evaluations are then within 2·γ_k·A of each other, A the sum of magnitudes (`mag` below). A QCFS floor
decision at t = clip(z/λ, 0, 1)·L + φ may differ between them only where t lies within that distance (scaled by
L/λ, plus the three roundings of the QCFS arithmetic itself) of an integer k: such a flip is *explained by
rounding*. Any other difference is a real disagreement of the export.

The bound follows a tensor through Conv/Linear (A = |W|·|a| + |b|), eval-mode BatchNorm (A·|s| + |t|),
average and max pooling, Flatten, Dropout and Identity; a QCFS input reached otherwise (a residual sum, a
functional op in forward()) has no bound, and its flips count as unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

U32 = 2.0 ** -24  # unit roundoff of float32 (round to nearest)


def gamma(k: float) -> float:
    """γ_k = k·u/(1 − k·u): the relative error bound of k float32 roundings in a row."""
    return k * U32 / (1.0 - k * U32)


@dataclass
class Bound:
    """Per element: magnitude sum A (same shape as the tensor) and the number of roundings k behind it."""

    mag: torch.Tensor
    ops: float


class RoundingTracker:
    """Forward hooks that carry a `Bound` along each tracked tensor and record, for every QCFS module, its input
    z and the bound on it. Use as a context manager around the torch forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._bounds: dict[int, tuple[torch.Tensor, Bound]] = {}  # id(tensor) -> (tensor kept alive, bound)
        self.inputs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # QCFS name -> (z, delta_t or None)
        self._handles: list = []  # type: ignore[type-arg]

    def __enter__(self) -> RoundingTracker:
        from qcfs.frontend.qcfs_act import QCFS

        for name, mod in self.model.named_modules():
            if isinstance(mod, QCFS):
                self._handles.append(mod.register_forward_hook(self._qcfs_hook(name)))
            elif isinstance(mod, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d,
                                  nn.Flatten, nn.Dropout, nn.Identity)):
                self._handles.append(mod.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._bounds.clear()

    def new_batch(self) -> None:
        self._bounds.clear()
        self.inputs.clear()

    def _known(self, x: torch.Tensor) -> Bound | None:
        hit = self._bounds.get(id(x))
        return hit[1] if hit is not None and hit[0] is x else None

    def _input_bound(self, x: torch.Tensor) -> Bound:
        """A tracked tensor's bound; any other input (the image, a residual sum) is taken as exact."""
        return self._known(x) or Bound(x.detach().abs().double(), 0.0)

    def _hook(self, mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inp[0]
        if isinstance(mod, (nn.Flatten, nn.Dropout, nn.Identity)):  # selection/reshape: no rounding
            b = self._known(x)
            if b is not None:
                self._keep(out, Bound(b.mag.reshape(out.shape), b.ops))
            return
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            b = self._input_bound(x)
            w = mod.weight.detach().double().abs()
            if isinstance(mod, nn.Conv2d):
                mag = F.conv2d(b.mag, w, None, mod.stride, mod.padding, mod.dilation, mod.groups)
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            else:
                mag = F.linear(b.mag, w)
                fan_in = w.shape[1]
            if mod.bias is not None:
                shape = (1, -1) + (1,) * (mag.dim() - 2)
                mag = mag + mod.bias.detach().double().abs().reshape(shape)
                fan_in += 1
            self._keep(out, Bound(mag, b.ops + fan_in))
            return
        b = self._known(x)
        if b is None:
            return
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if mod.training or mod.running_var is None:
                return
            s = (mod.weight.detach().double() if mod.weight is not None else 1.0) / torch.sqrt(
                mod.running_var.double() + mod.eps)
            t = (mod.bias.detach().double() if mod.bias is not None else 0.0) - mod.running_mean.double() * s
            shape = (1, -1) + (1,) * (b.mag.dim() - 2)
            # y = z·s + t: two roundings, and a third where the exporter or onnxruntime folds s into W
            self._keep(out, Bound(b.mag * s.abs().reshape(shape) + t.abs().reshape(shape), b.ops + 3))
        elif isinstance(mod, nn.AvgPool2d):  # a sum of k·k terms and a division
            kh, kw = _pair(mod.kernel_size)
            k = kh * kw
            mag = F.avg_pool2d(b.mag, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                               mod.count_include_pad, mod.divisor_override)
            self._keep(out, Bound(mag, b.ops + k + 1))
        elif isinstance(mod, nn.MaxPool2d):  # the window's largest bound covers the element it selects
            mag = F.max_pool2d(b.mag, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode)
            self._keep(out, Bound(mag, b.ops))

    def _keep(self, out: torch.Tensor, bound: Bound) -> None:
        self._bounds[id(out)] = (out, bound)

    def _qcfs_hook(self, name: str):  # type: ignore[no-untyped-def]
        def fn(mod, inp, out):  # type: ignore[no-untyped-def]
            x = inp[0]
            z = x.detach().double().numpy()
            b = self._known(x)
            delta = None
            if b is not None:
                scale = mod.L / float(mod.lam)
                # z/λ, ·L and +φ: three more roundings, on each side
                delta = 2.0 * gamma(b.ops + 3) * (b.mag.numpy() * scale + abs(mod.phi))
            self.inputs[name] = (z, delta)
            # the QCFS output (level·λ/L) is computed identically by both sides once the levels agree
            self._keep(out, Bound(out.detach().abs().double(), 1.0))
        return fn


def explained(z: np.ndarray, delta: np.ndarray | None, lam: float, L: int, phi: float, level_a: np.ndarray,
              level_b: np.ndarray) -> np.ndarray:
    """Per element where level_a != level_b: True if the two levels are adjacent and t = clip(z/λ,0,1)·L + φ
    lies within `delta` of the integer between them (a floor decision within float rounding)."""
    if delta is None:
        return np.zeros(level_a.shape, dtype=bool)
    t = np.clip(z / lam, 0.0, 1.0) * L + phi
    boundary = np.maximum(level_a, level_b)
    return (np.abs(level_a - level_b) == 1) & (np.abs(t - boundary) <= delta)


def near_boundary(z: np.ndarray, delta: np.ndarray | None, lam: float, L: int, phi: float) -> int:
    """How many elements have t within `delta` of a floor boundary 1..L: the most flips rounding can cause."""
    if delta is None:
        return 0
    t = np.clip(z / lam, 0.0, 1.0) * L + phi
    k = np.clip(np.rint(t), 1, L)
    return int((np.abs(t - k) <= delta).sum())
