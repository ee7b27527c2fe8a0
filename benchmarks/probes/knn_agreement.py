"""Would knn-label's lone flags stand where the proxy names the same other class?

The labels family needs both of its members (confident learning's count and
``knn-label``); on the GTSRB subset's 5% pair flips ``knn-label`` alone finds the
flips almost perfectly while the count misses a quarter of them (the proxy learnt the
pairs). This probe measures one candidate rule: add the ``knn-label`` flags whose
neighbours' weighted majority class is also the proxy's most probable class (and not
the label). For each stored cell with ``features``, ``probs``, ``y`` and ``truth`` it
prints the family's quorum (count and F1), the rule's extra flags (and how many are
flips), and the union's F1.

    PYTHONPATH=src python benchmarks/probes/knn_agreement.py runs/s20/probe/*.npz \\
        runs/probe/gtsrb_*.npz runs/s19/ln-dump/*.npz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from knn_subspace import f1

from tripwire.detectors import DetectorInput, get


def main() -> None:
    for path in sys.argv[1:]:
        f = np.load(path)
        x, y = f["features"].astype(np.float64), f["y"].astype(np.int64)
        truth, probs = f["truth"].astype(bool), f["probs"]
        inputs = DetectorInput(features=x, labels=y)
        det = get("knn-label")().fit(inputs)
        knn = det.detect(inputs).flags
        dist, near = det.neighbour_dist_, det.neighbours_
        # The detector's own weights: 1 / (d + mean d) over an item's neighbours.
        w = 1.0 / (dist + dist.mean(axis=1, keepdims=True) + 1e-12)
        votes = np.zeros((len(y), probs.shape[1]))
        rows = np.repeat(np.arange(len(y)), near.shape[1])
        np.add.at(votes, (rows, y[near].ravel()), w.ravel())
        top = probs.argmax(axis=1)
        cl = get("confident-learning")().detect(DetectorInput(probs=probs, labels=y)).flags
        quorum = cl & knn
        extra = knn & (top != y) & (top == votes.argmax(axis=1)) & ~quorum
        row = {
            "cell": path,
            "flips": int(truth.sum()),
            "quorum": [int(quorum.sum()), f1(quorum, truth)],
            "extra": [int(extra.sum()), int((extra & truth).sum())],
            "union_f1": f1(quorum | extra, truth),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
