"""qcfs.data.imagenet / qcfs.data.samples.open_split on a tiny generated ImageFolder tree (Pillow JPEGs of random sizes):
label order, the eval transform against an independent Resize(256)+CenterCrop(224) reference, and one-line
DatasetErrors for every broken tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcfs.errors import DatasetError
from qcfs.data.imagenet import ImageNetSource, classes, eval_image
from qcfs.data.samples import SampleSource, SplitSpec, open_split

CLASSES = ["n01440764", "n01443537", "n02102040"]  # deliberately given unsorted below


def _jpeg(path: Path, w: int, h: int, rng: np.random.Generator, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    c = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    arr = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if c == 1 else arr, mode).save(path, quality=90)


def make_tree(root: Path, per_class: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for cls in reversed(CLASSES):
            for k in range(per_class):
                w, h = (int(v) for v in rng.integers(60, 400, 2))
                _jpeg(root / split / cls / f"{cls}_{split}_{k:03d}.JPEG", w, h, rng)
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "imagenet")


def reference_eval(path: Path) -> np.ndarray:
    """Independent Resize(256) + CenterCrop(224) (torchvision semantics on a PIL image): the shorter side
    becomes 256 and the longer one int(256·long/short); the crop starts at round((size - 224) / 2)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short, long = min(w, h), max(w, h)
        new_long = int(256 * long / short)
        size = (256, new_long) if w == short else (new_long, 256)
        im = im.resize(size, resample=Image.Resampling.BILINEAR)
        left = int(round((size[0] - 224) / 2.0))
        top = int(round((size[1] - 224) / 2.0))
        arr = np.array(im.crop((left, top, left + 224, top + 224)))
    return (arr.astype(np.float32) / np.float32(255)).transpose(2, 0, 1)


def test_labels_in_imagefolder_order(tree: Path) -> None:
    src = open_split(SplitSpec("imagenet", "test", str(tree)))
    assert isinstance(src, SampleSource) and isinstance(src, ImageNetSource)
    assert classes(tree) == sorted(CLASSES)
    names = [p.name for p, _ in src.files]
    assert names == sorted(names)  # classes sorted, then files sorted within each class
    want = [sorted(CLASSES).index(n.split("_")[0]) for n in names]
    np.testing.assert_array_equal(src.labels, want)
    assert src.labels.dtype == np.int64 and src.shape == (3, 224, 224)


def test_eval_transform_matches_reference(tree: Path) -> None:
    src = open_split(SplitSpec("imagenet", "test", str(tree)))
    idx = np.array([3, 0, 5])
    got = src.images(idx)
    assert got.dtype == np.float32 and got.shape == (3, 3, 224, 224)
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(got[k], reference_eval(src.files[i][0]))
    np.testing.assert_array_equal(src.images(idx), got)  # same values on every call


@pytest.mark.parametrize(("w", "h"), [(224, 224), (256, 256), (300, 255), (255, 300), (1000, 57), (57, 1000)])
def test_eval_transform_edge_sizes(tmp_path: Path, w: int, h: int) -> None:
    """Exact-size, upscaled and extreme-aspect images, and odd crop offsets (rounding of the offset)."""
    path = tmp_path / "x.JPEG"
    _jpeg(path, w, h, np.random.default_rng(w * h))
    np.testing.assert_array_equal(eval_image(path), reference_eval(path))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "x.JPEG"
    _jpeg(path, 320, 240, np.random.default_rng(1), mode)
    np.testing.assert_array_equal(eval_image(path), reference_eval(path))


def test_train_split_and_only_val(tree: Path, tmp_path: Path) -> None:
    train = open_split(SplitSpec("imagenet", "train", str(tree)))
    assert len(train.labels) == 2 * len(CLASSES)
    only_val = make_tree(tmp_path / "v")
    import shutil

    shutil.rmtree(only_val / "train")  # evaluation only: classes from val/
    src = open_split(SplitSpec("imagenet", "test", str(only_val)))
    np.testing.assert_array_equal(src.labels, np.repeat(np.arange(len(CLASSES)), 2))


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QCFS_IMAGENET_DIR", raising=False)
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", None))
    assert "QCFS_IMAGENET_DIR" in _one_line(err)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", str(missing)))
    msg = _one_line(err)
    assert str(missing / "val") in msg and str(missing / "train") in msg


def test_missing_val(tree: Path) -> None:
    import shutil

    shutil.rmtree(tree / "val")
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", str(tree)))
    assert str(tree / "val") in _one_line(err)


def test_class_mismatch(tree: Path) -> None:
    (tree / "val" / "n09999999").mkdir()
    _jpeg(tree / "val" / "n09999999" / "a.JPEG", 64, 64, np.random.default_rng(2))
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", str(tree)))
    assert "n09999999" in _one_line(err)
    import shutil

    shutil.rmtree(tree / "val" / "n09999999")
    shutil.rmtree(tree / "val" / CLASSES[1])  # a class missing from val/ would shift every later label
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", str(tree)))
    assert CLASSES[1] in _one_line(err)


def test_corrupt_jpeg_names_the_file(tree: Path) -> None:
    src = open_split(SplitSpec("imagenet", "test", str(tree)))
    bad = src.files[1][0]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(DatasetError) as err:
        src.images(np.array([0, 1]))
    assert str(bad) in _one_line(err)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError) as err:
        src.images(np.array([1]))
    assert str(bad) in _one_line(err)


def test_decompression_bomb_is_refused_before_decoding(tree: Path) -> None:
    """A 9000x9000 (81 Mpixel) image is over qcfs's limit; refused from the header, one line naming it."""
    src = open_split(SplitSpec("imagenet", "test", str(tree)))
    bomb = src.files[2][0]
    Image.new("L", (9000, 9000)).save(bomb, format="JPEG", quality=10)
    with pytest.raises(DatasetError) as err:
        src.images(np.array([2]))
    msg = _one_line(err)
    assert str(bomb) in msg and "9000x9000" in msg


def test_no_images(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for cls in CLASSES:
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        open_split(SplitSpec("imagenet", "test", str(tmp_path)))
    assert str(tmp_path / "val") in _one_line(err)
