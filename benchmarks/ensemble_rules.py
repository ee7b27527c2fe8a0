"""Per-detector flags on quick-suite cells, combined by the ensemble rules side by side.

Usage (models come from the quick suite's cache; missing ones are trained)::

    python benchmarks/ensemble_rules.py --cache-dir /tmp/bench-cache

Prints, per cell, flagged / precision / recall / F1 of the family-quorum rule that
``tripwire.scan.ensemble`` uses and of the first rule ("self-gated detectors alone, any
other flag needs a second detector").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tripwire.attacks import poison_dataset
from tripwire.bench.runner import load_suite_data, train_cached
from tripwire.bench.suites import QUICK
from tripwire.detectors import DetectorInput, Need, available
from tripwire.detectors.oos import oos_probabilities
from tripwire.scan.ensemble import combine

CELLS = [
    ("clean", 0.0, 0),
    ("badnets", 0.05, 0),
    ("badnets", 0.1, 1),
    ("blend", 0.05, 0),
    ("label-flip", 0.05, 0),
    ("label-flip", 0.1, 0),
]
FIRST_RULE_ALONE = {"activation-clustering", "dual-space", "duplicate-labels"}


def _metrics(flags: np.ndarray, truth: np.ndarray) -> str:
    tp = int((flags & truth).sum())
    p = tp / max(int(flags.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    f1 = 2 * p * r / max(p + r, 1e-9)
    return f"{int(flags.sum())} / {p:.3f} / {r:.3f} / {f1:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/bench-cache"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    spec = QUICK.data[0]
    train, test = load_suite_data(spec, None)
    have = frozenset({Need.FEATURES, Need.LABELS, Need.PROBS, Need.DATA})
    print("| cell | family rule | first rule |")
    print("|---|---|---|")
    for kind, rate, seed in CELLS:
        target = None if kind == "label-flip" else 0
        ds = (
            train
            if kind == "clean"
            else poison_dataset(train, kind, rate=rate, target=target, seed=seed)
        )
        truth = ds.poisoned if ds.poisoned is not None else np.zeros(len(ds), bool)
        model = train_cached(ds, test, spec, seed, args.cache_dir)
        feats = model.features(ds.model_input())
        probs = oos_probabilities(feats, ds.y, n_classes=ds.n_classes, random_state=seed)
        inputs = DetectorInput(features=feats, labels=ds.y, probs=probs, data=ds)
        results = {c.name: c().detect(inputs) for c in available(satisfiable_with=have)}
        family = combine(results, len(ds)).flags
        votes = np.sum([r.flags.astype(int) for r in results.values()], axis=0)
        first = votes >= 2
        for name in FIRST_RULE_ALONE & set(results):
            first |= results[name].flags
        cell = f"{kind} {rate} seed {seed}"
        print(f"| {cell} | {_metrics(family, truth)} | {_metrics(first, truth)} |")


if __name__ == "__main__":
    main()
