"""Model zoo: the CIFAR variants of the QCFS paper's code, every ReLU a QCFS, every MaxPool an AvgPool
(conversion needs linear pooling), plus a small `cnn` for 8×8 and 28×28 grayscale inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from torch import nn

from qcfs.frontend.qcfs_act import QCFS


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a zoo model; stored in checkpoints and ONNX metadata."""

    arch: str
    in_channels: int
    num_classes: int
    image_size: int
    L: int = 4
    lam_init: float = 8.0
    phi: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_act(cin: int, cout: int, cfg: ModelConfig, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        QCFS(cfg.L, cfg.lam_init, cfg.phi),
    ]


class CNN(nn.Module):
    """Small CNN: 32-64(-64) channels with 2×2 average pooling, 128-unit hidden layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers = _conv_bn_act(cfg.in_channels, 32, cfg) + _conv_bn_act(32, 64, cfg) + [nn.AvgPool2d(2)]
        size = cfg.image_size // 2
        if cfg.image_size >= 16:
            layers += _conv_bn_act(64, 64, cfg) + [nn.AvgPool2d(2)]
            size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * size * size, 128),
            QCFS(cfg.L, cfg.lam_init, cfg.phi),
            nn.Linear(128, cfg.num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


VGG16_CFG = (64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P")


class VGG16(nn.Module):
    """VGG-16 for 32×32 inputs: 13 conv3×3+BN+QCFS, AvgPool 2×2, classifier 512→4096→4096→classes."""

    def __init__(self, cfg: ModelConfig, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        size = cfg.image_size
        for item in VGG16_CFG:
            if item == "P":
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += _conv_bn_act(cin, int(item), cfg)
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * size * size, 4096),
            QCFS(cfg.L, cfg.lam_init, cfg.phi),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            QCFS(cfg.L, cfg.lam_init, cfg.phi),
            nn.Dropout(dropout),
            nn.Linear(4096, cfg.num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """conv3×3-BN-QCFS-conv3×3-BN, plus shortcut (identity, or 1×1 conv+BN where shapes change), then QCFS."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = QCFS(cfg.L, cfg.lam_init, cfg.phi)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = QCFS(cfg.L, cfg.lam_init, cfg.phi)

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with basic blocks; global average pooling before the classifier."""

    def __init__(self, cfg: ModelConfig, widths: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_act(cfg.in_channels, widths[0], cfg))
        stages: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stages.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, cfg))
                cin = w
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


ZOO: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "cnn": CNN,
    "vgg16": VGG16,
    "resnet18": lambda c: ResNet(c, (64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": lambda c: ResNet(c, (64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet20": lambda c: ResNet(c, (16, 32, 64), (3, 3, 3)),
}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch not in ZOO:
        raise ValueError(f"unknown model {cfg.arch!r}; choose one of {', '.join(ZOO)}")
    return ZOO[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
