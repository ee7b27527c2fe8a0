"""Where input-pattern's dirty-label test puts each split: the share of the split's smaller
side that looks like another class as inputs, beside the rest of its class.

The test's verdict is switched off so that every split that passes the other tests is
reported with both shares (``looks_other``, ``looks_other_rest``) and the share of
poisons in the smaller side; the rows set ``DIRTY_MARGIN``.

    PYTHONPATH=src python benchmarks/probes/looks_other.py > runs/probe/looks_other.jsonl
"""

from __future__ import annotations

import json

import numpy as np

import tripwire.detectors.poisoning.input_pattern as ip
from tripwire.attacks import poison_dataset
from tripwire.bench.runner import stratified_subset
from tripwire.detectors import DetectorInput
from tripwire.io import load_dataset

CELLS: dict[str, tuple[int | None, list[tuple[str, float]]]] = {
    "gtsrb_subset.npz": (
        None,
        [
            ("clean", 0.0),
            ("badnets", 0.05),
            ("blend", 0.05),
            ("sig", 0.005),
            ("sig", 0.01),
            ("label-consistent", 0.005),
            ("label-consistent", 0.01),
        ],
    ),
    "mnist.npz": (
        None,
        [
            ("clean", 0.0),
            ("blend", 0.05),
            ("badnets", 0.05),
            ("sig", 0.05),
            ("label-consistent", 0.01),
        ],
    ),
    "cifar10-jpeg.tar.gz": (
        10000,
        [("clean", 0.0), ("sig", 0.05), ("label-consistent", 0.05), ("blend", 0.05)],
    ),
    "fashion_mnist.npz": (None, [("clean", 0.0), ("sig", 0.01), ("label-consistent", 0.01)]),
}


def main() -> None:
    ip.is_dirty_label = lambda looks_other, rest: False  # report every split
    for name, (subset, cells) in CELLS.items():
        train = load_dataset(f"../shared/datasets/{name}", split="train")
        if subset is not None:
            train = stratified_subset(train, subset, 0)
        for kind, rate in cells:
            ds = train if kind == "clean" else poison_dataset(train, kind, rate=rate, target=0)
            truth = np.zeros(len(ds), bool) if ds.poisoned is None else np.asarray(ds.poisoned)
            det = ip.InputPatternDetector().fit(DetectorInput(labels=ds.y, data=ds))
            for c in det.classes_:
                if not c.confirmed:
                    continue
                idx = np.flatnonzero(ds.y == c.label)
                side = c.carriers if c.carriers.sum() <= (~c.carriers).sum() else ~c.carriers
                row = {
                    "data": name,
                    "attack": kind,
                    "rate": rate,
                    "class": c.label,
                    "side": int(side.sum()),
                    "poisons_in_side": round(float(truth[idx[side]].mean()), 3),
                    "looks_other": c.looks_other,
                    "looks_other_rest": c.looks_other_rest,
                }
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
