"""Checkpoints that hold everything later steps need (architecture, L, φ, dataset, normalization) and load
with torch.load(weights_only=True): only tensors, numbers, strings, lists and dicts inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from qcfs.errors import ModelFileError
from qcfs.frontend.models import ModelConfig, build_model

FORMAT = "qcfs-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, model: nn.Module, cfg: ModelConfig, dataset: str, normalize: dict[str, list[float]],
                    **state: Any) -> None:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "dataset": dataset,
        "normalize": normalize,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    from qcfs.safe_io import atomic_path

    with atomic_path(path) as tmp:  # atomic: an interrupted save never leaves a truncated checkpoint
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except Exception as err:  # torch raises many types for bad files; all mean "not our checkpoint"
        raise ModelFileError(f"{path}: not a readable qcfs checkpoint ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a qcfs-train checkpoint (no '{FORMAT}' marker)")
    return ckpt


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model (eval mode) and return it with the checkpoint's metadata."""
    from qcfs.frontend.ckpt_config import validate_checkpoint

    ckpt = read_checkpoint(path)
    cfg = validate_checkpoint(path, ckpt)
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: weights do not match {cfg.arch} ({str(err).splitlines()[0]})") from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler", "rng")}
    return model, meta
