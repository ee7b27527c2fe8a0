"""Probe: what naming the poisons' side by a behavioural group changes, on standard-suite
cells. Per cell (the suite's cached model, robust thresholds, no reference), the
detectors run once and the ensemble combines them twice, as ``scan-data`` does with
and without the ``side`` step (``group_side``; everything else the same): flags,
precision, recall, flags per class (flags, poisons) and the step's report.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/side_cells.py gtsrb:badnets:0.05:0
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from cells import cell_results  # type: ignore[import-not-found]
from completion_cells import verdict  # type: ignore[import-not-found]

import tripwire.scan.data as scan_module
from tripwire.detectors.poisoning.group_completion import group_side


def row(ens: Any, y: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    f = np.asarray(ens.flags, dtype=bool)
    return {
        **verdict(truth, f),
        "by_class": {
            int(c): [int((f & (y == c)).sum()), int((f & truth & (y == c)).sum())]
            for c in np.unique(y[f])
        },
        "behaviour": {k: v for k, v in ens.families.get("behaviour", {}).items() if "side" in k},
        "off_side": ens.families.get("feature-clusters", {}).get("off_anchored_side"),
    }


def main() -> None:
    for cell in sys.argv[1:]:
        ds, truth, inputs, ours = cell_results(cell)
        seed = cell.rsplit(":", 1)[1]
        y = np.asarray(ds.y)
        out: dict[str, Any] = {"cell": cell, "poisons": int(truth.sum())}
        for label, fn in (("without", lambda *a, **k: None), ("with", group_side)):
            scan_module.group_side = fn  # type: ignore[assignment]
            ens = scan_module.scan_ensemble(
                ours, ds, inputs.input_space, int(seed), inputs.features
            )
            out[label] = row(ens, y, truth)
        scan_module.group_side = group_side
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
