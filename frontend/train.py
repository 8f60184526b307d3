"""QCFS training with the paper's recipe: SGD (momentum 0.9), cosine learning rate, weight decay on every
parameter including λ, random crop 4 + horizontal flip for CIFAR. Small datasets stay whole in (GPU) memory
and are augmented in batches, so the same loop is quick on 2 CPU cores and on a GPU (channels_last, bf16);
ImageNet streams from its folders through DataLoader workers (imagenet_train.py).

Data-parallel (`--ddp` under torchrun, distributed.py): K processes compute the K strided shares of the same
global batch a single process would, so the run equals one process's within float rounding. In memory, every
rank draws the same permutation and augments the same global batch with the same generator, then keeps rows
r, r+K, ... of it (identical inputs, identical operations: identical batch on every rank). For ImageNet, torch's
DistributedSampler deals the seeded permutation out in the same strided way (rank r's k-th batch of batch/K
is exactly its share of global batch k), its padding repeats are dropped, and every image's augmentation is
seeded by (seed, epoch, index) alone."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from qcfs.data import DatasetInfo, dataset_info, load_split
from qcfs.frontend import distributed
from qcfs.frontend.augment import random_crop_flip
from qcfs.frontend.checkpoint import read_checkpoint, save_checkpoint
from qcfs.frontend.fast_recipe import FAST, WeightEMA, fast_lr, init_whitening, param_groups, prepare_model
from qcfs.frontend.models import ModelConfig, build_model
from qcfs.frontend.qcfs_act import QCFS

DEFAULT_EPOCHS = {"digits": 30, "fashion-mnist": 30, "cifar10": 300, "imagenet": 120}
RECIPES = ("paper", "fast")  # fast: frontend/fast_recipe.py (in-memory datasets)
LAM_SAMPLES = 1024  # --lam-init data: training samples the percentiles are taken on
# ImageNet: 64 images at 224x224 already give 51 M values per early layer (1,024 would need ~ 13 GB per layer
# activation); the percentile is over pixels, so 64 images are plenty
LAM_SAMPLES_IMAGENET = 64
AUGMENT_PAD = {"cifar10": 4}  # the paper augments CIFAR only


@dataclass
class TrainConfig:
    model: str
    dataset: str
    output: str
    L: int = 4
    epochs: int | None = None  # None: DEFAULT_EPOCHS[dataset]
    lr: float = 0.1
    batch: int = 128
    wd: float = 5e-4
    momentum: float = 0.9
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    lam_init: float = 8.0
    # start λ at the 99.9th percentile of each layer's inputs (lambda_init.py); default since it measured best
    # at T = 1-2 (digits: 9.7 -> 91.9 % at T = 1, ANN within noise; BENCHMARKS.md section 2)
    lam_from_data: bool = True
    phi: float = 0.5
    resume: bool = False
    time_budget: float | None = None  # seconds; shortens the cosine schedule after epoch 1 to fit
    compile: bool = False
    progress: bool = True
    ddp: bool = False  # torch.distributed data parallel (under torchrun); batch stays the global batch
    workers: int | None = None  # ImageNet DataLoader workers per process (None: min(8, CPUs per process))
    image_size: int | None = None  # ImageNet only: crop size (None: 224, the paper's)
    recipe: str = "paper"  # "paper" (SGD, cosine) or "fast" (fast_recipe.py)
    val: int = 0  # training images held out (seeded) for per-epoch validation; the rest is trained on

    def total_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return FAST.epochs if self.recipe == "fast" else DEFAULT_EPOCHS[self.dataset]


def recipe_defaults(recipe: str) -> dict[str, float]:
    """lr, batch, wd and momentum of `recipe` (what qcfs-train uses where its flags are not given)."""
    if recipe == "fast":
        return {"lr": FAST.lr, "batch": FAST.batch, "wd": FAST.wd, "momentum": FAST.momentum}
    return {"lr": 0.1, "batch": 128, "wd": 5e-4, "momentum": 0.9}


def cosine_lr(base: float, epoch: int, total: int) -> float:
    """Learning rate of `epoch` (0-based) under a cosine schedule over `total` epochs (stateless: resumable)."""
    return 0.5 * base * (1.0 + math.cos(math.pi * epoch / max(total, 1)))


def lambdas(model: nn.Module) -> dict[str, float]:
    return {name: round(float(m.lam.detach()), 5) for name, m in model.named_modules() if isinstance(m, QCFS)}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy (%) of `model` on normalized, device-resident tensors."""
    return 100.0 * _correct(model, x, y, batch) / max(len(y), 1)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> int:
    model.eval()
    correct = 0
    with torch.no_grad(), _autocast(x.device):
        for i in range(0, len(y), batch):
            correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct


def _autocast(device: torch.device):  # type: ignore[no-untyped-def]
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _tensors(cfg: TrainConfig, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(cfg.dataset)
    x, y = load_split(cfg.dataset, split, cfg.data_dir)
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    xt = ((torch.from_numpy(x) - mean) / std).to(device)
    if device.type == "cuda":
        xt = xt.contiguous(memory_format=torch.channels_last)
    return xt, torch.from_numpy(y).to(device)


Batch = tuple[torch.Tensor, torch.Tensor, int]  # this rank's inputs and labels, size of the global batch


class InMemoryData:
    """digits, Fashion-MNIST, CIFAR-10: both splits as device tensors, batch augmentation on the device."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.x_train, self.y_train = _tensors(cfg, "train", device)
        self.x_test, self.y_test = _tensors(cfg, "test", device)
        self.x_val = self.y_val = None
        if cfg.val:  # a seeded random holdout of the training images (never the test split) for choosing settings
            if not 0 < cfg.val < len(self.y_train):
                from qcfs.errors import QCFSError

                raise QCFSError(f"--val {cfg.val}: must be between 1 and {len(self.y_train) - 1} "
                                f"({cfg.dataset} has {len(self.y_train)} training images)")
            perm = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(cfg.seed + 7919))
            held, kept = perm[: cfg.val].to(device), perm[cfg.val :].to(device)
            self.x_val, self.y_val = self.x_train[held], self.y_train[held]
            self.x_train, self.y_train = self.x_train[kept], self.y_train[kept]
        self.n_train = len(self.y_train)
        self.pad = FAST.translate if cfg.recipe == "fast" else AUGMENT_PAD.get(cfg.dataset, 0)

    def calibration(self, n: int = LAM_SAMPLES) -> torch.Tensor:
        gen0 = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        sample = torch.randperm(self.n_train, device=self.device, generator=gen0)[:n]
        return self.x_train[sample]

    def val_accuracy(self, model: nn.Module) -> float | None:
        return None if self.y_val is None else evaluate(model, self.x_val, self.y_val)

    def batches(self, epoch: int, ctx: distributed.Dist) -> Iterator[Batch]:
        cfg, dev = self.cfg, self.device
        gen = torch.Generator(device=dev).manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(self.n_train, device=dev, generator=gen)
        for b in range(math.ceil(self.n_train / cfg.batch)):
            idx = perm[b * cfg.batch : (b + 1) * cfg.batch]
            mine = distributed.share(len(idx), ctx)
            if self.pad:  # the whole global batch, on every rank: the same random numbers as one process
                xb = random_crop_flip(self.x_train[idx], self.pad, gen)[mine]
            else:
                xb = self.x_train[idx[mine]]
            if dev.type == "cuda" or cfg.recipe == "fast":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, self.y_train[idx[mine]], len(idx)

    def test_counts(self, model: nn.Module, ctx: distributed.Dist) -> tuple[int, int]:
        """(correct, total) on this rank's share of the test split (rows r, r+K, ...)."""
        mine = distributed.share(len(self.y_test), ctx)
        return _correct(model, self.x_test[mine], self.y_test[mine]), len(self.y_test[mine])


class ImageNetData:
    """ImageNet from its folders: DataLoader workers decode and augment (imagenet_train.py), a
    DistributedSampler deals out the seeded permutation; val/ is sharded r, r+K, ... for evaluation."""

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, device: torch.device, ctx: distributed.Dist) -> None:
        import os

        from qcfs.frontend.imagenet_train import EvalFolder, TrainFolder
        from qcfs.data.imagenet import classes

        self.cfg, self.device, self.ctx = cfg, device, ctx
        self.size = cfg.image_size or info.shape[1]
        self.train = TrainFolder(cfg.data_dir, self.size, info.mean, info.std, cfg.seed)
        self.val = EvalFolder(cfg.data_dir, self.size, info.mean, info.std)
        self.n_train = len(self.train)
        self.classes = len(classes(cfg.data_dir))  # the class folders of train/ (qcfs.data.imagenet's rule)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))  # torchrun: processes on this node
        self.workers = cfg.workers if cfg.workers is not None else max(1, min(8, cpus // max(per_node, 1)))

    def _loader(self, dataset: Any, batch: int, sampler: Any = None) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(dataset, batch_size=batch, sampler=sampler, shuffle=False, drop_last=False,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)  # workers restart per epoch and copy the dataset's epoch

    def calibration(self) -> torch.Tensor:
        from qcfs.frontend.imagenet_train import PlainTrain

        gen0 = torch.Generator().manual_seed(self.cfg.seed)
        sample = torch.randperm(self.n_train, generator=gen0)[:LAM_SAMPLES_IMAGENET].tolist()
        return torch.cat(list(self._loader(PlainTrain(self.train, sample), 64))).to(self.device)

    def batches(self, epoch: int, ctx: distributed.Dist) -> Iterator[Batch]:
        from torch.utils.data import DistributedSampler

        cfg, k = self.cfg, ctx.world
        local = cfg.batch // k
        # the same permutation as one process (seed + epoch into torch.randperm), dealt out strided; the
        # padding it adds to make the epoch divisible by K (positions >= N) is dropped below
        sampler = DistributedSampler(self.train, num_replicas=k, rank=ctx.rank, shuffle=True,
                                     seed=cfg.seed * 100_003, drop_last=False)
        sampler.set_epoch(epoch)
        self.train.epoch = epoch
        for b, (xb, yb) in enumerate(self._loader(self.train, local, sampler)):
            n_global = min(cfg.batch, self.n_train - b * cfg.batch)
            positions = ctx.rank + k * (b * local + torch.arange(len(yb)))
            keep = positions < self.n_train
            if not bool(keep.all()):
                xb, yb = xb[keep], yb[keep]
            xb = xb.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb.to(self.device, non_blocking=True), n_global

    def test_counts(self, model: nn.Module, ctx: distributed.Dist) -> tuple[int, int]:
        from torch.utils.data import Subset

        shard = Subset(self.val, range(ctx.rank, len(self.val), ctx.world))
        model.eval()
        correct = 0
        with torch.no_grad(), _autocast(self.device):
            for xb, yb in self._loader(shard, max(self.cfg.batch // ctx.world, 32)):
                out = model(xb.to(self.device, non_blocking=True))
                correct += int((out.argmax(1).cpu() == yb).sum())
        return correct, len(shard)


def _averaged(net: nn.Module, ema: WeightEMA | None) -> nn.Module:
    """`net` itself, or (fast recipe) a copy of it holding the averaged weights."""
    if ema is None:
        return net
    import copy

    avg = copy.deepcopy(net)
    ema.copy_to(avg)
    return avg


def train_model(cfg: TrainConfig, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Train (or resume) and save the checkpoint after every epoch. Returns the final epoch's log record.
    With cfg.ddp, joins torch.distributed first (torchrun's environment) and leaves it at the end."""
    distributed.check_launch(cfg.ddp)
    if cfg.ddp:
        ctx, device = distributed.init(cfg.device)
    else:
        ctx, device = distributed.SINGLE, torch.device(cfg.device)
    try:
        return _train(cfg, ctx, device, log)
    finally:
        distributed.shutdown(ctx)


def _train(cfg: TrainConfig, ctx: distributed.Dist, device: torch.device, log) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if device.type == "cuda" and not torch.cuda.is_available():
        from qcfs.errors import QCFSError

        raise QCFSError("--device cuda requested but torch sees no CUDA device")
    distributed.check_batch(cfg.batch, ctx.world)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    info = dataset_info(cfg.dataset)
    if cfg.dataset == "imagenet":
        data: InMemoryData | ImageNetData = ImageNetData(cfg, info, device, ctx)
        mcfg = ModelConfig(cfg.model, 3, data.classes, data.size, cfg.L, cfg.lam_init, cfg.phi)
    else:
        data = InMemoryData(cfg, device)
        mcfg = ModelConfig(cfg.model, info.shape[0], info.classes, info.shape[1], cfg.L, cfg.lam_init, cfg.phi)
    model = build_model(mcfg).to(device)
    fast = cfg.recipe == "fast"
    if device.type == "cuda" or fast:  # oneDNN's NHWC convolutions: ~15 % faster per step on 2 CPU cores too
        model = model.to(memory_format=torch.channels_last)
    out = Path(cfg.output)
    resuming = cfg.resume and out.exists()
    if fast and isinstance(data, ImageNetData):
        from qcfs.errors import QCFSError

        raise QCFSError("--recipe fast trains the in-memory datasets (digits, fashion-mnist, cifar10); "
                        "use --recipe paper for imagenet")
    if fast:
        prepare_model(model)
    if fast and not resuming:  # every rank computes the same basis from the same seeded images
        init_whitening(model, data.calibration(FAST.whiten_samples))
    # λ from data on rank 0 only: DDP's constructor broadcasts rank 0's parameters (λ included) to every rank
    if cfg.lam_from_data and not resuming and ctx.main:
        from qcfs.frontend.lambda_init import calibrate_lambdas

        calibrate_lambdas(model, data.calibration())
    if fast:  # scales the fresh classifier's weights: a resumed run overwrites them below
        groups = param_groups(model, cfg.wd)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd, nesterov=fast)
    ema = WeightEMA(model) if fast else None
    total = cfg.total_epochs()
    start_epoch, history = 0, []
    if resuming:  # a checkpoint holds no per-rank state, so it resumes under any world size
        ckpt = read_checkpoint(out)
        trained_with = (ckpt.get("train_config") or {}).get("recipe", "paper")
        if trained_with != cfg.recipe:
            from qcfs.errors import QCFSError

            raise QCFSError(f"--resume {out}: the checkpoint was trained with --recipe {trained_with}, not "
                            f"{cfg.recipe}; resume with --recipe {trained_with} or choose another -o")
        if ema is not None:  # the fast recipe saves the averaged weights as state_dict, the live ones beside
            if "live_state_dict" not in ckpt:
                from qcfs.errors import QCFSError

                raise QCFSError(f"--resume {out}: not a --recipe fast checkpoint (no live weights); drop --resume "
                                "or use the recipe it was trained with")
            model.load_state_dict(ckpt["live_state_dict"])
            ema.load(ckpt["state_dict"], int(ckpt.get("ema_updates", 0)))
        else:
            model.load_state_dict(ckpt["state_dict"])
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            from qcfs.errors import QCFSError

            raise QCFSError(f"--resume {out}: its optimizer state does not fit this version's parameter groups "
                            f"({exc}); train it afresh under another -o") from None
        start_epoch, history, total = int(ckpt["epoch"]), list(ckpt["log"]), int(ckpt["total_epochs"])
        torch.set_rng_state(ckpt["rng"])
    if ctx.rank > 0:
        # the global RNG only drives dropout (vgg16): other masks on other ranks, from (seed, epoch, rank)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, start_epoch, ctx.rank]).generate_state(1)[0]))
    if ctx.enabled:
        model = distributed.sync_batchnorm(model, ctx, device)  # same Parameter objects: opt still holds them
    net = model  # the unwrapped module: what is evaluated and saved (same state-dict keys as without --ddp)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # no buffer broadcast before each forward: synchronized BatchNorm keeps running statistics equal on every
        # rank (DDP still copies rank 0's parameters and buffers at construction: λ from data, resumed state)
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    forward_sync_buffers=False)
    step_fn = torch.compile(model) if cfg.compile else model
    smoothing = FAST.label_smoothing if fast else 0.0
    normalize = {"mean": list(info.mean), "std": list(info.std)}
    record: dict[str, Any] = history[-1] if history else {}
    epoch = start_epoch
    n_batches = math.ceil(data.n_train / cfg.batch)
    while epoch < total:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = cosine_lr(cfg.lr, epoch, total)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bar = tqdm(data.batches(epoch, ctx), total=n_batches, desc=f"epoch {epoch + 1}/{total}", leave=False,
                   file=sys.stderr, disable=not (cfg.progress and ctx.main))
        for b, (xb, yb, n_global) in enumerate(bar):
            if fast:  # per step: a ten-epoch schedule cannot afford epoch-sized lr jumps
                for g in opt.param_groups:  # a group with "until_epoch" stays fixed from that epoch on (lr 0)
                    live = epoch < g.get("until_epoch", total)
                    g["lr"] = live * g["lr_scale"] * fast_lr(cfg.lr, (epoch * n_batches + b) / (total * n_batches))
            with _autocast(device):
                logits = step_fn(xb)
            if ctx.enabled:
                # DDP averages gradients over the K ranks: this rank's summed loss x K / global batch size makes
                # that average the global batch's mean loss, also when the shares differ (the last batch)
                ce = F.cross_entropy(logits.float(), yb, reduction="sum", label_smoothing=smoothing)
                loss = ce * (ctx.world / n_global)
                loss_sum += ce.detach()
            else:
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=smoothing)
                loss_sum += loss.detach() * len(yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(net)
            correct += (logits.argmax(1) == yb).sum()
        epoch += 1
        seconds = time.perf_counter() - t0
        if cfg.time_budget and epoch == start_epoch + 1:
            fit = distributed.broadcast_int(max(epoch, int(cfg.time_budget // max(seconds, 1e-9))), ctx, device)
            total = min(total, fit)
        # what is evaluated and saved: the weight average under the fast recipe, the trained weights otherwise
        final = _averaged(net, ema)
        # the paper recipe logs test accuracy every epoch (as the paper's code does); the fast recipe touches the
        # test split once, after the last epoch, and reports the --val holdout per epoch
        test_now = not fast or epoch >= total
        test_correct, test_n = data.test_counts(final, ctx) if test_now else (0, 0)
        sums = distributed.all_reduce_sum([float(loss_sum), float(correct), test_correct, test_n], ctx, device)
        record = {
            "epoch": epoch,
            "total_epochs": total,
            "loss": round(float(sums[0]) / data.n_train, 5),
            "train_acc": round(100.0 * float(sums[1]) / data.n_train, 3),
            "lr": round(opt.param_groups[0]["lr"], 6),
            "epoch_seconds": round(seconds, 3),
            "lambda": lambdas(final),
        }
        if test_now:
            record["test_acc"] = round(100.0 * float(sums[2]) / max(float(sums[3]), 1.0), 3)
        val = data.val_accuracy(final) if isinstance(data, InMemoryData) else None
        if val is not None:
            record["val_acc"] = round(val, 3)
        if ctx.enabled:
            record["world_size"] = ctx.world
        history.append(record)
        if ctx.main:
            extra = {} if ema is None else {"live_state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                                            "ema_updates": ema.updates}
            save_checkpoint(out, final, mcfg, cfg.dataset, normalize, optimizer=opt.state_dict(), epoch=epoch,
                            total_epochs=total, log=history, rng=torch.get_rng_state(),
                            train_config={k: v for k, v in asdict(cfg).items() if v is not None}, **extra)
            log(json.dumps(record))  # after the save: whoever reads the line finds the epoch on disk
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()  # no rank returns before rank 0 has written the last checkpoint
    return record
