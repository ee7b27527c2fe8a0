"""Flags and helpers that several commands share."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from tripwire.errors import UsageError
from tripwire.io import Dataset, load_dataset

#: Human-facing output goes to stderr so that stdout stays machine-readable.
console = Console(stderr=True, highlight=False)


def out(text: str) -> None:
    """Print a result line to stdout (what scripts read)."""
    print(text, file=sys.stdout, flush=True)


def add_data_args(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """DATA plus the flags every dataset loader understands."""
    if positional:
        p.add_argument(
            "data",
            metavar="DATA",
            help="an .npz, .csv, image folder, .tar/.tar.gz of one, or bundled:digits|mnist",
        )
    p.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="which split of a split-keyed source to read (default: train)",
    )
    p.add_argument("--label-column", help="label column of a CSV table")
    p.add_argument(
        "--image-size",
        type=parse_image_size,
        help="resize folder/archive images to HxW (for example 32x32)",
    )


def parse_image_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (for example 32x32)") from None
    if h < 1 or w < 1 or h > 4096 or w > 4096:
        raise argparse.ArgumentTypeError(f"'{text}' is out of range")
    return h, w


def load_data(
    args: argparse.Namespace, spec: str | None = None, split: str | None = None
) -> Dataset:
    """Load the dataset the flags describe (validation happens before any progress bar)."""
    return load_dataset(
        spec or args.data,
        split=split or args.split,
        label_column=getattr(args, "label_column", None),
        image_size=getattr(args, "image_size", None),
    )


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return v


def require(condition: bool, message: str, path: Any = None) -> None:
    """Raise a :class:`UsageError` when ``condition`` is false."""
    if not condition:
        raise UsageError(message, path)
