"""Data-based initial clip levels: λ of every QCFS layer set to a high percentile of its input on a batch.

Why: the paper initialises every λ at 8. On a small dataset (few optimizer steps) λ barely moves from there,
and an SNN whose thresholds sit far above the activations is silent for the first steps (the digits rows of
BENCHMARKS.md are at chance at T = 1). Starting λ at the activations' robust maximum (the classic
"99.9th percentile" normalization of ANN-SNN conversion) removes that, and training still adapts λ.
"""

from __future__ import annotations

import torch
from torch import nn

from qcfs.frontend.qcfs_act import QCFS


@torch.no_grad()
def calibrate_lambdas(model: nn.Module, x: torch.Tensor, percentile: float = 99.9) -> dict[str, float]:
    """Set each QCFS λ, in forward order, from its positive inputs on batch `x`; returns the new values.

    A forward-pre hook sets λ before the layer runs, so later layers see the already-calibrated outputs.
    The batch goes through in training mode (BatchNorm normalizes with the batch's statistics).
    """
    chosen: dict[str, float] = {}
    handles = []

    def make_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(module: QCFS, args: tuple[torch.Tensor, ...]) -> None:
            pos = args[0].detach().float().flatten()
            pos = pos[pos > 0]
            if pos.numel() == 0:
                return  # a layer that never activates keeps its λ
            if pos.numel() > 1_000_000:  # torch.quantile's input limit; a uniform subsample is enough
                pos = pos[torch.randperm(pos.numel(), device=pos.device)[:1_000_000]]
            value = float(torch.quantile(pos, percentile / 100.0))
            module.lam.fill_(max(value, 1e-3))
            chosen[name] = value

        return hook

    for name, module in model.named_modules():
        if isinstance(module, QCFS):
            handles.append(module.register_forward_pre_hook(make_hook(name)))
    # BatchNorm with batch statistics, as the first training steps will see them; its running statistics are
    # restored afterwards so calibration leaves no trace but λ. Dropout is off.
    was_training = model.training
    bn_state = {k: v.clone() for k, v in model.state_dict().items()
                if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.load_state_dict(bn_state, strict=False)
        model.train(was_training)
    return chosen
