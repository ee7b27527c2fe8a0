"""Probe: where the poisons are a large share of their target class (the GTSRB subset at
1%: 123 poisons in a class of 333), what do activation clustering and spectral
signatures see there, and do clean classes split as evenly and as clearly?

Per cell: activation clustering's evidence for the target class and for every class whose
split beats the null (silhouette z >= 3) whatever its share, the poisons in the smaller
cluster, and the within-target-class AUROC of each feature-space detector's scores.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/target_share.py gtsrb:wanet:0.01:0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import CACHE, standard_data  # type: ignore[import-not-found]
from sklearn.metrics import roc_auc_score

from tripwire.bench.runner import train_cached
from tripwire.detectors import get
from tripwire.detectors.base import DetectorInput

DETECTORS = ("activation-clustering", "spectral-signature", "spectre", "feature-outlier")


def main() -> None:
    for cell in sys.argv[1:]:
        name, kind, rate, seed = cell.split(":")
        spec, ds, truth, test = standard_data(name, kind, float(rate), int(seed))
        model = train_cached(ds, test, spec, int(seed), CACHE)
        feats = model.features(ds.model_input())
        truth = np.asarray(truth, dtype=bool)
        target = int(np.bincount(ds.y[truth]).argmax()) if truth.any() else -1
        inputs = DetectorInput(features=feats, labels=ds.y)
        out: dict[str, object] = {"cell": cell, "target": target}
        for d in DETECTORS:
            r = get(d)().fit(inputs).detect(inputs)
            row: dict[str, object] = {
                "flags": int(r.flags.sum()),
                "poisons": int((r.flags & truth).sum()),
            }
            if target >= 0:
                m = ds.y == target
                row["auroc_in_target"] = round(float(roc_auc_score(truth[m], r.scores[m])), 4)
            if d == "activation-clustering":
                pc = r.evidence["per_class"]
                zs = np.array([e["silhouette_z"] for e in pc.values()])
                med = float(np.median(zs))
                mad = float(np.median(np.abs(zs - med))) * 1.4826
                # Is the target's split an outlier among the classes' splits?
                row["top_classes_robust_z"] = sorted(
                    (
                        (c, e["silhouette_z"], round((e["silhouette_z"] - med) / mad, 1))
                        for c, e in pc.items()
                    ),
                    key=lambda t: -t[1],
                )[:4]
                row["classes"] = {
                    c: {
                        k: e[k]
                        for k in ("items", "silhouette_z", "small_cluster_share", "class_flagged")
                    }
                    for c, e in pc.items()
                    if e["silhouette_z"] >= 3 or c == target
                }
            out[d] = row
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
