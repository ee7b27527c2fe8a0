"""How often Neural Cleanse's MAD rule flags a clean model, and scan-model's threshold.

Under the rule's own assumption (clean classes' log trigger sizes i.i.d. normal), draws
``--draws`` clean "models" of K classes and reports the share whose largest anomaly index
exceeds NC's 2 and scan-model's model-level threshold (``model_threshold``), with a seed
other than the threshold's own. Seconds on one core::

    PYTHONPATH=src python benchmarks/model_scan_null.py
"""

from __future__ import annotations

import argparse

import numpy as np

from tripwire.detectors.backdoor.reverse import mad_anomaly
from tripwire.scan.model import ANOMALY_THRESHOLD, model_threshold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--classes", default="5,10,43,100")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| classes | threshold | clean models over NC's 2 | over the threshold |")
    print("|---|---|---|---|")
    for k in (int(v) for v in args.classes.split(",")):
        tops = np.array([mad_anomaly(rng.normal(size=k))[0].max() for _ in range(args.draws)])
        t = model_threshold(k)
        print(
            f"| {k} | {t:.2f} | {np.mean(tops > ANOMALY_THRESHOLD):.1%} | {np.mean(tops > t):.1%} |"
        )


if __name__ == "__main__":
    main()
