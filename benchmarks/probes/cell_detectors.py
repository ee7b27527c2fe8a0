"""Probe: each detector's flags on one standard-suite cell, and the feature-clusters
family's report (what stands, what the gates held back).

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/cell_detectors.py gtsrb wanet 0.01 0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import standard_cell  # type: ignore[import-not-found]

from tripwire.bench.runner import detector_input, run_detectors
from tripwire.scan.data import scan_ensemble


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    _, ds, truth, model = standard_cell(name, kind, rate, seed)
    truth = np.asarray(truth, dtype=bool)
    target = int(np.bincount(ds.y[truth]).argmax()) if truth.any() else 0
    inputs, _ = detector_input(ds, model, seed)
    ours, _ = run_detectors(inputs)
    for k, r in ours.items():
        f = np.asarray(r.flags, dtype=bool)
        print(
            json.dumps(
                {
                    "detector": k,
                    "flags": int(f.sum()),
                    "poisons": int((f & truth).sum()),
                    f"in class {target}": int((f & (ds.y == target)).sum()),
                }
            )
        )
    ens = scan_ensemble(ours, ds, inputs.input_space, seed, inputs.features)
    print(
        json.dumps(
            {"flags": int(ens.flags.sum()), "feature-clusters": ens.families["feature-clusters"]},
            default=str,
        )
    )


if __name__ == "__main__":
    main()
