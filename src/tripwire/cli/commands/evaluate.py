"""``tripwire evaluate``: accuracy of any contract-following model on a dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from tripwire.cli.common import add_data_args, load_data, out, positive_int
from tripwire.errors import MissingSplitError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="accuracy of a model (TorchScript, state dict + --arch, or ONNX) on data",
        description=(
            "Load MODEL safely and measure its accuracy on DATA: the test split where the "
            "data has one (unless --split is given), else all of it."
        ),
    )
    p.add_argument(
        "model", metavar="MODEL", help="TorchScript .pt, state dict with --arch, or .onnx"
    )
    add_data_args(p)
    p.set_defaults(split=None)
    p.add_argument("--arch", help="architecture of a state-dict model")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tripwire.models.loading import load_model, sniff_model_file

    sniff_model_file(args.model)  # refuse pickles and junk before touching the data
    if args.split is None:
        try:
            ds = load_data(args, split="test")
        except MissingSplitError:
            ds = load_data(args, split="train")
    else:
        ds = load_data(args)
    model = load_model(args.model, arch=args.arch, input_shape=ds.input_shape)
    n_out = model.check_input(ds.input_shape, ds.n_classes)
    pred = model.logits(ds.model_input(), batch_size=args.batch_size, show_progress=True).argmax(1)
    acc = float((pred == ds.y).mean())
    per_class = {int(c): round(float((pred[ds.y == c] == c).mean()), 4) for c in np.unique(ds.y)}
    result = {
        "model": args.model,
        "model_kind": model.kind,
        "data": ds.path,
        "split": ds.split,
        "samples": len(ds),
        "outputs": n_out,
        "accuracy": round(acc, 6),
        "per_class_accuracy": per_class,
    }
    if args.json:
        out(json.dumps(result, indent=2))
    else:
        out(f"accuracy {acc:.4f} on {len(ds)} samples of {ds.path} ({ds.split or 'all'})")
    return 0
