"""Probe: the whole scan on standard-suite cells with spectral signatures' per-class
scale as it is (1.4826 x MAD of the projections) and as the shortest half
(``spectral_scale.shorth``), from one set of inputs per cell: flags, precision, recall
and flags per class (flags, poisons) of the verdict.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/spectral_scale_cells.py \
        gtsrb:wanet:0.01:0 gtsrb:clean:0.0:0
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from cells import standard_cell  # type: ignore[import-not-found]
from completion_cells import verdict  # type: ignore[import-not-found]
from spectral_scale import shorth  # type: ignore[import-not-found]

import tripwire.detectors.poisoning.spectral as spectral
from tripwire.bench.runner import detector_input
from tripwire.scan.data import scan_data

MAD_SCALE = spectral.robust_location_scale


def scan(ds: Any, inputs: Any, seed: int, truth: np.ndarray) -> dict[str, Any]:
    res = scan_data(ds, inputs.features, seed=seed, model=inputs.model)
    f = np.asarray(res.flags, dtype=bool)
    return {
        **verdict(truth, f),
        "by_class": {
            int(c): [int((f & (ds.y == c)).sum()), int((f & truth & (ds.y == c)).sum())]
            for c in np.unique(ds.y[f])
        },
    }


def main() -> None:
    for cell in sys.argv[1:]:
        name, kind, rate, seed = cell.split(":")
        _, ds, truth, model = standard_cell(name, kind, float(rate), int(seed))
        truth = np.asarray(truth, dtype=bool)
        inputs, _ = detector_input(ds, model, int(seed))
        row: dict[str, Any] = {"cell": cell, "poisons": int(truth.sum())}
        for label, fn in (("mad", MAD_SCALE), ("shorth", shorth)):
            spectral.robust_location_scale = fn  # fit_spectral's one call
            row[label] = scan(ds, inputs, int(seed), truth)
        spectral.robust_location_scale = MAD_SCALE
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
