"""knn-label in the features' 99%-variance principal subspace against all columns.

For each stored file with ``features``, ``probs``, ``y`` and ``truth`` (cells of
``std_cell.py``, dumps of ``label_noise.py --dump``), runs ``knn-label`` with
``variance=1.0`` (all columns, the code before session 21) and with the default, and
prints each one's seconds, AUROC, flag count and F1, and the same for the labels
family's quorum (``confident-learning`` and ``knn-label`` both flag; the ensemble
adds flip groups on top).

    PYTHONPATH=src python benchmarks/probes/knn_subspace.py runs/s20/probe/*.npz \\
        runs/probe/gtsrb_*.npz runs/s19/ln-dump/*.npz

``--variance V`` runs the second one at another share (the values tried and dropped).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from tripwire.bench.metrics import flag_metrics
from tripwire.detectors import DetectorInput, get


def f1(flags: np.ndarray, truth: np.ndarray) -> float:
    return round(float(flag_metrics(truth, flags)["f1"] or 0.0), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", nargs="+", help="stored cells with features and probs")
    ap.add_argument("--variance", type=float, help="the second run's share (default: 0.99)")
    args = ap.parse_args()
    second = {} if args.variance is None else {"variance": args.variance}
    for path in args.cells:
        f = np.load(path)
        x, y, truth = f["features"].astype(np.float64), f["y"].astype(np.int64), f["truth"]
        truth = truth.astype(bool)
        cl = get("confident-learning")().detect(DetectorInput(probs=f["probs"], labels=y)).flags
        row: dict[str, object] = {"cell": path}
        for name, kw in (("all columns", {"variance": 1.0}), ("subspace", second)):
            t0 = time.perf_counter()
            res = get("knn-label")(**kw).detect(DetectorInput(features=x, labels=y))
            seconds = round(time.perf_counter() - t0, 2)
            both = res.flags & cl
            row[name] = {
                "s": seconds,
                "auroc": round(float(roc_auc_score(truth, res.scores)), 4) if truth.any() else None,
                "flagged": int(res.flags.sum()),
                "f1": f1(res.flags, truth),
                "labels_quorum": int(both.sum()),
                "labels_quorum_f1": f1(both, truth),
            }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
