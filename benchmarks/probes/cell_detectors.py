"""Probe: each detector's flags on one standard-suite cell, the feature-clusters
family's report (what stands, what the gates held back), the verdict's flags per class
(flags, poisons) and per family, and the suite model's attack
success rate on the test set (is the backdoor there at all?).

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/cell_detectors.py gtsrb wanet 0.01 0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import CACHE, standard_data  # type: ignore[import-not-found]

from tripwire.attacks import attack_success_rate
from tripwire.bench.runner import detector_input, run_detectors, train_cached
from tripwire.scan.data import scan_ensemble


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    spec, ds, truth, test = standard_data(name, kind, rate, seed)
    model = train_cached(ds, test, spec, seed, CACHE)
    if ds.attack is not None and kind not in ("label-flip", "pair-flip"):
        asr = attack_success_rate(model.predict, test, ds.attack)
        print(json.dumps({"accuracy": model.accuracy, "attack_success_rate": round(asr, 4)}))
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
            {
                "flags": int(ens.flags.sum()),
                "by_class": {
                    int(c): [
                        int((ens.flags & (ds.y == c)).sum()),
                        int((ens.flags & truth & (ds.y == c)).sum()),
                    ]
                    for c in np.unique(ds.y[ens.flags])
                },
                "families": {k: v.get("flagged") for k, v in ens.families.items()},
                "feature-clusters": ens.families["feature-clusters"],
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
