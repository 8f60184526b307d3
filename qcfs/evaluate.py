"""Evaluate a network on a list of test samples, shard by shard: the SNN on any backend and, for ONNX or
checkpoint models, the ANN on onnxruntime over exactly the same samples.

Why shards: a split read lazily (ImageNet) is decoded one shard at a time, and Dask (qcfs.distributed) hands
the same shards to its workers. Shards are consecutive slices of the sample list, each shard's result is
computed from its own samples only, and `concat_results` puts them back in sample order, so any sharding
gives the integers of one unsharded run. `execution` decides once per run where the shards go (this process or
a Dask cluster) and `evaluate` runs them there.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from qcfs.data.samples import ArraySource, SampleSource, SplitSpec
from qcfs.intnet import IntNet
from qcfs.runtime.result import SimResult, concat_results
from qcfs.simulate import SimOptions, run_backend

DEFAULT_SHARD = 256  # samples per shard of a lazily read split (ImageNet: 154 MB of float32 input)
SHARDS_PER_WORKER = 4  # on a cluster: enough shards to balance uneven workers, few enough to keep overhead low


def cluster_shard_size(n: int, workers: int) -> int:
    """Default samples per shard on a cluster of `workers`: SHARDS_PER_WORKER shards each, at most DEFAULT_SHARD."""
    return max(1, min(DEFAULT_SHARD, -(-n // (SHARDS_PER_WORKER * workers))))


@dataclass
class ShardResult:
    """What one shard returns to the client: integers and the time its compute took where it ran."""

    result: SimResult
    ann_correct: int | None
    seconds: float


@dataclass
class Evaluation:
    result: SimResult
    ann_correct: int | None
    shards: int
    execution: dict = field(default_factory=dict)  # how it ran (Dask: workers, shards, overheads); not results

    def ann_accuracy(self, n: int) -> float | None:
        return None if self.ann_correct is None else self.ann_correct / n


@functools.lru_cache(maxsize=2)
def _ann_session(canon_bytes: bytes):  # type: ignore[no-untyped-def]
    """One onnxruntime session per model and process: building it costs ~0.1 s, once per shard that was
    the largest per-shard cost (benchmarks/bench_distributed.py)."""
    import onnxruntime as ort

    return ort.InferenceSession(canon_bytes, providers=["CPUExecutionProvider"])


def ann_correct(canon_bytes: bytes, images01: np.ndarray, labels: np.ndarray, mean, std, batch: int) -> int:  # type: ignore[no-untyped-def]
    """Top-1 hits of the canonical ONNX under onnxruntime on `images01` (pixels in [0, 1])."""
    sess = _ann_session(canon_bytes)
    name = sess.get_inputs()[0].name
    c = images01.shape[1]
    m = np.broadcast_to(np.asarray(mean, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (c,)).reshape(1, c, 1, 1)
    correct = 0
    for start in range(0, len(images01), batch):
        x = ((images01[start : start + batch] - m) / s).astype(np.float32)
        correct += int((np.argmax(sess.run(None, {name: x})[0], axis=1) == labels[start : start + batch]).sum())
    return correct


def run_shard(net: IntNet, canon_bytes: bytes | None, source: SampleSource, indices: np.ndarray,
              opts: SimOptions) -> ShardResult:
    """One shard: decode its images, simulate them, score the ANN on them."""
    t0 = time.perf_counter()
    images = source.images(indices)
    result = run_backend(net, images, opts)
    hits = None
    if canon_bytes is not None:
        hits = ann_correct(canon_bytes, images, source.labels[indices], net.input.mean, net.input.std, opts.batch)
    return ShardResult(result, hits, time.perf_counter() - t0)


def shard_slices(n: int, shard_size: int) -> list[slice]:
    return [slice(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def merge(parts: list[ShardResult]) -> tuple[SimResult, int | None]:
    hits = [p.ann_correct for p in parts]
    return concat_results([p.result for p in parts]), (None if None in hits else int(sum(hits)))  # type: ignore[arg-type]


def evaluate_local(net: IntNet, canon_bytes: bytes | None, source: SampleSource, indices: np.ndarray,
                   opts: SimOptions, shard_size: int | None = None) -> Evaluation:
    """In this process. A split already in memory runs as one shard (the backend shows its own progress);
    a lazily read one shard by shard, with a progress bar over shards."""
    indices = np.asarray(indices, dtype=np.int64)
    if isinstance(source, ArraySource) and shard_size is None:
        part = run_shard(net, canon_bytes, source, indices, opts)
        return Evaluation(part.result, part.ann_correct, 1)
    slices = shard_slices(len(indices), shard_size or DEFAULT_SHARD)
    parts = [run_shard(net, canon_bytes, source, indices[s], opts.quiet())
             for s in tqdm(slices, desc="shards", unit="shard", disable=not opts.progress, leave=False)]
    result, hits = merge(parts)
    return Evaluation(result, hits, len(parts))


@dataclass(frozen=True)
class Execution:
    """Where a run's shards go: a Dask client (None: this process), its worker count, and the samples per
    shard (None: an in-memory split at once), decided once for the run, its budget and its report."""

    client: Any
    workers: int
    shard: int | None


@contextlib.contextmanager
def execution(source: SampleSource, n: int, *, workers: int | None = None, scheduler: str | None = None,
              shard_size: int | None = None) -> Iterator[Execution]:
    """A Dask client for `workers` (a new local cluster) or `scheduler` (an existing one), else none: this
    process, and Dask is not even imported. `n`: the samples of the run (they size a cluster's shards)."""
    if not (workers or scheduler):
        lazy = not isinstance(source, ArraySource)
        yield Execution(None, 1, shard_size or (DEFAULT_SHARD if lazy else None))
        return
    from qcfs.distributed import connect, worker_count

    with connect(workers, scheduler) as client:
        count = worker_count(client)
        yield Execution(client, count, shard_size or cluster_shard_size(n, count))


def evaluate(ex: Execution, net: IntNet, canon_bytes: bytes | None, source: SampleSource, spec: SplitSpec,
             indices: np.ndarray, opts: SimOptions) -> Evaluation:
    """The SNN (and the ANN, when there is one) on the samples `indices`: here, or sharded over Dask."""
    if ex.client is None:
        return evaluate_local(net, canon_bytes, source, indices, opts, ex.shard)
    from qcfs.distributed import evaluate_on_dask

    return evaluate_on_dask(ex.client, net, canon_bytes, spec, indices, opts, ex.shard)
