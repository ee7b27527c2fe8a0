"""Probe: do dirty-label poisons keep their source classes in the suspect model's
features? For each class that activation clustering splits clearly (silhouette z >= 3),
a logistic regression trained on every other class's features (standardised) predicts
each side of the split; the effective number of classes predicted (exp of the entropy)
should be high for poisons drawn from many source classes and low for a clean sub-mode,
which resembles a few look-alike classes. Reads ``dump_features.py`` files.

    PYTHONPATH=src python benchmarks/probes/source_diversity.py gtsrb_wanet_0.01_0 gtsrb_clean_0.0_0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tripwire.detectors import get
from tripwire.detectors.base import DetectorInput


def effective_classes(pred: np.ndarray) -> float:
    h = np.bincount(pred) / len(pred)
    h = h[h > 0]
    return float(np.exp(-(h * np.log(h)).sum()))


def main() -> None:
    for cell in sys.argv[1:]:
        with np.load(f"runs/probe/feat_{cell}.npz") as d:
            x, y, truth = d["features"].astype(np.float64), d["y"], d["truth"].astype(bool)
        ac = get("activation-clustering")().fit(DetectorInput(features=x, labels=y))
        xs = StandardScaler().fit_transform(x)
        rows = []
        for c, m in ac.model_["classes"].items():
            if m["silhouette_z"] < 3:
                continue
            idx = np.flatnonzero(y == c)
            z = (x[idx] - m["mean"]) @ m["components"].T
            small = np.linalg.norm(z - m["centres"][1], axis=1) < np.linalg.norm(
                z - m["centres"][0], axis=1
            )
            rest = np.flatnonzero(y != c)
            clf = LogisticRegression(C=0.1, max_iter=300).fit(xs[rest], y[rest])
            rows.append(
                {
                    "class": c,
                    "z": round(m["silhouette_z"], 2),
                    "share": round(m["small_share"], 3),
                    "small": round(effective_classes(clf.predict(xs[idx[small]])), 2),
                    "large": round(effective_classes(clf.predict(xs[idx[~small]])), 2),
                    "poisons_small": int((truth[idx] & small).sum()),
                    "poisons_large": int((truth[idx] & ~small).sum()),
                }
            )
        print(json.dumps({"cell": cell, "classes": rows}), flush=True)


if __name__ == "__main__":
    main()
