"""Batched data augmentation on tensors (CPU or GPU-resident): no torchvision, no per-image Python loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random `pad`-pixel translation (zero-padded crop, as torchvision RandomCrop(padding)) and a random
    horizontal flip, for a batch [N, C, H, W]. Randomness comes from `generator` (on x's device)."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])  # [N, H]
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])  # [N, W]
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()
