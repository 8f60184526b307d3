"""ImageNet training path on a tiny generated ImageFolder tree (3 classes, 13 train / 6 val JPEGs of random
sizes): random-resized-crop parameters (torchvision's algorithm, fallback included), per-(seed, epoch, sample)
determinism, qcfs-train --dataset imagenet end to end (classes from train/, --image-size, DataLoader workers,
resume), 2 gloo processes equal to 1, a missing tree in one line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qcfs.cli.train import main as train_main
from qcfs.frontend.checkpoint import read_checkpoint
from qcfs.frontend.imagenet_train import RATIO, SCALE, TrainFolder, crop_params, sample_generator, train_image

SMALL = ["--model", "cnn", "--dataset", "imagenet", "--image-size", "16", "--batch", "4", "--loader-workers", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, counts in (("train", (4, 4, 5)), ("val", (2, 2, 2))):
        for c, n in enumerate(counts):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
                pixels = (rng.random((h, w, 3)) * 80 + c * 80).astype(np.uint8)  # class = brightness
                Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=90)
    return root


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_crop_params_follow_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        width, height = int(torch.randint(10, 500, (1,))), int(torch.randint(10, 500, (1,)))
        top, left, h, w = crop_params(width, height, g)
        assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0
    # a 1000 x 10 strip: no try fits, so the fallback: centre crop at the widest allowed ratio 4/3
    assert crop_params(1000, 10, torch.Generator().manual_seed(1)) == (0, (1000 - 13) // 2, 10, 13)
    assert crop_params(10, 1000, torch.Generator().manual_seed(1)) == ((1000 - 13) // 2, 0, 13, 10)
    # the first try, by hand (torchvision's draws in its order: area fraction, log ratio, top, left)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    area = 300 * 200 * torch.empty(1).uniform_(*SCALE, generator=g2).item()
    lr = torch.log(torch.tensor(RATIO))
    ar = math.exp(torch.empty(1).uniform_(float(lr[0]), float(lr[1]), generator=g2).item())
    w, h = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
    if w <= 300 and h <= 200:
        top = int(torch.randint(0, 200 - h + 1, (1,), generator=g2))
        left = int(torch.randint(0, 300 - w + 1, (1,), generator=g2))
        assert crop_params(300, 200, g1) == (top, left, h, w)


def test_augmentation_depends_on_seed_epoch_sample_only(tree: Path) -> None:
    ds = TrainFolder(str(tree), 16, (0.5,) * 3, (0.25,) * 3, seed=3)
    a = ds[2][0]
    assert torch.equal(a, ds[2][0])
    ds.epoch = 1
    assert not torch.equal(a, ds[2][0])
    path = ds.path(2)
    x = train_image(path, 16, sample_generator(3, 0, 2))
    assert x.shape == (3, 16, 16) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_train_resume_and_classes_from_folders(tree: Path, tmp_path: Path, one_thread: None) -> None:
    out, straight = tmp_path / "m.pt", tmp_path / "s.pt"
    assert train_main([*SMALL, "--data-dir", str(tree), "--epochs", "2", "-o", str(straight)]) == 0
    ck = read_checkpoint(straight)
    assert ck["config"]["num_classes"] == 3 and ck["config"]["image_size"] == 16 and ck["dataset"] == "imagenet"
    assert [r["epoch"] for r in ck["log"]] == [1, 2]
    assert train_main([*SMALL, "--data-dir", str(tree), "--epochs", "1", "-o", str(out)]) == 0
    one = read_checkpoint(out)
    one["total_epochs"] = one["log"][-1]["total_epochs"] = 2  # as if a 2-epoch run stopped after epoch 1
    torch.save(one, out)
    assert train_main([*SMALL, "--data-dir", str(tree), "--epochs", "2", "--resume", "-o", str(out)]) == 0
    resumed = read_checkpoint(out)
    for key, value in ck["state_dict"].items():  # deterministic, resumable: bit-identical
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_two_processes_equal_one(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 one_thread: None) -> None:
    """13 images, global batch 4 over K = 2: DistributedSampler pads the epoch to 14; the repeat is dropped."""
    from test_ddp import assert_same, rounding_tolerance, single, torchrun

    ref, two = tmp_path / "one.pt", tmp_path / "two.pt"
    args = [*SMALL, "--data-dir", str(tree), "--epochs", "2"]
    single([*args, "-o", str(ref)], monkeypatch, no_floor=True)
    tolerance = rounding_tolerance(tmp_path, args, ref, monkeypatch)  # test_ddp's docstring says why
    torchrun(tmp_path, 2, [*args, "-o", str(two)], no_floor=True)
    assert_same(ref, two, tolerance)


def test_missing_tree_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main([*SMALL, "--data-dir", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no folder" in err and str(tmp_path / "nowhere") in err, err
