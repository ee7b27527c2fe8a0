"""Probe: for every class that activation clustering splits clearly (silhouette z >= 3),
whatever the smaller cluster's share, how many items of each side look like another
class as inputs (the ensemble's look-alike test, each side tested against the rest),
and how spread out is each side in input space against the other (``group_spread``)?
Asks whether dirty-label poisons that are a large share of their target class (the GTSRB
subset at 1%: 37%) can be told from a clean class's second mode by their inputs.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/even_split_lookalike.py \
        gtsrb:wanet:0.01:0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import CACHE, standard_data  # type: ignore[import-not-found]

from tripwire.bench.runner import detector_input, train_cached
from tripwire.detectors import get
from tripwire.detectors.input_space import group_spread, label_disagreement, neighbours_among


def looks_other(space, y, cand, k=10):  # type: ignore[no-untyped-def]
    idx = np.flatnonzero(cand)
    nb = neighbours_among(space, ~cand, idx, k)
    return float(((y[nb] != y[idx][:, None]).mean(axis=1) > 0.5).mean())


def main() -> None:
    for cell in sys.argv[1:]:
        name, kind, rate, seed = cell.split(":")
        spec, ds, truth, test = standard_data(name, kind, float(rate), int(seed))
        model = train_cached(ds, test, spec, int(seed), CACHE)
        inputs, _ = detector_input(ds, model, int(seed))
        space = inputs.input_space
        y = np.asarray(ds.y, dtype=np.int64)
        truth = np.asarray(truth, dtype=bool)
        ac = get("activation-clustering")().fit(inputs)
        med = float(np.median(label_disagreement(space, y)))
        spread = group_spread(space, y, random_state=int(seed))
        rows = []
        for c, m in ac.model_["classes"].items():
            if m["silhouette_z"] < 3:
                continue
            idx = np.flatnonzero(y == c)
            z = (inputs.features[idx] - m["mean"]) @ m["components"].T
            small = np.linalg.norm(z - m["centres"][1], axis=1) < np.linalg.norm(
                z - m["centres"][0], axis=1
            )
            a = np.zeros(len(y), bool)
            a[idx[small]] = True
            b = np.zeros(len(y), bool)
            b[idx[~small]] = True
            rows.append(
                {
                    "class": c,
                    "z": round(m["silhouette_z"], 2),
                    "share": round(m["small_share"], 3),
                    "flagged": m["flagged"],
                    "small_looks_other": round(looks_other(space, y, a), 3),
                    "large_looks_other": round(looks_other(space, y, b), 3),
                    "small_spread": round(spread(a), 3),
                    "large_spread": round(spread(b), 3),
                    "poisons_small": int((truth & a).sum()),
                    "poisons_large": int((truth & b).sum()),
                }
            )
        print(
            json.dumps({"cell": cell, "median_disagreement": round(med, 3), "classes": rows}),
            flush=True,
        )


if __name__ == "__main__":
    main()
