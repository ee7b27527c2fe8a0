"""``tripwire train``: the reference trainer that writes contract-following TorchScript."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tripwire.cli.common import add_data_args, console, load_data, out, positive_int
from tripwire.errors import InputError, MissingDependencyError
from tripwire.io import Dataset, load_test_split


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="train a reference model (TorchScript with features/forward_features)",
        description=(
            "Train a reference model on DATA and write it as TorchScript, with a metadata "
            "file beside it (MODEL.meta.json). Accuracy is measured on the data's test "
            "split when it has one, else on a held-out validation split."
        ),
    )
    add_data_args(p)
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="where to write the model")
    p.add_argument(
        "--arch",
        default="auto",
        help="auto (by input shape), cnn-small, cnn-compact, resnet-mini or mlp",
    )
    p.add_argument("--epochs", type=positive_int, help="default: the architecture's recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="base learning rate (one-cycle peak 2x)")
    p.add_argument(
        "--augment",
        choices=("auto", "none", "crop", "crop+flip"),
        default="auto",
        help="image augmentation (auto: random crops for images of 16px or more)",
    )
    p.add_argument("--test", metavar="DATA", help="evaluation data (default: DATA's test split)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON on stdout")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    from tripwire.models.arch import ARCHITECTURES
    from tripwire.models.train import TrainConfig, metadata_path, save_model, train_model

    if args.arch != "auto" and args.arch not in ARCHITECTURES:
        raise InputError(
            f"unknown architecture (choose from auto, {', '.join(ARCHITECTURES)})", args.arch
        )
    if not 0.0 < args.val_fraction < 0.9:
        raise InputError("must lie between 0 and 0.9", "--val-fraction")
    if not str(args.out).endswith((".pt", ".pth", ".ts")):
        raise InputError("the model is written as TorchScript: use a .pt file name", args.out)
    train = load_data(args)
    test: Dataset | None
    if args.test:
        test = load_data(args, spec=args.test, split="test" if args.test == args.data else "train")
    elif args.split == "train":
        test = load_test_split(
            args.data, label_column=args.label_column, image_size=args.image_size
        )
    else:
        test = None
    cfg = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=args.augment,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("no CUDA device is available", "--device")
    console.print(
        f"training [bold]{cfg.arch}[/] on {train.path} ({len(train)} samples, "
        f"{train.n_classes} classes, input {train.input_shape})"
    )
    result = train_model(train, cfg, test=test)
    meta = save_model(result, args.out, train)
    if args.json:
        out(json.dumps(meta, indent=2))
    else:
        out(
            f"{result.eval_split} accuracy {result.accuracy:.4f} on {result.eval_samples} samples "
            f"({result.arch}, {result.epochs} epochs, {result.train_time_s:.0f} s)"
        )
        out(f"model: {args.out}")
        out(f"metadata: {metadata_path(args.out)}")
    return 0
