"""Probe: what the completion of feature-cluster groups adds on standard-suite cells.

Per cell (the suite's cached model, robust thresholds, no reference): the scan as
``tripwire bench`` runs it, and, where ``--margins-dir`` holds the cell's recording run
(``benchmarks/training_dynamics.py``), the scan with ``--dynamics``. The completion's
joining items are captured from the ensemble's callback, so each row gives the verdict
with and without them from one scan: flags, precision and recall, and how many of the
joined items are poisons.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/completion_cells.py \
        --margins-dir runs/s33/dyn cifar10-10k:wanet:0.05:0 gtsrb:blend:0.01:0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from cells import standard_cell  # type: ignore[import-not-found]

import tripwire.scan.data as scan_module
from tripwire.bench.runner import detector_input
from tripwire.detectors.poisoning.group_completion import group_completion

CAPTURED: list[np.ndarray] = []


def capturing(*args: Any, **kwargs: Any) -> Any:
    complete = group_completion(*args, **kwargs)

    def wrapped(group: np.ndarray) -> np.ndarray:
        out = complete(group)
        CAPTURED.append(np.asarray(out, dtype=bool))
        return out

    return wrapped


def verdict(truth: np.ndarray, flags: np.ndarray) -> dict[str, Any]:
    tp = int((flags & truth).sum())
    return {
        "flags": int(flags.sum()),
        "precision": round(tp / max(int(flags.sum()), 1), 4),
        "recall": round(tp / int(truth.sum()), 4) if truth.any() else None,
    }


def scan_row(ds: Any, feats: Any, net: Any, seed: int, truth: np.ndarray, **kw: Any) -> dict:
    CAPTURED.clear()
    t0 = time.perf_counter()
    res = scan_module.scan_data(ds, feats, seed=seed, model=net, **kw)
    ens = res.ensemble
    fam = ens.family_flags["feature-clusters"] if ens is not None else np.zeros(len(ds), bool)
    others = np.zeros(len(ds), dtype=bool)
    if ens is not None:
        for k, v in ens.family_flags.items():
            if k != "feature-clusters":
                others |= v
    joined = np.logical_or.reduce(CAPTURED) & fam if CAPTURED else np.zeros(len(ds), bool)
    only_joined = joined & ~others
    return {
        "without": verdict(truth, res.flags & ~only_joined),
        "with": verdict(truth, res.flags),
        "joined": int(joined.sum()),
        "joined_poisons": int((joined & truth).sum()),
        "completed": ens.families["feature-clusters"].get("completed") if ens else None,
        "held_back": ens.families["feature-clusters"].get("completion_held_back") if ens else None,
        "scan_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cells", nargs="+", metavar="DATA:KIND:RATE:SEED")
    ap.add_argument("--margins-dir", type=Path)
    a = ap.parse_args()
    scan_module.group_completion = capturing  # type: ignore[assignment]
    for cell in a.cells:
        name, kind, rate, seed = cell.split(":")
        _, ds, truth, model = standard_cell(name, kind, float(rate), int(seed))
        truth = np.asarray(truth, dtype=bool)
        inputs, _ = detector_input(ds, model, int(seed))
        row: dict[str, Any] = {"cell": cell, "poisons": int(truth.sum())}
        row["scan"] = scan_row(ds, inputs.features, inputs.model, int(seed), truth)
        path = a.margins_dir / f"{name}_{kind}_{rate}_{seed}.npz" if a.margins_dir else None
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as z:
                margins, cal = z["margins"], z["calibrators"]
            feats, net = inputs.features, inputs.model
            row["dynamics"] = scan_row(
                ds, feats, net, int(seed), truth, margins=margins, calibrators=cal
            )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
