"""Activation clustering with and without its neighbour vote, on stored features.

Each file holds ``features``, ``y`` and ``truth`` (a ``dump_features.py`` file, or a
stored cell that keeps its features, as ``std_cell.py`` writes for GTSRB). For each,
the detector runs twice, with ``vote_neighbours=0`` (2-means' border, the rule before
session 26) and with the default vote, and prints flags, precision and recall of each
and the poisons the vote added:

    PYTHONPATH=src python benchmarks/probes/ac_vote.py runs/s21/gprobe/gtsrb_*_0.npz \\
        runs/probe/feat_mnist_*.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput, get


def counts(flags: np.ndarray, truth: np.ndarray) -> str:
    tp = int((flags & truth).sum())
    n = int(flags.sum())
    precision = tp / n if n else 0.0
    recall = tp / int(truth.sum()) if truth.any() else 0.0
    return f"{n} flagged, P {precision:.3f} R {recall:.3f}"


def main() -> None:
    for path in map(Path, sys.argv[1:]):
        z = np.load(path, allow_pickle=False)
        inputs = DetectorInput(features=z["features"].astype(np.float64), labels=z["y"])
        truth = np.asarray(z["truth"], dtype=bool)
        border = get("activation-clustering")(vote_neighbours=0).detect(inputs).flags
        voted = get("activation-clustering")().detect(inputs).flags
        print(
            f"{path.stem}: border {counts(border, truth)} | vote {counts(voted, truth)} | "
            f"added {int((voted & ~border & truth).sum())} poisons, "
            f"{int((voted & ~border & ~truth).sum())} clean; "
            f"dropped {int((border & ~voted).sum())}",
            flush=True,
        )


if __name__ == "__main__":
    main()
