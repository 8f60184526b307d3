"""Switch QCFS modules to a torch custom op while exporting to ONNX (filled in by qcfs.exporters.onnx_export).

Kept separate so training code never imports the exporter; the default is "not exporting"."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

_OP: Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor] | None = None


def exporting() -> bool:
    return _OP is not None


def qcfs_op(x: torch.Tensor, lam: torch.Tensor, L: int, phi: float) -> torch.Tensor:
    assert _OP is not None
    return _OP(x, lam, L, phi)


@contextlib.contextmanager
def use_op(op: Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor]) -> Iterator[None]:
    """Within the block, QCFS.forward calls `op` (e.g. a torch.library custom op the exporter translates)."""
    global _OP
    prev, _OP = _OP, op
    try:
        yield
    finally:
        _OP = prev
