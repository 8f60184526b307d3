"""A built wheel works outside the source tree: `pip install` of the wheel (not editable) into a fresh venv,
then `qcfs-run --T 4 --dataset digits` finds the shipped model inside the installed package (package data
`qcfs.models`), not in a checkout.

The fresh venv gets qcfs and its declared dependencies the way a user's `pip install qcfs-*.whl` does (pinned
by constraints.txt, as scripts/setup_env.sh pins them: the CPU torch wheel, numpy<2), from the configured
index or the pip cache; nothing is borrowed from this test environment, so a dependency missing from
pyproject.toml fails here. The build runs on a copy of the tree, leaving no build/ or *.egg-info in the
checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".venv", ".git", "out", "build", ".cache", "*.egg-info", "__pycache__", ".whl", ".gl",
        ".hypothesis", ".pytest_cache")
ROOT_ONLY = ("data",)  # the checkout's dataset folder, not the qcfs.data package


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = set(shutil.ignore_patterns(*SKIP)(folder, names))
    return skipped | (set(ROOT_ONLY) & set(names) if Path(folder) == ROOT else set())


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd[:4]} exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with qcfs installed from a wheel built from a copy of this tree; returns its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    # build with this environment's setuptools when it has one (no download); else pip's isolated build env
    isolation = ["--no-build-isolation"] if _has("setuptools") else []  # setuptools >= 70.1 writes wheels itself
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(tmp / "dist"), str(src)])
    wheels = list((tmp / "dist").glob("qcfs-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    vpy = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "--disable-pip-version-check", "install", "-q",
          "-c", str(ROOT / "constraints.txt"), str(wheels[0])])
    return venv / "bin"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_wheel_ships_models_and_qcfs_run_finds_them(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QCFS_"))}
    env.update(HOME=str(tmp_path / "home"), QCFS_CACHE_DIR=str(tmp_path / "cache"))  # no cached model to fall back on
    out = tmp_path / "run.json"
    proc = _run([str(installed / "qcfs-run"), "--T", "4", "--dataset", "digits", "--limit", "60", "--json", str(out),
                 "--no-progress"], cwd=tmp_path, env=env)
    doc = json.loads(out.read_text())
    model = Path(doc["model"])
    assert model.is_relative_to(installed.parent), f"model not from the installed package: {model}"
    assert model.parts[-3:] == ("models", "digits", "model.onnx") and "site-packages" in model.parts
    assert doc["results"][0]["accuracy"] > 0.9, proc.stdout
    where = _run([str(installed / "python"), "-c", "import qcfs; print(qcfs.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    assert not (tmp_path / "cache").exists(), "qcfs-run trained a model instead of using the shipped one"


@pytest.mark.skipif(not os.environ.get("QCFS_CIFAR10_DIR"), reason="CIFAR-10 not available (QCFS_CIFAR10_DIR)")
def test_wheel_finds_the_cifar10_model(installed: Path, tmp_path: Path) -> None:
    """`qcfs-run --dataset cifar10 --data-dir D` from the wheel uses the packaged resnet20 (the user's cache dir is
    kept: it holds the decoded-image cache, and comes after the packaged models in the lookup)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = tmp_path / "run.json"
    _run([str(installed / "qcfs-run"), "--T", "4", "--dataset", "cifar10", "--data-dir", os.environ["QCFS_CIFAR10_DIR"],
          "--limit", "20", "--json", str(out), "--no-progress"], cwd=tmp_path, env=env)
    model = Path(json.loads(out.read_text())["model"])
    assert model.is_relative_to(installed.parent) and model.parts[-2:] == ("cifar10", "model.onnx"), model
