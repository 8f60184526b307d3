"""Model zoo: the networks of the QCFS paper's code (putshua/SNN_conversion_QCFS, Models/VGG.py and
Models/ResNet.py; its successor putshua/ANN_SNN_QCFS defines them the same way), every ReLU a QCFS, every
MaxPool an AvgPool (conversion needs linear pooling; the authors' ImageNet training does the same swap with
replace_maxpool2d_by_avgpool2d), plus a small `cnn` for 8×8 and 28×28 grayscale inputs.

ImageNet (image_size 224, 1000 classes) follows the authors' ImageNet definitions, which are the CIFAR ones
at a larger input:
  * vgg16: five stages of 3×3 convs (64-64, 128-128, 256×3, 512×3, 512×3), each followed by a 2×2 AvgPool,
    so 224 ends at 512·7·7 = 25088 features; classifier 25088 → 4096 → 4096 → classes with QCFS and
    Dropout after both hidden layers (the authors' `num_classes == 1000` branch; at 32 it is 512 → 4096).
  * resnet34: the authors' ResNet class for ImageNet too: stem conv3×3 stride 1 (64) + BN + QCFS, no 7×7
    stride-2 conv and no stem max-pool ("we use a different inputsize than the original paper", their
    comment), stages of 3-4-6-3 basic blocks at 64-128-256-512 with strides 1-2-2-2, global average pool,
    fc. At 224 the last stage is 28×28 (not He et al.'s 7×7), so it costs ~16× the MACs of torchvision's
    ResNet-34 (56.8 G vs 3.6 G MAC per image); that is what the paper's numbers were obtained with.
Where ours differs from theirs (no effect on what the networks compute):
  * VGG convs have no bias (the authors' have one, which the BN after it absorbs; the shipped CIFAR
    checkpoints have none, so 32×32 stays as it was; frontend/authors.py folds the authors' bias into BN).
  * The authors put a Dropout (p = 0 in their vgg16()) after every conv; identity at inference, left out.
  * BN is the ReLU's input, QCFS (with its λ) replaces ReLU, as everywhere in the zoo.
Any image_size works for the ResNets (global pooling); VGG-16 needs a multiple of 32 (five 2×2 pools).
`width_div` (constructor only, not in ModelConfig or checkpoints) divides every channel and hidden width:
tests run the 224×224 code paths on a narrow copy that converts and simulates in seconds.
"""

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
    """VGG-16: 13 conv3×3+BN+QCFS, AvgPool 2×2, classifier 512·(S/32)²→4096→4096→classes (S = image size:
    512 features at 32, 25088 at 224)."""

    def __init__(self, cfg: ModelConfig, dropout: float = 0.5, width_div: int = 1) -> None:
        super().__init__()
        if cfg.image_size < 32 or cfg.image_size % 32:
            raise ValueError(f"vgg16 needs an image size that is a multiple of 32 (five 2×2 pools), "
                             f"got {cfg.image_size}")
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        size = cfg.image_size
        for item in VGG16_CFG:
            if item == "P":
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += _conv_bn_act(cin, int(item) // width_div, cfg)
                cin = int(item) // width_div
        hidden = 4096 // width_div
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * size * size, hidden),
            QCFS(cfg.L, cfg.lam_init, cfg.phi),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            QCFS(cfg.L, cfg.lam_init, cfg.phi),
            nn.Dropout(dropout),
            nn.Linear(hidden, cfg.num_classes),
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
    """The authors' ResNet with basic blocks (CIFAR and ImageNet alike): 3×3 stride-1 stem, no max-pool,
    global average pooling before the classifier."""

    def __init__(self, cfg: ModelConfig, widths: tuple[int, ...], blocks: tuple[int, ...], width_div: int = 1) -> None:
        super().__init__()
        widths = tuple(w // width_div for w in widths)
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


class CifarNet(nn.Module):
    """`cifarnet`: a small fast-training VGG-like net for 32×32 inputs, shaped after the fast CIFAR-10
    training literature (Page's "How to train your ResNet", Jordan's airbench) and adapted to conversion:

      whiten: conv 2×2 (3 → 24, no padding, bias; weights fixed to the training patches' whitening basis,
              set by qcfs.frontend.fast_recipe.init_whitening) → QCFS                          31×31
      three blocks of widths 64, 256, 256: conv 3×3 → AvgPool 2×2 → BN → QCFS → conv 3×3 → BN → QCFS
                                                                                      15 → 7 → 3
      head:   global average pool → linear 256 → classes (no bias)

    Every pooling is an average (the IF network composes it into the synapse: conv then pool is one strided
    conv), every nonlinearity a QCFS, so the whole net converts. 0.12 G MAC per image.
    """

    WIDTHS = (64, 256, 256)
    WHITEN_KERNEL = 2

    def __init__(self, cfg: ModelConfig, width_div: int = 1) -> None:
        super().__init__()
        k = self.WHITEN_KERNEL
        whiten_out = 2 * cfg.in_channels * k * k  # each whitening direction with both signs: QCFS keeps only > 0
        self.whiten = nn.Conv2d(cfg.in_channels, whiten_out, k, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # a fixed linear map of the input; its bias trains
        self.whiten_act = QCFS(cfg.L, cfg.lam_init, cfg.phi)
        blocks: list[nn.Module] = []
        cin = whiten_out
        for w in self.WIDTHS:
            w //= width_div
            blocks += [
                nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.AvgPool2d(2), nn.BatchNorm2d(w),
                QCFS(cfg.L, cfg.lam_init, cfg.phi),
                *_conv_bn_act(w, w, cfg),
            ]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes, bias=False)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.whiten_act(self.whiten(x))
        return self.fc(self.pool(self.blocks(x)).flatten(1))


RESNETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {  # stage widths, blocks per stage
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": ((64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet20": ((16, 32, 64), (3, 3, 3)),
}

ZOO: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "cnn": CNN,
    "vgg16": VGG16,
    "cifarnet": CifarNet,
    **{name: (lambda c, spec=spec: ResNet(c, *spec)) for name, spec in RESNETS.items()},
}


def build_model(cfg: ModelConfig, width_div: int = 1) -> nn.Module:
    """The zoo model of `cfg`; width_div > 1 (vgg16 and the ResNets only) builds a narrow test copy."""
    if cfg.arch not in ZOO:
        raise ValueError(f"unknown model {cfg.arch!r}; choose one of {', '.join(ZOO)}")
    if width_div == 1:
        return ZOO[cfg.arch](cfg)
    if cfg.arch == "vgg16":
        return VGG16(cfg, width_div=width_div)
    if cfg.arch == "cifarnet":
        return CifarNet(cfg, width_div=width_div)
    if cfg.arch in RESNETS:
        return ResNet(cfg, *RESNETS[cfg.arch], width_div=width_div)
    raise ValueError(f"{cfg.arch} has no narrow variant")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
