"""The QCFS activation (Bu et al., ICLR 2022) as a torch module.

h(x) = λ · clip(floor(x·L/λ + φ) / L, 0, 1). Written, as in the authors' code, as
clamp(x/λ, 0, 1) → floor(·L + φ)/L → ·λ: the same values, and autograd then gives λ its gradient
(1 above the clip level, x-dependent inside) while floor passes gradients straight through (STE).
"""

from __future__ import annotations

import torch
from torch import nn

from qcfs.semantics import PHI_DEFAULT


class _FloorSTE(torch.autograd.Function):
    """floor() forward, identity backward: the straight-through estimator of the paper."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def qcfs_reference(x: torch.Tensor, lam: torch.Tensor, L: int, phi: float = PHI_DEFAULT) -> torch.Tensor:
    """Differentiable QCFS; computed in float32 even under autocast (floor decisions need the precision)."""
    out_dtype = x.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf, lf = x.float(), lam.float()
        y = torch.clamp(xf / lf, 0.0, 1.0)
        y = _FloorSTE.apply(y * L + phi) / L
        return (y * lf).to(out_dtype)


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with a trainable clip level λ (one scalar per layer)."""

    def __init__(self, L: int = 4, lam_init: float = 8.0, phi: float = PHI_DEFAULT) -> None:
        super().__init__()
        if int(L) != L or L < 1:
            raise ValueError(f"L must be a positive integer, got {L}")
        if not lam_init > 0:
            raise ValueError(f"initial λ must be positive, got {lam_init}")
        self.L = int(L)
        self.phi = float(phi)
        self.lam = nn.Parameter(torch.tensor(float(lam_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from qcfs.frontend import export_hooks  # the ONNX exporter swaps in a custom op while exporting

        if export_hooks.exporting():
            return export_hooks.qcfs_op(x, self.lam, self.L, self.phi)
        return qcfs_reference(x, self.lam, self.L, self.phi)

    def extra_repr(self) -> str:
        return f"L={self.L}, phi={self.phi}, lam={float(self.lam.detach()):.4g}"
