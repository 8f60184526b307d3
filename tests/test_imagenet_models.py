"""The ImageNet (224×224, 1000-class) zoo networks: the authors' definitions, and the whole pipeline on them.

The full-width 224 nets take minutes and ~19 GB to convert (VGG-16's first FC becomes 4096 × 100352 once
the last AvgPool is composed into it), so the default suite runs the same code path (checkpoint →
qcfs.pipeline.canonical_onnx → IntNet → NumPy runtime) on narrow copies (`width_div`) at full resolution;
the full VGG-16 runs in benchmarks/bench_imagenet_vgg.py and in the slow test below.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qcfs.frontend.models import ModelConfig, build_model
from qcfs.frontend.qcfs_act import QCFS

NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def imagenet_cfg(arch: str) -> ModelConfig:
    return ModelConfig(arch, in_channels=3, num_classes=1000, image_size=224)


def test_vgg16_224_is_the_authors_imagenet_vgg() -> None:
    vgg = build_model(imagenet_cfg("vgg16"))
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.AvgPool2d) for m in vgg.features) == 5
    fcs = [m for m in vgg.classifier if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]
    kinds = [type(m) for m in vgg.classifier]
    assert kinds == [nn.Flatten, nn.Linear, QCFS, nn.Dropout, nn.Linear, QCFS, nn.Dropout, nn.Linear]
    assert nn.MaxPool2d not in {type(m) for m in vgg.modules()}
    with torch.no_grad():
        assert vgg.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_resnet34_224_is_the_authors_imagenet_resnet() -> None:
    """3×3 stride-1 stem, no max-pool, 3-4-6-3 blocks with strides 1-2-2-2, global pool: 28×28 at the end."""
    net = build_model(imagenet_cfg("resnet34"))
    stem = net.stem[0]
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((3, 3), (1, 1), 64)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())
    assert len(net.layers) == 3 + 4 + 6 + 3
    assert [b.conv1.stride[0] for b in net.layers] == [1] * 3 + [2] + [1] * 3 + [2] + [1] * 5 + [2] + [1] * 2
    assert isinstance(net.pool, nn.AdaptiveAvgPool2d) and net.fc.in_features == 512 and net.fc.out_features == 1000
    seen: dict[str, tuple[int, ...]] = {}
    narrow = build_model(imagenet_cfg("resnet34"), width_div=16).eval()  # same layout, 1/16 of the channels
    narrow.layers[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("hw", tuple(o.shape[2:])))
    with torch.no_grad():
        assert narrow(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert seen["hw"] == (28, 28)


def test_32x32_models_unchanged_by_width_div_default() -> None:
    for arch in ("vgg16", "resnet34"):
        cfg = ModelConfig(arch, 3, 10, 32)
        a, b = build_model(cfg), build_model(cfg, width_div=1)
        assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def test_vgg16_needs_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model(ModelConfig("vgg16", 3, 1000, 200))


def _export_and_convert(model: nn.Module, cfg: ModelConfig, tmp: Path):  # type: ignore[no-untyped-def]
    """What qcfs-export does with a 224 model: the checkpoint exporter's ONNX export (export_module, which
    export_checkpoint calls after rebuilding the model from its ModelConfig; a narrow copy cannot be rebuilt
    from one), then qcfs.pipeline.canonical_onnx → IntNet."""
    from qcfs import pipeline
    from qcfs.exporters.onnx_export import export_module

    onnx_path = export_module(model, {"config": cfg, "dataset": "imagenet", "normalize": NORM}, tmp / "m.onnx")
    canon = pipeline.canonical_onnx(onnx_path)
    return pipeline.to_intnet(canon, mode="int"), canon


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and λ so spikes flow (a fresh model's BN is the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        if isinstance(m, QCFS):
            m.lam.data.fill_(2.0)


_NARROW: dict[str, object] = {}


def narrow_intnet(arch: str, tmp: Path):  # type: ignore[no-untyped-def]
    """The IntNet of a 1/16-width 224 copy, converted once per session."""
    if arch not in _NARROW:
        torch.manual_seed(0)
        cfg = imagenet_cfg(arch)
        model = build_model(cfg, width_div=16).eval()
        _randomise_bn(model, 1)
        _NARROW[arch] = _export_and_convert(model, cfg, tmp)[0]
    return _NARROW[arch]


@pytest.mark.parametrize("arch", ["vgg16", "resnet34"])
def test_pipeline_on_narrow_224_net(arch: str, tmp_path: Path) -> None:
    """Checkpoint → ONNX → IntNet → NumPy runtime at 224×224 on a 1/16-width copy: the pool composition into
    the classifier (VGG: 2×2 pool into a 7·7·32-input FC; ResNet: 28×28 global pool into the readout), both
    timing orders agree exactly."""
    from qcfs.runtime.numpy_snn import simulate

    net = narrow_intnet(arch, tmp_path)
    assert tuple(net.input.shape) == (3, 224, 224) and net.num_classes == 1000
    assert tuple(net.if_layers[0].shape) == (4, 224, 224)
    images = np.random.default_rng(0).random((1, 3, 224, 224)).astype(np.float32)
    layer = simulate(net, images, [1, 3], progress=False)
    step = simulate(net, images, [1, 3], progress=False, order="step")
    for t in (1, 3):
        np.testing.assert_array_equal(layer.logits[t], step.logits[t])
        for name in layer.spikes[t]:
            np.testing.assert_array_equal(layer.spikes[t][name], step.spikes[t][name])
    assert sum(int(c.sum()) for c in layer.spikes[3].values()) > 0  # something fired


def test_budget_at_224(tmp_path: Path) -> None:
    """A 50,000-image evaluation at --batch 256 in chunks of 256 decoded images fits (the runtime caps the
    layer-major chunk, so the batch costs no more); T = 10^6 cannot (every live spike train holds T maps)."""
    from qcfs.budget import check_budget, estimate, weight_bytes
    from qcfs.errors import QCFSError

    net = narrow_intnet("vgg16", tmp_path)
    ok = estimate(net, 50_000, [1, 2, 4, 8], 256, "numpy", resident=256)
    check_budget(ok, "imagenet run", max_hours=1e9)
    assert ok.bytes > weight_bytes(net)
    assert estimate(net, 50_000, [8], 256, "numpy").bytes > 50_000 * 3 * 224 * 224 * 16  # all decoded
    with pytest.raises(QCFSError, match="memory") as err:
        check_budget(estimate(net, 10, [10**6], 256, "numpy"), "--T 1e6", max_hours=1e12)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) < 40 << 30,
                    reason="converting the full 224 VGG-16 peaks near 19 GB of RSS")
def test_full_vgg16_224_end_to_end(tmp_path: Path) -> None:
    from qcfs.runtime.numpy_snn import simulate

    torch.manual_seed(0)
    cfg = imagenet_cfg("vgg16")
    net, _ = _export_and_convert(build_model(cfg).eval(), cfg, tmp_path)
    assert [tuple(s.weight.shape) for s in net.readout.synapses] == [(1000, 4096)]
    res = simulate(net, np.random.default_rng(0).random((1, 3, 224, 224)).astype(np.float32), [2], progress=False)
    assert res.logits[2].shape == (1, 1000)
