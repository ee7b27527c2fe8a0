"""Reference-trainer accuracy and training time on the shared datasets.

Trains each dataset's default recipe (the same code path as ``tripwire train`` with no
flags but ``--out``), evaluates on the test split, and appends one JSON line per run to
``--results``. Run by hand; the figures go to docs/benchmarks.md.

    python benchmarks/train_accuracy.py --data-dir ../shared/datasets \
        --datasets mnist,gtsrb,cifar10 --out-dir runs/train --results runs/train/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from tripwire.io import load_dataset
from tripwire.models.train import TrainConfig, save_model, train_model

FILES = {
    "mnist": "mnist.npz",
    "fashion_mnist": "fashion_mnist.npz",
    "gtsrb": "gtsrb_subset.npz",
    "cifar10": "cifar10-jpeg.tar.gz",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--datasets", default="mnist,gtsrb,cifar10")
    ap.add_argument("--arch", default="auto")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="runs/train")
    ap.add_argument("--results", default="runs/train/results.jsonl")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise SystemExit(f"{data_dir}: no such directory (the shared datasets are absent)")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        path = data_dir / FILES[name]
        t0 = time.perf_counter()
        train = load_dataset(path, split="train")
        test = load_dataset(path, split="test")
        load_s = time.perf_counter() - t0
        cfg = TrainConfig(arch=args.arch, epochs=args.epochs, seed=args.seed)
        result = train_model(train, cfg, test=test)
        model_path = out_dir / f"{name}-{result.arch}.pt"
        save_model(result, model_path, train)
        row = {
            "dataset": name,
            "arch": result.arch,
            "epochs": result.epochs,
            "seed": args.seed,
            "test_accuracy": round(result.accuracy, 4),
            "train_samples": result.train_samples,
            "test_samples": result.eval_samples,
            "train_time_s": round(result.train_time_s, 1),
            "load_time_s": round(load_s, 1),
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "model": str(model_path),
        }
        print(json.dumps(row), flush=True)
        with open(args.results, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
