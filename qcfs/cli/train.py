"""`qcfs-train --model M --dataset D -o ckpt.pt`: train a QCFS network with the paper's recipe."""

from __future__ import annotations

import argparse
import sys

from qcfs import safe_io
from qcfs.cli import OneLineParser
from qcfs.cli.values import L_VALUE, SEED, integer, number
from qcfs.errors import QCFSError, cli_entry

MODELS = ("cnn", "vgg16", "resnet18", "resnet20", "resnet34")
DATASETS = ("digits", "fashion-mnist", "cifar10")


_LAM = number(0, 1e6, lo_open=True, what="a number or 'data'")


def _lam_init(text: str) -> float | str:
    return text if text == "data" else _LAM(text)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="qcfs-train", description=__doc__)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("-o", "--output", required=True, help="checkpoint path (.pt), rewritten after every epoch")
    p.add_argument("--L", type=L_VALUE, default=4, help="QCFS quantization steps (default 4)")
    p.add_argument("--epochs", type=integer(1, 100_000, "a number of epochs"),
                   help="default: digits 30, fashion-mnist 30, cifar10 300 (paper)")
    p.add_argument("--lr", type=number(0, 100, lo_open=True), default=0.1)
    p.add_argument("--batch", type=integer(1, 1 << 20, "a batch size"), default=128)
    p.add_argument("--wd", type=number(0, 1), default=5e-4, help="weight decay on all parameters, λ included")
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
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_before_training(args)  # before a download, so a bad -o costs no transfer
    from qcfs.download import requested_data_dir

    args.data_dir = requested_data_dir(args.dataset, args.data_dir, args.download, progress=not args.no_progress)
    if args.download:
        check_before_training(args)  # again, against the data folder the download chose
    from qcfs.frontend.train import TrainConfig, train_model

    cfg = TrainConfig(model=args.model, dataset=args.dataset, output=args.output, L=args.L, epochs=args.epochs,
                      lr=args.lr, batch=args.batch, wd=args.wd, seed=args.seed, device=args.device,
                      data_dir=args.data_dir, lam_init=8.0 if args.lam_init == "data" else args.lam_init,
                      lam_from_data=args.lam_init == "data", resume=args.resume,
                      time_budget=args.time_budget, compile=args.compile, progress=not args.no_progress)
    final = train_model(cfg)
    print(f"trained {args.model} on {args.dataset}: test accuracy {final['test_acc']:.2f} % "
          f"after {final['epoch']} epochs -> {args.output}", file=sys.stderr)
    return 0


def check_before_training(args: argparse.Namespace) -> None:
    """Everything that would fail after an epoch, refused before the data is even loaded: the checkpoint path
    (qcfs.safe_io rules: not a dataset file, a regular file or new path, writable folder) and --resume onto a
    checkpoint of another network."""
    from qcfs.data import dataset_inputs

    safe_io.check_output(args.output, "-o", inputs=dataset_inputs(args.dataset, args.data_dir))
    if args.resume and safe_io.Path(args.output).exists():
        from qcfs.data import dataset_info
        from qcfs.frontend.ckpt_config import check_resume
        from qcfs.frontend.models import ModelConfig

        info = dataset_info(args.dataset)
        want = ModelConfig(args.model, info.shape[0], info.classes, info.shape[1], args.L)
        check_resume(safe_io.regular_input(args.output, "checkpoint"), want, args.dataset)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise QCFSError("--device cuda requested but torch sees no CUDA device")


if __name__ == "__main__":
    sys.exit(main())
