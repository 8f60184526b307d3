"""Data-parallel training with torch.distributed: process-group set-up from torchrun's environment, the rank's
share of a global batch, metric all-reduces, and synchronized BatchNorm.

Why these rules: `qcfs-train --ddp` must give the loss curve of one process with the same global batch (issue
14), so every rank computes its part of *the same* global batch (batch/K samples, the strided share that
torch's DistributedSampler gives), the loss is scaled so DDP's gradient average is the global batch mean even
when the last batch does not split evenly, and BatchNorm normalizes with the global batch's statistics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from qcfs.errors import QCFSError

TORCHRUN_HINT = "torchrun --nproc-per-node K -m qcfs.cli.train --ddp ..."
DEFAULT_JOIN_TIMEOUT_S = 120.0  # for every process to reach MASTER_ADDR:MASTER_PORT (QCFS_DDP_JOIN_TIMEOUT)


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank r of `world` processes (world 1 and rank 0 without --ddp)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    bn_group: object | None = None  # the process group of the BatchNorm statistics (kept apart from DDP's)

    @property
    def enabled(self) -> bool:
        """More than one process: DDP, synchronized BatchNorm, all-reduces. `--ddp` with K = 1 is the plain
        single-process loop (bit for bit), only inside a process group."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes the checkpoint."""
        return self.rank == 0


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def check_launch(ddp: bool) -> None:
    """`--ddp` needs torchrun's environment; torchrun with K > 1 needs `--ddp`. Both refused in one line, before
    any data is read. Why refuse instead of falling back: `--ddp` run by hand as one process would silently
    train alone while the user thinks K processes share the work, and K processes without `--ddp` would each
    train the whole network and overwrite each other's checkpoint."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if ddp and not launched_by_torchrun():
        raise QCFSError(f"--ddp: no torch.distributed environment (RANK, WORLD_SIZE); start it with {TORCHRUN_HINT}")
    if not ddp and world > 1:
        raise QCFSError(f"started as one of {world} processes (WORLD_SIZE={world}) without --ddp: each would train "
                        f"alone and write the same checkpoint; add --ddp ({TORCHRUN_HINT})")


def init(device: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes: gloo on CPU, NCCL on CUDA (LOCAL_RANK picks the GPU)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise QCFSError("--device cuda requested but torch sees no CUDA device")
        if local >= torch.cuda.device_count():
            raise QCFSError(f"LOCAL_RANK {local} but this node has {torch.cuda.device_count()} CUDA device(s); "
                            "start at most that many processes per node (--nproc-per-node)")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, store=_join(rank, world), rank=rank, world_size=world)
    # a second group for the CPU BatchNorm statistics, so their collectives never interleave with DDP's
    # asynchronous gradient buckets on one group (torch.nn.SyncBatchNorm, on CUDA, manages its own)
    bn_group = dist.new_group(backend="gloo") if backend == "gloo" else None
    return Dist(rank, world, local, bn_group), dev


def join_timeout() -> float:
    raw = os.environ.get("QCFS_DDP_JOIN_TIMEOUT")
    try:
        value = float(raw) if raw else DEFAULT_JOIN_TIMEOUT_S
    except ValueError:
        raise QCFSError(f"QCFS_DDP_JOIN_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not 0 < value < 86400:
        raise QCFSError(f"QCFS_DDP_JOIN_TIMEOUT must be in (0, 86400) seconds, got {raw!r}")
    return value


def _join(rank: int, world: int) -> dist.Store:
    """torch's env:// rendezvous (the store torchrun's agent hosts, or rank 0's), waiting at most
    join_timeout() for every process. Why not init_process_group's own: its timeout also bounds every later
    collective, and its default (30 min) let a run whose master is unreachable sit silent; here the wait to
    join is short and the store then gets torch's default for the training's own waits (checkpoint barrier)."""
    from torch.distributed.constants import default_pg_timeout

    wait = join_timeout()
    where = f"MASTER_ADDR={os.environ.get('MASTER_ADDR')} MASTER_PORT={os.environ.get('MASTER_PORT')}"
    try:
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timedelta(seconds=wait)))
    except ValueError as err:  # a missing or malformed MASTER_ADDR / MASTER_PORT
        raise QCFSError(f"--ddp: {' '.join(str(err).split())[:200]} ({TORCHRUN_HINT} sets them)") from None
    except RuntimeError as err:  # DistStoreError, DistNetworkError: nobody there, or not everyone came
        raise QCFSError(f"--ddp: rank {rank} of {world} could not join the others at {where} within {wait:g} s "
                        f"({' '.join(str(err).split())[:160]}); start every process (torchrun) and check that "
                        "the address is reachable (QCFS_DDP_JOIN_TIMEOUT changes the wait)") from None
    store.set_timeout(default_pg_timeout)
    return store


def shutdown(ctx: Dist) -> None:
    if ctx is not SINGLE and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch: int, world: int) -> int:
    """The per-rank batch: --batch is the global batch and must split evenly over the processes."""
    if batch % world:
        raise QCFSError(f"--batch {batch} is the global batch and must be divisible by the {world} processes "
                        f"(each takes batch/{world}); use e.g. --batch {max(world, batch // world * world)}")
    return batch // world


def share(n: int, ctx: Dist) -> slice:
    """Rows of a global batch of `n` that rank r computes: r, r+K, r+2K, ... (DistributedSampler's strided
    assignment; for a full batch, batch/K rows each, and the shares of all ranks partition the batch)."""
    return slice(ctx.rank, n, ctx.world)


def all_reduce_sum(values: list[float] | torch.Tensor, ctx: Dist, device: torch.device) -> torch.Tensor:
    """Sum of a small vector of metrics over the ranks (float64, so counts stay exact)."""
    t = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if ctx.enabled:
        dist.all_reduce(t)
    return t


def broadcast_int(value: int, ctx: Dist, device: torch.device) -> int:
    """Rank 0's value on every rank (decisions from wall-clock times must be the same everywhere)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t.item())


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that normalizes with the statistics of the global batch across all ranks, for CPU tensors.

    Why not torch.nn.SyncBatchNorm: in this torch (2.13 CPU) its forward raises "SyncBatchNorm expected input
    tensor to be on GPU or XPU" for CPU tensors, and a CPU/gloo run must match one process. This computes the
    same thing with torch's autograd-aware all-reduce (torch.distributed._functional_collectives.all_reduce,
    the replacement torch 2.13 names for the deprecated torch.distributed.nn.functional.all_reduce; its
    backward all-reduces the gradient): global mean from all-reduced sums and counts, then the variance from
    all-reduced squared deviations (two passes: E[x²] - E[x]² would lose digits), normalization with both
    (on one process it matches nn.BatchNorm2d's output to ~1 ulp, 1.4e-6 abs on unit-scale data), and running statistics updated exactly as nn.BatchNorm2d updates them (unbiased variance, same
    momentum rule), so they stay equal on every rank and equal to one process's. Uneven local batches
    (the last batch) and empty ones are fine. Used only under --ddp on CPU; eval mode is plain BatchNorm2d.
    """

    group: object | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed._functional_collectives import all_reduce

        group = self.group if self.group is not None else dist.group.WORLD
        dims = [0, 2, 3]
        count = torch.tensor([x.numel() // max(x.shape[1], 1)], dtype=torch.int64)
        dist.all_reduce(count, group=group)
        n = int(count.item())
        if n == 0:
            return x * self.weight.view(1, -1, 1, 1) * 0  # no samples anywhere (never in training); keeps the graph
        mean = all_reduce(x.sum(dims), "sum", group) / n
        xc = x - mean.view(1, -1, 1, 1)
        var = all_reduce((xc * xc).sum(dims), "sum", group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        out = xc * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def sync_batchnorm(model: nn.Module, ctx: Dist, device: torch.device) -> nn.Module:
    """Every BatchNorm2d synchronized across ranks: torch.nn.SyncBatchNorm on CUDA, GlooSyncBatchNorm on CPU.
    Parameters, buffers and state-dict keys are unchanged, so checkpoints load into the plain model."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = GlooSyncBatchNorm  # same attributes and buffers; only forward changes
            child.group = ctx.bn_group
        else:
            sync_batchnorm(child, ctx, device)
    return model
