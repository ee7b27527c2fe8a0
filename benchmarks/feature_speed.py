"""Seconds of each feature-space data detector on one stored cell's features.

Reads features stored by ``benchmarks/probes/dump_features.py`` (full MNIST, the
standard suite's ``cnn-small``: 60,000 x 128), runs each detector that needs only
features and labels (fit and score, as a scan does) and prints its seconds, flag count
and a digest of its scores; the digest shows whether two code versions score alike.
Where :mod:`tripwire.detectors.neighbours` exists it also times the all-items
neighbour search against scikit-learn's all-pairs search on the same rows and checks
that the two agree. Run it under two source trees, one after the other, to compare
versions on the same machine state:

    git archive 3cc1b8f src | tar -x -C /tmp/old
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src python benchmarks/feature_speed.py \
        runs/probe/feat_mnist_badnets_0.01_0.npz
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/feature_speed.py \
        runs/probe/feat_mnist_badnets_0.01_0.npz
"""

from __future__ import annotations

import hashlib
import sys
import time

import numpy as np
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors import DetectorInput, get

DETECTORS = (
    "spectral-signature",
    "activation-clustering",
    "feature-outlier",
    "spectre",
    "knn-label",
)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.round(np.asarray(a, float), 9).tobytes()).hexdigest()[:12]


def main() -> None:
    f = np.load(sys.argv[1])
    x, y = f["features"].astype(np.float64), f["y"]
    inputs = DetectorInput(features=x, labels=y)
    print(f"{sys.argv[1]}: {x.shape[0]} x {x.shape[1]}")
    print("| detector | seconds | flagged | scores digest |")
    print("|---|---|---|---|")
    total = 0.0
    for name in DETECTORS:
        t0 = time.perf_counter()
        r = get(name)().detect(inputs)
        dt = time.perf_counter() - t0
        total += dt
        print(f"| {name} | {dt:.2f} | {int(r.flags.sum())} | {digest(r.scores)} |", flush=True)
    print(f"| together | {total:.2f} | | |")
    try:
        from tripwire.detectors.neighbours import nearest_neighbours
    except ImportError:
        return
    t0 = time.perf_counter()
    ref_d, ref_i = NearestNeighbors(n_neighbors=11).fit(x).kneighbors(x)
    brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    d, i = nearest_neighbours(x, 11)
    cells = time.perf_counter() - t0
    same = float(np.mean((ref_i == i).all(axis=1)))
    print(
        f"11 nearest of every row: all pairs {brute:.2f} s, by cells {cells:.2f} s "
        f"({brute / cells:.1f}x); rows with the same neighbours {same:.4f}, "
        f"largest distance difference {float(np.abs(ref_d - d).max()):.1e}"
    )


if __name__ == "__main__":
    main()
