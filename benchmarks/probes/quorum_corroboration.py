"""Probe: does the training run corroborate the label checks' quorum?

Reads the per-cell scores that ``training_dynamics.py --dump`` saved and prints, per
cell, the labels family's quorum (2 of confident learning, ``knn-label`` and
``training-margin`` at its planted cut), its precision, and the share of its flags that
stand out on ``training-margin``'s own robust scale (median + 3.5 MAD), the test by
which ``ensemble._label_quorum`` overrules the calibrators' estimate
(``MIN_CORROBORATED_SHARE``).

    PYTHONPATH=src python benchmarks/probes/quorum_corroboration.py 'runs/s33/dump_final/*.npz'
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from tripwire.detectors.calibration import robust_threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pattern", help="glob of the dumped cells")
    args = ap.parse_args()
    for path in sorted(glob.glob(args.pattern)):
        with np.load(path, allow_pickle=False) as z:
            truth = z["truth"]
            votes = sum(
                z[f"flags:{m}"].astype(np.int64)
                for m in ("confident-learning", "knn-label", "training-margin")
            )
            tm = z["score:training-margin"]
        quorum = votes >= 2
        above = tm > robust_threshold(tm)
        name = Path(path).stem
        if not quorum.any():
            print(f"{name}: quorum 0")
            continue
        print(
            f"{name}: quorum {int(quorum.sum())}, precision {truth[quorum].mean():.3f}, "
            f"above training-margin's robust cut {above[quorum].mean():.3f}"
        )


if __name__ == "__main__":
    main()
