"""The test samples one evaluation (`qcfs-run`) runs on: the split, opened as a sample source and checked
against the network that will see it, and the `--limit` subset of it (qcfs.data.subset).

Why checked here: a network fed images of another shape fails deep inside a backend, and an ImageNet network
scored on a tree with other class folders gives a plausible but meaningless accuracy; both are refused in one
line naming the model before anything is simulated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcfs.data.samples import SampleSource, SplitSpec, data_dir_str, open_split
from qcfs.data.subset import describe, subset_indices
from qcfs.errors import QCFSError


@dataclass(frozen=True)
class EvalSplit:
    """The opened split (`spec` reopens it elsewhere, e.g. on a Dask worker) and the samples chosen from it."""

    spec: SplitSpec
    source: SampleSource
    indices: np.ndarray  # int64, sorted, into the split
    subset: dict[str, Any]  # what --json records about the choice (qcfs.data.subset.describe)

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels[self.indices]


def open_eval_split(dataset: str, data_dir: str | os.PathLike | None, *, input_shape: tuple[int, ...],
                    num_classes: int, model: str, limit: int | None = None, rule: str = "spread") -> EvalSplit:
    """The test split of `dataset` for a network with `input_shape` (C, H, W) and `num_classes` outputs (the
    model file `model` is named in errors); `limit` samples by `rule` (qcfs.data.subset.RULES), else all."""
    spec = SplitSpec(dataset, "test", data_dir_str(data_dir))
    source = open_split(spec)
    if tuple(source.shape) != tuple(input_shape):
        raise QCFSError(f"{model}: expects input {tuple(input_shape)}, {dataset} has {tuple(source.shape)}")
    if dataset == "imagenet":
        from qcfs.data.imagenet import check_class_count

        check_class_count(source, num_classes, model)  # type: ignore[arg-type]
    n = len(source.labels)
    return EvalSplit(spec, source, subset_indices(n, limit, rule), describe(n, limit, rule))
