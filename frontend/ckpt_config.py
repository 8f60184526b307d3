"""Checks on what a qcfs-train checkpoint says about itself, before a model is built from it.

Why: a checkpoint is input like any other. An unknown architecture, a config with extra or missing keys,
L = 0, a normalization without std or a state dict that is not a dict used to surface as a TypeError or
KeyError traceback from deep inside model building or export; here each becomes one line naming the file
and the field. `check_resume` refuses `qcfs-train --resume` onto a checkpoint of another network before any
data is loaded or any epoch is spent.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

from qcfs.errors import ModelFileError, QCFSError
from qcfs.frontend.models import ZOO, ModelConfig

FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}
REQUIRED = [n for n, f in FIELDS.items() if f.default is dataclasses.MISSING]


def _int_in(path: Path, key: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ModelFileError(f"{path}: config.{key} = {value!r}, expected an integer in {lo}..{hi}")
    return value


def _float_in(path: Path, key: str, value: Any, lo: float, hi: float, lo_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or (value <= lo if lo_open else value < lo):
        raise ModelFileError(f"{path}: config.{key} = {value!r}, expected a finite number in "
                             f"{'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(value)


def model_config(path: Path, raw: Any) -> ModelConfig:
    """The checkpoint's ModelConfig, every field present, known and in range."""
    if not isinstance(raw, Mapping):
        raise ModelFileError(f"{path}: config is {type(raw).__name__}, expected a mapping of {', '.join(FIELDS)}")
    extra = sorted(set(map(str, raw)) - set(FIELDS))
    missing = [k for k in REQUIRED if k not in raw]
    if extra or missing:
        parts = ([f"unknown key(s) {', '.join(extra)}"] if extra else []) + \
                ([f"missing key(s) {', '.join(missing)}"] if missing else [])
        raise ModelFileError(f"{path}: config has {'; '.join(parts)}; expected {', '.join(FIELDS)}")
    arch = raw["arch"]
    if arch not in ZOO:
        raise ModelFileError(f"{path}: config.arch = {arch!r} is not an architecture qcfs builds "
                             f"({', '.join(ZOO)})")
    cfg = ModelConfig(
        arch=arch,
        in_channels=_int_in(path, "in_channels", raw["in_channels"], 1, 64),
        num_classes=_int_in(path, "num_classes", raw["num_classes"], 1, 100_000),
        image_size=_int_in(path, "image_size", raw["image_size"], 1, 4096),
        L=_int_in(path, "L", raw.get("L", FIELDS["L"].default), 1, 1024),
        lam_init=_float_in(path, "lam_init", raw.get("lam_init", FIELDS["lam_init"].default), 0.0, 1e6),
        phi=_float_in(path, "phi", raw.get("phi", FIELDS["phi"].default), 0.0, 1.0, lo_open=False),
    )
    return cfg


def check_normalize(path: Path, norm: Any, channels: int) -> None:
    """`normalize` is absent/None or {"mean": [...], "std": [...]} with 1 or `channels` finite values, std > 0."""
    if norm is None:
        return
    if not isinstance(norm, Mapping) or "mean" not in norm or "std" not in norm:
        raise ModelFileError(f"{path}: normalize must hold both 'mean' and 'std', got {norm!r:.120}")
    for key in ("mean", "std"):
        vals = norm[key]
        if not isinstance(vals, (list, tuple)) or len(vals) not in (1, channels) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            raise ModelFileError(f"{path}: normalize.{key} = {vals!r:.120}, expected 1 or {channels} finite numbers")
    if len(norm["mean"]) != len(norm["std"]) or not all(v > 0 for v in norm["std"]):
        raise ModelFileError(f"{path}: normalize needs as many means as stds and every std > 0")


def validate_checkpoint(path: str | Path, ckpt: Mapping[str, Any]) -> ModelConfig:
    """Everything load_checkpoint and the ONNX exporter read from `ckpt`, checked; returns its ModelConfig."""
    path = Path(path)
    if "config" not in ckpt:
        raise ModelFileError(f"{path}: checkpoint has no 'config'")
    cfg = model_config(path, ckpt["config"])
    check_normalize(path, ckpt.get("normalize"), cfg.in_channels)
    if ckpt.get("dataset") is not None and not isinstance(ckpt.get("dataset"), str):
        raise ModelFileError(f"{path}: dataset = {ckpt['dataset']!r}, expected a name")
    sd = ckpt.get("state_dict")
    if not isinstance(sd, Mapping):
        raise ModelFileError(f"{path}: state_dict is {type(sd).__name__}, expected a mapping of tensors")
    return cfg


def check_resume(path: Path, want: ModelConfig, dataset: str) -> None:
    """`qcfs-train --resume -o PATH`: PATH must be a checkpoint of the same network on the same dataset."""
    from qcfs.frontend.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    have = validate_checkpoint(path, ckpt)
    diffs = [f"{k} {getattr(have, k)!r} (asked: {getattr(want, k)!r})"
             for k in ("arch", "L", "phi", "in_channels", "num_classes", "image_size")
             if getattr(have, k) != getattr(want, k)]
    if ckpt.get("dataset") not in (None, dataset):
        diffs.append(f"dataset {ckpt.get('dataset')!r} (asked: {dataset!r})")
    if diffs:
        raise QCFSError(f"--resume {path}: the checkpoint is another network: {', '.join(diffs)}; "
                        "drop --resume or choose another -o")
    for key in ("optimizer", "epoch", "total_epochs", "log", "rng"):
        if key not in ckpt:
            raise QCFSError(f"--resume {path}: checkpoint has no '{key}' (not written by qcfs-train); drop --resume")
