"""ImageNet training data: torch Datasets over `qcfs.data.imagenet.scan` trees, decoded with Pillow in DataLoader
workers one image at a time (the train split is 140 GB of JPEGs: never all in memory).

Training transform: torchvision's RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) with bilinear
resizing, then RandomHorizontalFlip(0.5), then normalization. Written here with Pillow because torchvision
cannot be installed beside the pinned CPU torch (its PyPI wheel does not import with it; see
qcfs/data/image_folder.py). The crop parameters follow torchvision's sampling algorithm step by step, fallback
included; the random numbers come from a generator seeded by (seed, epoch, sample index), so an image's
augmentation depends on nothing else: not on the worker, the rank, the world size or the batch.

Evaluation: `qcfs.data.imagenet.eval_image` (shorter side 256, centre crop 224) at the standard size 224; at another
`--image-size S` (tests, small experiments) the same transform scaled, shorter side round(S·256/224), crop S.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from qcfs.data.imagenet import CROP, EVAL_RESIZE, NAME, eval_image, scan
from qcfs.data.image_folder import labels_of, open_rgb

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator for one (seed, epoch, sample): NumPy's SeedSequence mixes the three into one seed."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def crop_params(width: int, height: int, g: torch.Generator, scale: tuple[float, float] = SCALE,
                ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop: torchvision RandomResizedCrop.get_params, the same draws in the same
    order: 10 tries of area fraction ~ U(scale) and log aspect ratio ~ U(log ratio), the first that fits wins;
    otherwise the centre crop at the nearest allowed aspect ratio (the whole image when its own is allowed)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = math.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=g).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=g).item())
            return top, left, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_image(path: Path, size: int, g: torch.Generator) -> np.ndarray:
    """float32 [3, size, size] in [0, 1]: random resized crop (bilinear, as torchvision on PIL images) and a
    horizontal flip with probability 1/2 (torchvision: `torch.rand(1) < 0.5`)."""
    from PIL import Image

    im = open_rgb(path, NAME)
    top, left, h, w = crop_params(im.width, im.height, g)
    im = im.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)  # torchvision: crop, resize
    if float(torch.rand(1, generator=g)) < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


def eval_image_sized(path: Path, size: int) -> np.ndarray:
    """The evaluation transform at `size` (qcfs.data.imagenet.eval_image itself at the standard 224)."""
    if size == CROP:
        return eval_image(path)
    from PIL import Image

    im = open_rgb(path, NAME)
    resize = int(round(size * EVAL_RESIZE / CROP))
    w, h = im.size
    nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


class _Folder(Dataset):
    """Common part: the (file, label) list and the normalization."""

    def __init__(self, split: str, data_dir: str | None, size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        files = scan(split, data_dir)
        self.labels = labels_of(files)
        # one NumPy bytes array, not 1.28 M Python objects: forked DataLoader workers touching list items
        # would copy the pages (refcounts) into every worker
        self.paths = np.array([os.fsencode(f) for f, _ in files])
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> Path:
        return Path(os.fsdecode(self.paths[i]))

    def _normalized(self, x: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(x) - self.mean) / self.std


class TrainFolder(_Folder):
    """train/ with the random training transform; `epoch` is set before each epoch's DataLoader iterator is
    created (workers are started per epoch and copy it), so augmentation is a function of (seed, epoch, index)."""

    def __init__(self, data_dir: str | None, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 seed: int) -> None:
        super().__init__("train", data_dir, size, mean, std)
        self.seed, self.epoch = seed, 0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = sample_generator(self.seed, self.epoch, i)
        return self._normalized(train_image(self.path(i), self.size, g)), int(self.labels[i])


class PlainTrain(Dataset):
    """train/ images with the deterministic evaluation transform (the `--lam-init data` calibration batch:
    λ from unaugmented images, as for the in-memory datasets)."""

    def __init__(self, train: TrainFolder, indices: list[int]) -> None:
        self.train, self.indices = train, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        i = self.indices[k]
        return self.train._normalized(eval_image_sized(self.train.path(i), self.train.size))


class EvalFolder(_Folder):
    """val/ with the deterministic evaluation transform."""

    def __init__(self, data_dir: str | None, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__("test", data_dir, size, mean, std)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._normalized(eval_image_sized(self.path(i), self.size)), int(self.labels[i])
