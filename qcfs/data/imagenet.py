"""ImageNet (ILSVRC-2012) in ImageFolder layout, read lazily: `DIR/train/<wnid>/*.JPEG`, `DIR/val/<wnid>/*.JPEG`
(the layout torchvision's ImageFolder and the usual `valprep.sh` produce).

Evaluation transform, the standard one: resize the shorter side to 256 (bilinear), centre-crop 224x224, RGB in
[0, 1]; normalization (mean/std) is the network's business, as for every dataset here. Images are decoded on
demand, one shard or chunk at a time: the 50,000 validation images are 30 GB as float32, so the split is never
held in memory.

Classes are the class folders of train/ (val/ must have the same ones), sorted, so labels match torchvision's
ImageFolder. ILSVRC-2012 has 1,000; another count (ImageNet-100 and similar research subsets) is accepted and
the network's class count must equal it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qcfs.data.image_folder import class_folders, image_files, labels_of, open_rgb
from qcfs.errors import DatasetError

NAME = "imagenet"
SPLIT_DIRS = {"train": "train", "test": "val", "val": "val"}
EVAL_RESIZE, CROP = 256, 224
HOW_TO_GET = ("download ILSVRC-2012 from image-net.org (registration needed), unpack train/ and val/ into "
              "class folders (val/ via the usual valprep.sh) and pass --data-dir DIR or set QCFS_IMAGENET_DIR")


def imagenet_root(data_dir: str | os.PathLike | None) -> Path:
    root = data_dir or os.environ.get("QCFS_IMAGENET_DIR")
    if not root:
        raise DatasetError(f"imagenet: no data directory given; {HOW_TO_GET}")
    return Path(root)


def split_dir(split: str, data_dir: str | os.PathLike | None) -> Path:
    if split not in SPLIT_DIRS:
        raise DatasetError(f"imagenet: unknown split {split!r}; use 'train' or 'test' (= val/)")
    root = imagenet_root(data_dir)
    where = root / SPLIT_DIRS[split]
    if not where.is_dir():
        raise DatasetError(f"imagenet: no folder {where} (looked for {root}/train and {root}/val); {HOW_TO_GET}")
    return where


def classes(data_dir: str | os.PathLike | None) -> list[str]:
    """The class folders of train/ (the label order), or of val/ when only val/ is there (evaluation only)."""
    root = imagenet_root(data_dir)
    base = root / "train" if (root / "train").is_dir() else split_dir("test", data_dir)
    return class_folders(base, NAME)


def scan(split: str, data_dir: str | os.PathLike | None) -> list[tuple[Path, int]]:
    where = split_dir(split, data_dir)
    names = classes(data_dir)
    found = class_folders(where, NAME)
    extra = sorted(set(found) - set(names))
    if extra:
        raise DatasetError(f"imagenet: {where} has class folder(s) {', '.join(extra[:5])} that train/ lacks; "
                           "train/ and val/ need the same class folders")
    return image_files(where, names, NAME)


def eval_image(path: Path) -> np.ndarray:
    """float32 [3, 224, 224] in [0, 1]: shorter side to 256 (bilinear), centre crop 224 (torchvision's
    Resize(256) + CenterCrop(224), same rounding of the crop offset)."""
    from PIL import Image

    im = open_rgb(path, NAME)
    w, h = im.size
    if w <= h:
        nw, nh = EVAL_RESIZE, int(EVAL_RESIZE * h / w)
    else:
        nw, nh = int(EVAL_RESIZE * w / h), EVAL_RESIZE
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - CROP) / 2.0)), int(round((nh - CROP) / 2.0))
    im = im.crop((left, top, left + CROP, top + CROP))
    return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


@dataclass
class ImageNetSource:
    """A split decoded on demand (qcfs.data.samples.SampleSource)."""

    files: list[tuple[Path, int]]
    classes: tuple[str, ...] = ()  # the class folders, in label order
    dataset: str = NAME
    shape: tuple[int, int, int] = (3, CROP, CROP)
    labels: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.labels = labels_of(self.files)

    def images(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), *self.shape), dtype=np.float32)
        for k, i in enumerate(idx):
            out[k] = eval_image(self.files[int(i)][0])
        return out


def open_imagenet_split(split: str, data_dir: str | os.PathLike | None) -> ImageNetSource:
    return ImageNetSource(scan(split, data_dir), tuple(classes(data_dir)))


def check_class_count(source: ImageNetSource, num_classes: int, model: str) -> None:
    """A network's outputs are labels only when they are exactly the tree's classes: with a 1000-class network
    and a 3-folder tree, folder 0 would be scored as ImageNet class 0 whatever its synset."""
    if len(source.classes) != num_classes:
        raise DatasetError(f"{model}: the network has {num_classes} classes, the imagenet tree has "
                           f"{len(source.classes)} class folders ({', '.join(source.classes[:3])}, ...); labels are "
                           "the sorted class folders, so the counts must match (use the full tree, or a network "
                           "trained on this subset)")
