"""ImageFolder trees (`<split>/<class>/<image>`), shared by every dataset stored that way (CIFAR-10 copies,
ImageNet) and by both the NumPy evaluation path and the torch training path.

Why by hand: torchvision's ImageFolder is the convention (class folders sorted by name give labels 0..K-1,
files sorted by name), but torchvision cannot be a dependency here (its PyPI wheel does not import beside the
pinned CPU torch), and the NumPy runtime must not import torch at all.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from qcfs.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # any case
# Pillow's own bomb limit is 89 Mpixel; a real ImageNet image is < 40 Mpixel (the largest is ~ 10k x 4k)
MAX_IMAGE_PIXELS = 64_000_000


def class_folders(split_dir: Path, dataset: str) -> list[str]:
    """Sorted class-folder names of one split (torchvision's order, so labels match its ImageFolder)."""
    if not split_dir.is_dir():
        raise DatasetError(f"{dataset}: no folder {split_dir}")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{dataset}: {split_dir} has no class folders; expected <split>/<class>/<image>")
    return classes


def image_files(split_dir: Path, classes: list[str], dataset: str) -> list[tuple[Path, int]]:
    """(file, label) for every image under split_dir/<class>, label = index of the class in `classes`, in
    ImageFolder order (classes in the given order, files sorted by name). Only regular files with an image
    suffix count; a class folder missing from split_dir is an error (every later label would shift)."""
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        folder = split_dir / cls
        if not folder.is_dir():
            raise DatasetError(f"{dataset}: {split_dir} has no class folder {cls!r}; every split needs the same "
                               f"{len(classes)} class folders")
        files += [(f, label) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not files:
        raise DatasetError(f"{dataset}: {split_dir}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def open_rgb(path: Path, dataset: str,  # type: ignore[no-untyped-def]  # -> PIL.Image.Image
             header_check: Callable[[int, int], str | None] | None = None):
    """The image at `path` as a decoded RGB PIL image; a corrupt, non-image or oversized (decompression bomb)
    file is a one-line DatasetError naming it. `header_check(width, height)` may refuse the size, from the
    header, before anything is decoded: it returns what is wrong (or None)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                problem = header_check(w, h) if header_check is not None else None
                if problem:
                    raise DatasetError(f"{dataset}: {path} {problem}")
                if w * h > MAX_IMAGE_PIXELS:  # checked on the header, before decoding
                    raise DatasetError(f"{dataset}: {path} is {w}x{h} pixels, over the {MAX_IMAGE_PIXELS:,} limit")
                return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as err:
        raise DatasetError(f"{dataset}: cannot decode {path} ({err})") from None


def labels_of(files: list[tuple[Path, int]]) -> np.ndarray:
    return np.fromiter((c for _, c in files), dtype=np.int64, count=len(files))
