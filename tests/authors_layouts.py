"""Our own re-creation of the module layouts of the QCFS authors' code (putshua/SNN_conversion_QCFS and the
older "up"-named repository), written from the parameter names and shapes their state dicts hold — only to
produce such state dicts and a reference forward pass for tests/test_authors_checkpoints.py.

The activation is the paper's QCFS, λ stored as a one-element parameter named `thresh` (newer code) or `up`
(older code); VGG convs carry a bias; pooling is average pooling (their training script swaps MaxPool for it).
"""

from __future__ import annotations

import torch
from torch import nn


class Act(nn.Module):
    """QCFS with λ as a [1] parameter under the given name."""

    def __init__(self, L: int, lam_name: str = "thresh", lam: float = 2.0) -> None:
        super().__init__()
        self.L, self.lam_name = L, lam_name
        self.register_parameter(lam_name, nn.Parameter(torch.tensor([lam])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = getattr(self, self.lam_name)
        return torch.floor(torch.clamp(x / lam, 0, 1) * self.L + 0.5) / self.L * lam


VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class AuthorsVGG16(nn.Module):
    """layer1..5: [Conv(bias) , BN, Act, Dropout] per conv, then a 2×2 pool; classifier Flatten, Linear, Act,
    Dropout, Linear, Act, Dropout, Linear. `bn=False` gives the vgg16_wobn layout [Conv, Act, Dropout]."""

    def __init__(self, L: int, lam_name: str = "thresh", classes: int = 10, bn: bool = True) -> None:
        super().__init__()
        cin = 3
        for i, widths in enumerate(VGG16_BLOCKS, start=1):
            mods: list[nn.Module] = []
            for w in widths:
                mods += [nn.Conv2d(cin, w, 3, padding=1)] + ([nn.BatchNorm2d(w)] if bn else []) + \
                        [Act(L, lam_name), nn.Dropout(0.0)]
                cin = w
            mods.append(nn.AvgPool2d(2, 2) if bn else nn.MaxPool2d(2, 2))
            setattr(self, f"layer{i}", nn.Sequential(*mods))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 4096), Act(L, lam_name), nn.Dropout(0.0),
                                        nn.Linear(4096, 4096), Act(L, lam_name), nn.Dropout(0.0),
                                        nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"layer{i}")(x)
        return self.classifier(x)


class Block(nn.Module):
    """residual_function [Conv, BN, Act, Conv, BN] + shortcut ([] or [Conv1×1, BN]), then `act` (or `relu`)."""

    def __init__(self, cin: int, cout: int, stride: int, L: int, lam_name: str, act_name: str) -> None:
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), Act(L, lam_name),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.act_name = act_name
        setattr(self, act_name, Act(L, lam_name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.act_name)(self.residual_function(x) + self.shortcut(x))


class AuthorsResNet(nn.Module):
    """conv1 [Conv, BN, Act]; conv2_x … stages of Blocks (first block of every later stage strides 2);
    adaptive average pool; fc."""

    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], L: int, lam_name: str = "thresh",
                 act_name: str = "act", classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                   Act(L, lam_name))
        cin = widths[0]
        self.stages = []
        for s, (n, w) in enumerate(zip(blocks, widths)):
            stage = nn.Sequential(*[Block(cin if i == 0 else w, w, 2 if (i == 0 and s > 0) else 1, L, lam_name,
                                          act_name) for i in range(n)])
            setattr(self, f"conv{s + 2}_x", stage)
            self.stages.append(f"conv{s + 2}_x")
            cin = w
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(self.avg_pool(x).flatten(1))


def authors_model(arch: str, L: int, lam_name: str = "thresh", act_name: str = "act") -> nn.Module:
    if arch == "authors-vgg16":
        return AuthorsVGG16(L, lam_name)
    if arch == "authors-resnet18":
        return AuthorsResNet((2, 2, 2, 2), (64, 128, 256, 512), L, lam_name, act_name)
    if arch == "authors-resnet34":
        return AuthorsResNet((3, 4, 6, 3), (64, 128, 256, 512), L, lam_name, act_name)
    if arch == "authors-resnet20":
        return AuthorsResNet((3, 3, 3), (16, 32, 64), L, lam_name, act_name)
    raise KeyError(arch)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, biases and λ, so the mapping of every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, 0.2, generator=g)
                mod.running_mean.normal_(0, 0.2, generator=g)
                mod.running_var.uniform_(0.5, 1.5, generator=g)
            elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                mod.bias.normal_(0, 0.1, generator=g)
            elif isinstance(mod, Act):
                getattr(mod, mod.lam_name).uniform_(0.5, 3.0, generator=g)
    return model.eval()
