"""The model `qcfs-run` uses when no --model is given, per dataset.

Lookup order: models/<dataset>/ shipped in the repository (in a wheel: the same files, installed as package
data next to this module), then the user cache ($QCFS_CACHE_DIR or
~/.cache/qcfs)/<dataset>/; in each, model.onnx before model.pt before model.intnet.npz. The ONNX comes first
because it is the deployment hand-off (what qcfs-export writes and other tools read) and because loading it
keeps torch out of the simulation process; model.pt stays as the fallback for a freshly trained model that
was not exported yet. For `digits` (seconds to train on a laptop) a missing model is trained on first use
with `python -m qcfs.cli.train --model cnn --dataset digits`, in a subprocess so that torch never enters the
(NumPy-only) simulation process. Other datasets need a model the user trains or downloads; the error says how.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qcfs.errors import QCFSError

# models/ of the source tree, or its copy inside an installed wheel (package data `qcfs.models`, pyproject.toml)
_PACKAGED_MODELS = Path(__file__).resolve().parent / "models"
REPO_MODELS = _PACKAGED_MODELS if _PACKAGED_MODELS.is_dir() else Path(__file__).resolve().parent.parent / "models"
MODEL_NAMES = ("model.onnx", "model.pt", "model.intnet.npz")  # ONNX first: see the module docstring
DEFAULT_ARCH = {"digits": "cnn", "fashion-mnist": "cnn", "cifar10": "resnet20"}


def cache_dir() -> Path:
    return Path(os.environ.get("QCFS_CACHE_DIR", Path.home() / ".cache" / "qcfs"))


def candidates(dataset: str) -> list[Path]:
    """Where a default model for `dataset` may live, in lookup order."""
    return [root / dataset / name for root in (REPO_MODELS, cache_dir()) for name in MODEL_NAMES]


def default_model(dataset: str, *, train_missing: bool = True) -> Path:
    """Path of the default model for `dataset`; trains the digits cnn into the cache when none exists."""
    for path in candidates(dataset):
        if path.is_file():
            return path
    target = cache_dir() / dataset / "model.pt"
    arch = DEFAULT_ARCH.get(dataset, "cnn")
    train_cmd = f"qcfs-train --model {arch} --dataset {dataset} -o {target}"
    if dataset != "digits" or not train_missing:
        raise QCFSError(
            f"no default model for {dataset} (looked in {REPO_MODELS / dataset} and {cache_dir() / dataset}); "
            f"pass --model FILE or train one: {train_cmd}"
        )
    return _train_digits(target, train_cmd)


def _train_digits(target: Path, train_cmd: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name("model.partial.pt")  # the trainer rewrites its output after every epoch
    print(f"qcfs-run: no digits model yet; training one into {target} (once)", file=sys.stderr)
    cmd = [sys.executable, "-m", "qcfs.cli.train", "--model", "cnn", "--dataset", "digits", "-o", str(partial)]
    try:
        proc = subprocess.run(cmd, check=False)
    except OSError as err:
        raise QCFSError(f"cannot start the trainer ({err}); run: {train_cmd}") from None
    if proc.returncode != 0 or not partial.is_file():
        raise QCFSError(f"training the default digits model failed (exit {proc.returncode}); run: {train_cmd}")
    partial.replace(target)
    return target
