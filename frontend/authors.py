"""Bare state dicts from the QCFS authors' code (putshua/SNN_conversion_QCFS and its older "up"-named
predecessor) mapped onto the model zoo, so `qcfs-export their.pth --arch authors-vgg16 --L 4 --dataset cifar10`
works on the checkpoints most QCFS users actually have. The mapping is documented in
docs/authors_checkpoints.md; in short:

  VGG-16    layerN.{4k} conv (with bias), .{4k+1} BN, .{4k+2}.{up|thresh} λ (.{4k+3} Dropout, then the pool)
            -> features.*  (conv bias folded exactly into the BN: running_mean' = running_mean − bias)
            classifier.{1,4,7} Linear, classifier.{2,5}.{up|thresh} λ -> classifier.* (same indices)
  ResNet    conv1.{0,1} conv/BN, conv1.2.{up|thresh} -> stem.*;  conv{s}_x.{i}.residual_function.{0,1,3,4}
            -> layers.{k}.{conv1,bn1,conv2,bn2}, .residual_function.2 λ -> act1, .shortcut.{0,1} -> shortcut.*,
            .{act|relu}.{up|thresh} λ -> act2;  fc -> fc.  ResNet-18/34: conv2_x…conv5_x, ResNet-20: conv2_x…conv4_x

Why a mapping and not their classes: the zoo model is what the exporter, the tests and the docs know; their
files carry no config, so the architecture, L and dataset come from the command line. Files are read with
torch.load(weights_only=True) only. A missing or unexpected key, a wrong shape, or the MaxPool variant
(their vgg16_wobn) is refused in one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from qcfs.errors import ModelFileError, QCFSError
from qcfs.frontend.models import VGG16_CFG, ModelConfig, build_model

ZOO_ARCH = {"authors-vgg16": "vgg16", "authors-resnet18": "resnet18", "authors-resnet34": "resnet34",
            "authors-resnet20": "resnet20"}
ARCHS = tuple(ZOO_ARCH)
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet20": (3, 3, 3)}
# the authors' CIFAR-10 transforms (Preprocess/getdataloader.py): their models expect exactly this input
AUTHORS_NORMALIZE = {"cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}}
LAMBDA_NAMES = ("thresh", "up")  # newer repository, older repository
BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class _Mapping:
    """Their key -> our key, built module by module; λ and conv-bias keys are resolved against the file."""

    def __init__(self, theirs: dict[str, torch.Tensor]) -> None:
        self.theirs = theirs
        self.pairs: dict[str, str] = {}  # their key -> our key
        self.conv_bias: dict[str, str] = {}  # their conv bias key -> our BN prefix it folds into

    def conv(self, src: str, dst: str, bias_into_bn: str | None = None) -> None:
        self.pairs[f"{src}.weight"] = f"{dst}.weight"
        if bias_into_bn is not None and f"{src}.bias" in self.theirs:
            self.conv_bias[f"{src}.bias"] = bias_into_bn

    def bn(self, src: str, dst: str) -> None:
        for f in BN_FIELDS:
            if f != "num_batches_tracked" or f"{src}.{f}" in self.theirs:
                self.pairs[f"{src}.{f}"] = f"{dst}.{f}"

    def linear(self, src: str, dst: str) -> None:
        self.pairs[f"{src}.weight"], self.pairs[f"{src}.bias"] = f"{dst}.weight", f"{dst}.bias"

    def lam(self, src: str, dst: str) -> None:
        name = next((f"{src}.{n}" for n in LAMBDA_NAMES if f"{src}.{n}" in self.theirs), f"{src}.thresh")
        self.pairs[name] = f"{dst}.lam"


def _vgg16(m: _Mapping) -> None:
    if "layer1.0.weight" in m.theirs and "layer1.1.running_mean" not in m.theirs and any(
            f"layer1.1.{n}" in m.theirs for n in LAMBDA_NAMES):
        raise QCFSError("this is the authors' vgg16_wobn (no BatchNorm; its pooling is MaxPool, key layer1.1 is an "
                        "activation): MaxPool cannot become an IF network; train their vgg16 (BatchNorm, AvgPool)")
    ours, block, k = 0, 1, 0
    for item in VGG16_CFG:
        if item == "P":
            ours, block, k = ours + 1, block + 1, 0
            continue
        src = f"layer{block}.{4 * k}"
        m.conv(src, f"features.{ours}", bias_into_bn=f"features.{ours + 1}")
        m.bn(f"layer{block}.{4 * k + 1}", f"features.{ours + 1}")
        m.lam(f"layer{block}.{4 * k + 2}", f"features.{ours + 2}")
        ours, k = ours + 3, k + 1
    for i in (1, 4, 7):
        m.linear(f"classifier.{i}", f"classifier.{i}")
    for i in (2, 5):
        m.lam(f"classifier.{i}", f"classifier.{i}")


def _resnet(m: _Mapping, blocks: tuple[int, ...]) -> None:
    m.conv("conv1.0", "stem.0")
    m.bn("conv1.1", "stem.1")
    m.lam("conv1.2", "stem.2")
    k = 0
    for s, n in enumerate(blocks):
        for i in range(n):
            src, dst = f"conv{s + 2}_x.{i}", f"layers.{k}"
            rf = f"{src}.residual_function"
            m.conv(f"{rf}.0", f"{dst}.conv1")
            m.bn(f"{rf}.1", f"{dst}.bn1")
            m.lam(f"{rf}.2", f"{dst}.act1")
            m.conv(f"{rf}.3", f"{dst}.conv2")
            m.bn(f"{rf}.4", f"{dst}.bn2")
            if f"{src}.shortcut.0.weight" in m.theirs or (s > 0 and i == 0):
                m.conv(f"{src}.shortcut.0", f"{dst}.shortcut.0")
                m.bn(f"{src}.shortcut.1", f"{dst}.shortcut.1")
            act = f"{src}.relu" if any(f"{src}.relu.{n}" in m.theirs for n in LAMBDA_NAMES) else f"{src}.act"
            m.lam(act, f"{dst}.act2")
            k += 1
    m.linear("fc", "fc")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict (or {"state_dict"|"model": …}); DataParallel's "module." prefix removed."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except Exception as err:  # torch raises many types for bad or unsafe files; all mean "not a state dict"
        raise ModelFileError(f"{path}: not a readable state dict ({type(err).__name__}: {str(err)[:120]})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise ModelFileError(f"{path}: not a state dict (a mapping from parameter names to tensors)")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ModelFileError(f"{path}: key {bad!r} is not a tensor; expected a bare state dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def map_state_dict(theirs: dict[str, torch.Tensor], arch: str, source: str = "checkpoint"
                   ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Their state dict -> (the zoo model's state dict, our key -> their key). Same tensors; λ [1] -> scalar;
    a VGG conv bias folded into the BN after it."""
    if arch not in ZOO_ARCH:
        raise QCFSError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    zoo = ZOO_ARCH[arch]
    m = _Mapping(theirs)
    try:
        _vgg16(m) if zoo == "vgg16" else _resnet(m, RESNET_BLOCKS[zoo])
    except QCFSError as err:
        raise ModelFileError(f"{source}: {err}") from None
    expected = set(m.pairs) | set(m.conv_bias)
    for key in sorted(set(m.pairs) - set(theirs), key=_natural):
        raise ModelFileError(f"{source}: key {key!r} missing for --arch {arch} (expected {m.pairs[key]}); "
                             f"is this really the authors' {zoo}?")
    for key in sorted(set(theirs) - expected, key=_natural):
        raise ModelFileError(f"{source}: unexpected key {key!r} for --arch {arch}; is this really the authors' "
                             f"{zoo}?")
    ours: dict[str, torch.Tensor] = {}
    for src, dst in m.pairs.items():
        t = theirs[src].detach().clone()
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{source}: key {src!r} holds NaN or infinite values; not a trained network")
        if dst.endswith(".running_var") and bool((t < 0).any()):
            raise ModelFileError(f"{source}: key {src!r} (BatchNorm running variance) has negative entries "
                                 f"(min {float(t.min()):.4g}); a variance cannot be negative, the file is corrupt")
        if dst.endswith(".lam"):
            if t.numel() != 1:
                raise ModelFileError(f"{source}: key {src!r} (λ) has {t.numel()} values; one per layer expected")
            t = t.reshape(())
        ours[dst] = t
    for src, bn in m.conv_bias.items():  # BN(Wx + b) = BN'(Wx) with running_mean' = running_mean − b (exact)
        mean = ours[f"{bn}.running_mean"]
        b = theirs[src].detach()
        if b.shape != mean.shape:
            raise ModelFileError(f"{source}: key {src!r} has shape {list(b.shape)}, expected {list(mean.shape)}")
        ours[f"{bn}.running_mean"] = mean - b.to(mean.dtype)
    return ours, {dst: src for src, dst in m.pairs.items()}


def _natural(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in key.replace("_", ".").split("."))


def load_authors_checkpoint(path: str | Path, arch: str, *, L: int, dataset: str) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model (eval mode) holding the authors' weights, and checkpoint-style metadata for export."""
    path = Path(path)
    if dataset not in AUTHORS_NORMALIZE:
        raise QCFSError(f"--arch {arch}: the authors' CIFAR models need --dataset "
                        f"{' or '.join(AUTHORS_NORMALIZE)}, got {dataset!r}")
    if isinstance(L, bool) or int(L) != L or L < 1:
        raise QCFSError(f"--L must be a positive integer (the L the model was trained with), got {L}")
    ours, origin = map_state_dict(read_state_dict(path), arch, str(path))
    head = "classifier.7.weight" if ZOO_ARCH[arch] == "vgg16" else "fc.weight"
    cfg = ModelConfig(arch=ZOO_ARCH[arch], in_channels=3, num_classes=int(ours[head].shape[0]), image_size=32,
                      L=int(L))
    model = build_model(cfg)
    want = model.state_dict()
    for key, tensor in ours.items():
        if tuple(tensor.shape) != tuple(want[key].shape):
            raise ModelFileError(f"{path}: key {origin[key]!r} has shape {list(tensor.shape)}, --arch {arch} expects "
                                 f"{list(want[key].shape)}")
    model.load_state_dict({k: v.to(want[k].dtype) for k, v in ours.items()})
    model.eval()
    meta = {"config": cfg.to_dict(), "dataset": dataset, "normalize": AUTHORS_NORMALIZE[dataset],
            "source": f"authors checkpoint ({arch})"}
    return model, meta


def export_authors_checkpoint(path: Path, out: Path, arch: str, *, L: int, dataset: str, opset: int = 20) -> Path:
    from qcfs.exporters.onnx_export import export_module

    model, meta = load_authors_checkpoint(path, arch, L=L, dataset=dataset)
    return export_module(model, meta, out, opset)
