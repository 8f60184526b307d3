"""The `fast` training recipe: paper-level CIFAR-10 in about ten epochs, so a CPU can train a QCFS network.

The paper's recipe (SGD, cosine, 300 epochs) needs ~22 h for resnet20 on two CPU cores. The fast-training
literature (Page, "How to train your ResNet", 2018; Jordan, airbench, 2024) reaches ~94 % in ~10 epochs with a
handful of techniques; this module holds our own implementation of the ones that survive conversion:

* a first convolution fixed to the whitening basis of the training images' patches (`init_whitening`): the
  input arrives decorrelated, so the first epochs are not spent learning that;
* Nesterov SGD with a per-step linear warm-up then linear decay to zero (`fast_lr`), large batches, and a
  weight decay strong enough to keep BatchNorm-invariant weights small (their effective step grows with it);
* fast BatchNorm statistics (`prepare_model`);
* label smoothing (in the loss), flip + small translation (qcfs.frontend.augment);
* an exponential moving average of the weights (`WeightEMA`): what is evaluated, saved and exported.

What conversion needs is kept: average pooling only, QCFS everywhere (λ data-initialised), no test-time
augmentation, nothing the integer IF network cannot run (the whitening conv is an ordinary conv with bias).

Tried and dropped (2026-12-05, CIFAR-10, first epochs of full 18-epoch runs, seed 0):
* airbench's identity ("dirac") init of the 3×3 convs with BatchNorm scales fixed at 1 and no decay on λ: the
  identity path hands each layer the previous QCFS's sparse, quantized output, whose standardized tail put the
  data-initialised λ at 6–9 (quantization step ≈ 2σ), and without decay λ did not come down (its gradient is
  only the clipped fraction); stopped after 2 epochs (training accuracy 56 % vs 61 % before);
* airbench's 64× learning rate on BatchNorm biases (with trained BatchNorm scales and QCFS, beside the lr,
  momentum and decay below): training accuracy fell from 66.8 % (epoch 3) to 55.1 % (epoch 5) at the peak
  learning rate; stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FastHyper:
    """The fast recipe's settings, fixed before training the shipped model (taken from the published fast
    schedules, not tuned on the test set); qcfs-train's --lr/--batch/--wd/--epochs override them."""

    epochs: int = 10
    # Airbench's per-example step (lr 11.5 per 1024 examples at momentum 0.85, decay 0.0153 per 1024) rewritten
    # for torch's coupled SGD at batch 512 and a mean-reduced loss: lr 0.75, decay/step lr·wd = 1e-3 at the peak
    lr: float = 0.75  # peak, per mean-reduced loss
    batch: int = 512
    wd: float = 1.33e-3
    momentum: float = 0.85
    bn_momentum: float = 0.4  # torch's convention: running statistics follow the fast-moving weights
    whiten_bias_epochs: int = 3  # the whitening conv's bias trains this many epochs, then stays fixed
    warmup: float = 0.2  # fraction of all steps spent rising from lr/10 to lr
    label_smoothing: float = 0.2
    ema_decay: float = 0.99  # per step, ramped up over the first steps (WeightEMA)
    translate: int = 2  # pixels of random translation (pad + crop)
    head_scale: float = 0.125  # the classifier trains as if its output were multiplied by this (param_groups)
    whiten_samples: int = 5000  # training images whose 2×2 patches give the whitening basis
    whiten_eps: float = 5e-4


FAST = FastHyper()


def fast_lr(base: float, progress: float, warmup: float = FAST.warmup) -> float:
    """Learning rate at `progress` ∈ [0, 1] of all steps: linear from base/10 to base over the warm-up, then
    linear to 0 at the end. Stateless in the step, so a resumed run follows the same schedule."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    return base * (1.0 - progress) / (1.0 - warmup)


@torch.no_grad()
def whitening_basis(images: torch.Tensor, kernel: int, eps: float = FAST.whiten_eps) -> torch.Tensor:
    """Filters [2·D, C, k, k] (D = C·k·k) that map each k×k patch onto its whitened coordinates, both signs.

    The patch covariance Σ = E[p pᵀ] (patches of the normalized images) has eigenbasis V, eigenvalues e;
    filter i is v_i / sqrt(e_i + eps), so the D outputs are uncorrelated with unit variance (eps damps the
    smallest directions). Each filter appears with + and − sign: the QCFS after it passes positive values
    only, and the pair keeps both halves of every direction.
    """
    c = images.shape[1]
    patches = F.unfold(images.double(), kernel).transpose(1, 2).reshape(-1, c * kernel * kernel)  # [P, D]
    cov = patches.T @ patches / patches.shape[0]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order], evecs[:, order]
    filters = (evecs / torch.sqrt(evals + eps)).T.reshape(-1, c, kernel, kernel)
    return torch.cat([filters, -filters]).float()


@torch.no_grad()
def init_whitening(model: nn.Module, images: torch.Tensor, eps: float = FAST.whiten_eps) -> bool:
    """Set `model.whiten` (a conv without padding) to the whitening basis of `images`; False if the model has
    no whitening layer (the recipe then trains it as it is)."""
    conv = getattr(model, "whiten", None)
    if not isinstance(conv, nn.Conv2d):
        return False
    basis = whitening_basis(images, conv.kernel_size[0], eps)
    if basis.shape != conv.weight.shape:
        raise ValueError(f"whitening basis {tuple(basis.shape)} does not fit {tuple(conv.weight.shape)}")
    conv.weight.copy_(basis.to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return True


def prepare_model(model: nn.Module) -> None:
    """BatchNorm running statistics follow the fast-moving weights (FAST.bn_momentum): with ~100 steps per
    epoch and an averaged model, torch's default 0.1 lags the weights that are evaluated."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = FAST.bn_momentum


def param_groups(model: nn.Module, wd: float, head_scale: float = FAST.head_scale) -> list[dict]:
    """Optimizer groups: the last Linear (the classifier) trained as if its logits were scaled by s = head_scale.

    Fast schedules scale the logits by a constant (Page's ResNet: 0.125) so the classifier does not learn 64×
    faster than the rest. A Mul node would reach the converter, so the same training dynamics are had with a
    plain Linear: with w = s·u and SGD on u (lr η, decay λ), w moves by η·s²·∇w and shrinks by η·λ per step,
    which is SGD on w with lr η·s² and decay λ/s², from an initialisation s times smaller. The whitening conv's
    bias trains for FAST.whiten_bias_epochs epochs only (its group's "until_epoch"). Each group carries its
    `lr_scale` for the schedule. Only parameters that require gradients are included.
    """
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = heads[-1] if heads else None
    head_ids = set() if head is None else {id(p) for p in head.parameters()}
    if head is not None:
        with torch.no_grad():
            for p in head.parameters():
                p.mul_(head_scale)
    whiten = getattr(model, "whiten", None)
    whiten_ids = {id(whiten.bias)} if isinstance(whiten, nn.Conv2d) and whiten.bias is not None else set()
    free = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": [p for p in free if id(p) not in whiten_ids], "weight_decay": wd, "lr_scale": 1.0},
              {"params": [p for p in free if id(p) in whiten_ids], "weight_decay": wd, "lr_scale": 1.0,
               "until_epoch": FAST.whiten_bias_epochs}]
    groups = [g for g in groups if g["params"]]
    if head is not None:
        groups.append({"params": [p for p in head.parameters() if p.requires_grad],
                       "weight_decay": wd / head_scale**2, "lr_scale": head_scale**2})
    return groups


class WeightEMA:
    """Exponential moving average of a model's floating-point state (weights, λ, BN statistics); integer
    buffers are copied. The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates so the
    average does not remember the random initialisation."""

    def __init__(self, model: nn.Module, decay: float = FAST.ema_decay) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.state = {k: v.detach().clone() for k, v in state.items()}
        self.updates = updates

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.state)
