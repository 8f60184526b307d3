"""Each zoo model: forward shape, parameter count, no MaxPool/ReLU, one λ per QCFS layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcfs.frontend.models import ModelConfig, build_model, count_parameters
from qcfs.frontend.qcfs_act import QCFS

CASES = [
    # arch, channels, size, expected params (architecture arithmetic; VGG-16 ≈ 33.6 M, ResNet-20 ≈ 0.27 M)
    ("cnn", 1, 8, None),
    ("cnn", 1, 28, None),
    ("vgg16", 3, 32, 33_642_457),
    ("cifarnet", 3, 32, 1_972_799),  # whiten 24·12+24, blocks 64/256/256 (conv+BN), fc 256·10
    ("cifarnet", 1, 28, None),
    ("resnet18", 3, 32, 11_173_979),
    ("resnet20", 3, 32, 272_493),
    ("resnet34", 3, 32, 21_282_155),
]


@pytest.mark.parametrize("arch,channels,size,params", CASES)
def test_forward_shape_and_params(arch: str, channels: int, size: int, params: int | None) -> None:
    model = build_model(ModelConfig(arch, channels, 10, size)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 10)
    if params is not None:
        assert count_parameters(model) == params
    kinds = {type(m) for m in model.modules()}
    assert nn.MaxPool2d not in kinds and nn.ReLU not in kinds
    qcfs_layers = [m for m in model.modules() if isinstance(m, QCFS)]
    assert qcfs_layers and all(m.lam.numel() == 1 for m in qcfs_layers)


def test_vgg16_has_13_convs_and_resnet20_shortcuts() -> None:
    vgg = build_model(ModelConfig("vgg16", 3, 10, 32))
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.modules()) == 13
    r20 = build_model(ModelConfig("resnet20", 3, 10, 32))
    shortcut_convs = [m for n, m in r20.named_modules() if "shortcut.0" in n and isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in shortcut_convs] == [(1, 1), (1, 1)]  # two stage transitions


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model(ModelConfig("alexnet", 3, 10, 32))
