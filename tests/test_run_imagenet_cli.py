"""`qcfs-run --dataset imagenet --data-dir DIR` end to end on a tiny generated ImageFolder tree: the split is
decoded shard by shard (never whole), and the result equals one shot of the same images, in this process and
on a Dask LocalCluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qcfs.cli.run import main as run_main

CLASSES = ("n01440764", "n01443537", "n01484850")


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 2), ("val", 3)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                w, h = (int(v) for v in rng.integers(180, 420, 2))
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"ILSVRC2012_val_{i:08d}.JPEG", quality=90)
    return root


def _tiny_224(out: Path, classes: int) -> Path:
    """A small random-weight QCFS net for 3×224×224 inputs, exported to ONNX (speed, not accuracy: the zoo's
    ImageNet nets take a minute to convert and seconds per image·step on 2 cores)."""
    import torch
    from torch import nn

    from qcfs.data import dataset_info
    from qcfs.exporters.onnx_export import export_module
    from qcfs.frontend.models import ModelConfig
    from qcfs.frontend.qcfs_act import QCFS

    torch.manual_seed(0)
    cfg = ModelConfig("tiny224", 3, classes, 224, L=4, lam_init=2.0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4, bias=False), nn.BatchNorm2d(8), QCFS(4, 2.0), nn.AvgPool2d(4),  # 14×14
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), QCFS(4, 2.0),  # 7×7
        nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, classes)).eval()
    info = dataset_info("imagenet")
    return export_module(model, {"config": cfg, "dataset": "imagenet",
                                 "normalize": {"mean": list(info.mean), "std": list(info.std)}}, out)


@pytest.fixture(scope="module")
def checkpoint_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_224(tmp_path_factory.mktemp("model") / "tiny224.onnx", len(CLASSES))


def _run(tmp: Path, tag: str, tree: Path, ckpt: Path, *extra: str) -> tuple[dict, dict]:
    js, counts = tmp / f"{tag}.json", tmp / f"{tag}.npz"
    assert run_main(["--model", str(ckpt), "--dataset", "imagenet", "--data-dir", str(tree), "--T", "1,2",
                     "--no-progress", "--json", str(js), "--counts", str(counts), *extra]) == 0
    with np.load(counts) as npz:
        return json.loads(js.read_text()), {k: npz[k] for k in npz.files}


def test_imagenet_run_sharded_equals_one_shard(tiny_tree: Path, checkpoint_224: Path, tmp_path: Path) -> None:
    one = _run(tmp_path, "one", tiny_tree, checkpoint_224, "--shard-size", "9")
    two = _run(tmp_path, "two", tiny_tree, checkpoint_224, "--shard-size", "2")
    dask = _run(tmp_path, "dask", tiny_tree, checkpoint_224, "--workers", "2", "--shard-size", "4")
    assert one[0]["samples"] == 9 and one[0]["ann_accuracy"] is not None
    for other in (two, dask):
        assert {k: v for k, v in one[0].items() if k not in ("command", "execution")} == \
            {k: v for k, v in other[0].items() if k not in ("command", "execution")}
        for k in one[1]:
            assert np.array_equal(one[1][k], other[1][k]), k
    assert dask[0]["execution"]["shards"] == 3


def test_imagenet_missing_tree_fails_in_one_line(tmp_path: Path, checkpoint_224: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code = run_main(["--model", str(checkpoint_224), "--dataset", "imagenet", "--data-dir", str(tmp_path / "none"),
                     "--T", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "imagenet: no folder" in err and str(tmp_path / "none") in err


def test_imagenet_class_count_must_match_the_tree(tiny_tree: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """A 1000-class network on a tree with fewer class folders would score folder k as class k: refused."""
    model = _tiny_224(tmp_path / "four.onnx", 4)
    code = run_main(["--model", str(model), "--dataset", "imagenet", "--data-dir", str(tiny_tree), "--T", "1",
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "the network has 4 classes, the imagenet tree has 3 class folders" in err
