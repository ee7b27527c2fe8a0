"""The behavioural data detector (``perturbation-consistency``) on real MNIST, two
architectures, tripwire's and ART's poisons, beside the feature-space ensemble.

For each cell (attack, rate) and architecture: poison a stratified MNIST subset, train
the reference recipe on it (``cnn-small``, tripwire's default, and ``resnet-mini``, a
residual design), then run ``scan_data`` with the trained model, as ``scan-data --model``
does, and report for ``perturbation-consistency`` alone and for the ensemble (every
detector, family rule): precision, recall, F1, flag rate, and the detector's time as a
multiple of one forward pass over the data. ``art-badnets`` applies ART's
``add_pattern_bd`` to the same victims as tripwire's BadNets (an attack tripwire did not
write). Nothing here is tuned: every threshold is the detectors' default.

    PYTHONPATH=src python benchmarks/perturbation_consistency.py \\
        --data-dir ../shared/datasets --out runs/perturbation.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

CELLS = [
    ("clean", 0.0),
    ("badnets", 0.01),
    ("badnets", 0.05),
    ("badnets", 0.1),
    ("art-badnets", 0.05),
    ("blend", 0.05),
    ("blend", 0.1),
    ("wanet", 0.05),
    ("label-consistent", 0.05),
]


def _poison(train: Any, kind: str, rate: float, target: int, seed: int) -> Any:
    from tripwire.attacks import poison_dataset
    from tripwire.io.dataset import from_model_space

    if kind == "clean":
        return replace(train, poisoned=np.zeros(len(train), bool), attack=None)
    if kind != "art-badnets":
        return poison_dataset(train, kind, rate=rate, target=target, seed=seed)
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd

    tw = poison_dataset(train, "badnets", rate=rate, target=target, seed=seed)
    idx = np.flatnonzero(tw.poisoned)
    attack = PoisoningAttackBackdoor(
        lambda x: add_pattern_bd(x, distance=2, pixel_value=1, channels_first=True)
    )
    onehot = np.eye(train.n_classes, dtype=np.float32)[target]
    xp, _ = attack.poison(train.model_input(idx), y=onehot, broadcast=True)
    x, y = train.x.copy(), train.y.copy()
    x[idx] = from_model_space(np.asarray(xp, np.float32), train.layout, train.x.dtype)
    y[idx] = target
    mask = np.zeros(len(train), bool)
    mask[idx] = True
    return replace(train, x=x, y=y, poisoned=mask, attack=None)


def _predictor(model: Any) -> Any:
    return lambda x: model.logits(x).argmax(1)


def _metrics(flags: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    tp = int((flags & truth).sum())
    p = tp / max(int(flags.sum()), 1)
    r = tp / max(int(truth.sum()), 1) if truth.any() else None
    f1 = None if r is None else 2 * p * r / max(p + r, 1e-9)
    return {
        "flagged": int(flags.sum()),
        "precision": round(p, 4) if truth.any() else None,
        "recall": None if r is None else round(r, 4),
        "f1": None if f1 is None else round(f1, 4),
        "flag_rate": round(float(flags.mean()), 5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--train", type=int, default=10000, help="training subset size")
    ap.add_argument("--archs", default="cnn-small,resnet-mini")
    ap.add_argument("--cells", default=None, help="kind:rate,... (default: all)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/perturbation.jsonl")
    args = ap.parse_args()

    import torch

    from tripwire.attacks import attack_success_rate
    from tripwire.bench.runner import stratified_subset
    from tripwire.io import load_dataset
    from tripwire.models.loading import model_from_module
    from tripwire.models.train import TrainConfig, train_model
    from tripwire.scan.data import scan_data

    torch.set_num_threads(2)
    spec = f"{args.data_dir}/mnist.npz"
    train = stratified_subset(load_dataset(spec, split="train"), args.train, args.seed)
    test = stratified_subset(load_dataset(spec, split="test"), 2000, args.seed)
    cells = CELLS
    if args.cells:
        cells = [(c.split(":")[0], float(c.split(":")[1])) for c in args.cells.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for arch in args.archs.split(","):
        for kind, rate in cells:
            t0 = time.perf_counter()
            ds = _poison(train, kind, rate, 0, args.seed)
            truth = np.asarray(ds.poisoned, bool)
            cfg = TrainConfig(arch=arch, seed=args.seed)
            if args.epochs:
                cfg = replace(cfg, epochs=args.epochs)
            res = train_model(ds, cfg, test=test, show_progress=False)
            model = model_from_module(res.model, arch)
            asr = attack_success_rate(_predictor(model), test, ds.attack) if ds.attack else None
            tf = time.perf_counter()
            feats = model.features(ds.model_input())
            forward_s = time.perf_counter() - tf
            scan = scan_data(ds, feats, seed=args.seed, model=model)
            det = scan.detectors["perturbation-consistency"]
            row = {
                "arch": arch,
                "attack": kind,
                "rate": rate,
                "n": len(ds),
                "clean_accuracy": round(res.accuracy, 4),
                "asr": None if asr is None else round(asr, 4),
                "forward_s": round(forward_s, 2),
                "perturbation": {
                    **_metrics(det.flags, truth),
                    "time_x_forward": round(
                        scan.timings["perturbation-consistency"] / max(forward_s, 1e-9), 2
                    ),
                    "candidates": det.evidence["candidates"],
                    "target_classes": det.evidence["target_classes"],
                    "unconfirmed_excess": [
                        c["class"] for c in det.evidence["unconfirmed_excess_classes"]
                    ],
                },
                "ensemble": _metrics(scan.flags, truth),
                "scan_x_forward": round(sum(scan.timings.values()) / max(forward_s, 1e-9), 2),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(row), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
