"""`qcfs-train --model M --dataset D -o ckpt.pt`: train a QCFS network with the paper's recipe.
Data-parallel: `torchrun --nproc-per-node K -m qcfs.cli.train --ddp ...` (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import argparse
import os
import sys

from qcfs import safe_io
from qcfs.cli import OneLineParser
from qcfs.cli.values import L_VALUE, SEED, integer, number
from qcfs.errors import QCFSError, cli_entry

MODELS = ("cnn", "cifarnet", "vgg16", "resnet18", "resnet20", "resnet34")
DATASETS = ("digits", "fashion-mnist", "cifar10", "imagenet")


_LAM = number(0, 1e6, lo_open=True, what="a number or 'data'")


def _lam_init(text: str) -> float | str:
    return text if text == "data" else _LAM(text)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-train", description=__doc__)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt), rewritten after every epoch")
    p.add_argument("--L", type=L_VALUE, default=4, help="QCFS quantization steps (default 4)")
    p.add_argument("--phi", type=number(0, 1), default=0.5,
                   help="QCFS shift φ in floor(x·L/λ + φ) (default 0.5, the paper's; 0 gives plain floor "
                        "quantization, the paper's contrast, whose SNN starts at membrane 0 instead of θ/2)")
    p.add_argument("--recipe", choices=("paper", "fast"), default="paper",
                   help="paper (default): SGD, cosine, the paper's epochs; fast: whitened first conv (cifarnet), "
                        "Nesterov SGD with warm-up and linear decay per step, label smoothing 0.2, weight "
                        "averaging (EMA, what is saved), flip + 2-pixel translation, batch 512, 10 epochs "
                        "(README: Fast CPU training)")
    p.add_argument("--epochs", type=integer(1, 100_000, "a number of epochs"),
                   help="default: --recipe fast 10; paper: digits 30, fashion-mnist 30, cifar10 300, imagenet 120")
    p.add_argument("--lr", type=number(0, 100, lo_open=True), help="peak learning rate (default: paper 0.1, fast 0.75)")
    p.add_argument("--batch", type=integer(1, 1 << 20, "a batch size"),
                   help="the global batch (default: paper 128, fast 512); with --ddp each of the K processes "
                        "takes batch/K (K must divide it)")
    p.add_argument("--wd", type=number(0, 1),
                   help="weight decay on all parameters, λ included (default: paper 5e-4, fast 1.33e-3)")
    p.add_argument("--val", type=integer(0, 10_000_000, "a number of images"), default=0,
                   help="hold out this many training images (seeded) and report accuracy on them every epoch, "
                        "for choosing settings without the test split (default 0: train on all)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--data-dir", help="dataset location (see README: Datasets)")
    p.add_argument("--download", action="store_true", help="fetch the dataset from its official source into "
                   "--data-dir (default ~/.cache/qcfs/<dataset>) if missing, checksum-verified (README: Datasets)")
    p.add_argument("--lam-init", type=_lam_init, default="data",
                   help="initial clip level λ: 'data' (default: the 99.9th percentile of each layer's inputs on "
                        "1,024 training samples; measured best at T = 1-2) or a number (8 is the paper's)")
    p.add_argument("--resume", action="store_true", help="continue from --output if it exists")
    p.add_argument("--time-budget", type=number(0, 1e9, lo_open=True), help="seconds: shorten the cosine schedule after epoch 1 to fit")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel over the processes torchrun starts (torchrun --nproc-per-node K -m "
                        "qcfs.cli.train --ddp ...): gloo on CPU, NCCL on CUDA (one GPU per process, by "
                        "LOCAL_RANK); the same result as one process with the same --batch; rank 0 logs and "
                        "writes the checkpoint. Refused without torchrun")
    p.add_argument("--loader-workers", dest="workers", type=integer(0, 256, "a number of DataLoader workers"),
                   help="imagenet: image-decoding DataLoader workers per process (default min(8, CPUs/processes))")
    p.add_argument("--image-size", type=integer(8, 4096, "an image size in pixels"),
                   help="imagenet: training crop and evaluation size (default 224, the paper's; evaluation "
                        "resizes the shorter side to size*256/224 and centre-crops)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_before_training(args)  # before a download, so a bad -o costs no transfer
    from qcfs.data.download import requested_data_dir

    args.data_dir = requested_data_dir(args.dataset, args.data_dir, args.download, progress=not args.no_progress)
    if args.download:
        check_before_training(args)  # again, against the data folder the download chose
    from qcfs.frontend.train import TrainConfig, recipe_defaults, train_model

    hyper = recipe_defaults(args.recipe)  # what the flags leave unsaid
    hyper.update({k: getattr(args, k) for k in ("lr", "batch", "wd") if getattr(args, k) is not None})
    cfg = TrainConfig(model=args.model, dataset=args.dataset, output=args.output, L=args.L, epochs=args.epochs,
                      recipe=args.recipe, phi=args.phi, val=args.val, seed=args.seed, device=args.device,
                      lr=hyper["lr"], batch=int(hyper["batch"]), wd=hyper["wd"], momentum=hyper["momentum"],
                      data_dir=args.data_dir, lam_init=8.0 if args.lam_init == "data" else args.lam_init,
                      lam_from_data=args.lam_init == "data", resume=args.resume,
                      time_budget=args.time_budget, compile=args.compile, progress=not args.no_progress,
                      ddp=args.ddp, workers=args.workers, image_size=args.image_size)
    final = train_model(cfg)
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return 0  # rank 0 reports
    print(f"trained {args.model} on {args.dataset}: test accuracy {final['test_acc']:.2f} % "
          f"after {final['epoch']} epochs -> {args.output}", file=sys.stderr)
    return 0


def check_before_training(args: argparse.Namespace) -> None:
    """Everything that would fail after an epoch, refused before the data is even loaded: the checkpoint path
    (qcfs.safe_io rules: not a dataset file, a regular file or new path, writable folder) and --resume onto a
    checkpoint of another network; --ddp without torchrun (or torchrun without --ddp), a global batch the
    processes cannot share evenly, ImageNet-only options on another dataset, a missing ImageNet tree."""
    from qcfs.data import dataset_inputs
    from qcfs.frontend import distributed

    distributed.check_launch(args.ddp)
    if args.ddp:
        from qcfs.frontend.train import recipe_defaults

        distributed.check_batch(args.batch or int(recipe_defaults(args.recipe)["batch"]), int(os.environ["WORLD_SIZE"]))
    if args.recipe == "fast" and args.dataset == "imagenet":
        raise QCFSError("--recipe fast trains the in-memory datasets (digits, fashion-mnist, cifar10); "
                        "use --recipe paper for imagenet")
    if args.dataset != "imagenet":
        for flag, value in (("--loader-workers", args.workers), ("--image-size", args.image_size)):
            if value is not None:
                raise QCFSError(f"{flag} applies to --dataset imagenet only (the other datasets are held in memory)")
    safe_io.check_output(args.output, "-o", inputs=dataset_inputs(args.dataset, args.data_dir))
    dims = None  # (channels, classes, image size) of the network to train
    if args.dataset == "imagenet":
        from qcfs.data.imagenet import classes, split_dir

        split_dir("train", args.data_dir), split_dir("test", args.data_dir)  # one line naming what is missing
        dims = (3, len(classes(args.data_dir)), args.image_size or 224)
    if args.resume and safe_io.Path(args.output).exists():
        from qcfs.data import dataset_info
        from qcfs.frontend.ckpt_config import check_resume
        from qcfs.frontend.models import ModelConfig

        info = dataset_info(args.dataset)
        channels, n_classes, size = dims or (info.shape[0], info.classes, info.shape[1])
        want = ModelConfig(args.model, channels, n_classes, size, args.L)
        check_resume(safe_io.regular_input(args.output, "checkpoint"), want, args.dataset)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise QCFSError("--device cuda requested but torch sees no CUDA device")


if __name__ == "__main__":
    sys.exit(main())
