"""SPECTRE with its skewness filter on every item of a class against a random sample.

For each features file of ``dump_features.py``, fits ``spectre`` twice, with
``max_filter_items=None`` (the filter reads all items, the code before session 21)
and with the default (2,000-item samples of larger classes), and prints each one's
seconds, AUROC and average precision against the poisoned mask (flag count on clean
cells). The ensemble uses SPECTRE to rank only (``outliers`` family), so its flags do
not move with it.

    for c in "badnets 0.01 0" "label-flip 0.05 2"; do
        PYTHONPATH=src python benchmarks/probes/dump_features.py mnist $c; done
    PYTHONPATH=src python benchmarks/probes/spectre_sample.py runs/probe/feat_mnist_*.npz

``--sample N`` and ``--max-iter N`` change the second fit (a sample of ``N`` items, an
ascent of ``N`` steps instead of 40): the variants tried and dropped.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from tripwire.detectors import DetectorInput, get
from tripwire.detectors.poisoning import robust_covariance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", nargs="+", help="features files of dump_features.py")
    ap.add_argument("--sample", type=int, help="items of the second fit's sample")
    ap.add_argument("--max-iter", type=int, help="steps of the second fit's ascents")
    args = ap.parse_args()
    steps = robust_covariance.ASCENT_STEPS
    for path in args.features:
        f = np.load(path)
        truth = f["truth"].astype(bool)
        inputs = DetectorInput(features=f["features"].astype(np.float64), labels=f["y"])
        row: dict[str, object] = {"cell": path}
        for name in ("all items", "sample"):
            kw: dict[str, int | None] = {"max_filter_items": None}
            robust_covariance.ASCENT_STEPS = steps
            if name == "sample":
                kw = {} if args.sample is None else {"max_filter_items": args.sample}
                if args.max_iter is not None:
                    robust_covariance.ASCENT_STEPS = args.max_iter
            t0 = time.perf_counter()
            res = get("spectre")(**kw).detect(inputs)
            seconds = round(time.perf_counter() - t0, 2)
            if truth.any():
                row[name] = {
                    "s": seconds,
                    "auroc": round(float(roc_auc_score(truth, res.scores)), 4),
                    "ap": round(float(average_precision_score(truth, res.scores)), 3),
                }
            else:
                row[name] = {"s": seconds, "flagged": int(res.flags.sum())}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
