"""tripwire's batched k-means against scikit-learn's on generated problems, same seeds.

Each of ``--problems`` problems draws 20-600 items in 1-10 dimensions with unequal
spreads (every second one with a tenth of its items shifted away), and ``k`` of 2 or 3;
both fit ten restarts. Prints how often tripwire's best inertia is lower, higher or
equal (within 1e-6 relative) and the largest and mean relative excess:

    PYTHONPATH=src python benchmarks/probes/kmeans_vs_sklearn.py
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.cluster import KMeans

from tripwire.detectors.kmeans import k_means_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rel = []
    for t in range(args.problems):
        n, d, k = int(rng.integers(20, 600)), int(rng.integers(1, 11)), int(rng.integers(2, 4))
        x = rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d)
        if t % 2:
            x[: n // 10] += rng.standard_normal(d) * 4.0
        ours = k_means_many([x], k, n_init=10, seeds=[t])[0].inertia
        theirs = float(KMeans(k, n_init=10, random_state=t).fit(x).inertia_)
        rel.append((ours - theirs) / theirs)
    r = np.asarray(rel)
    print(
        f"{len(r)} problems: lower {int((r < -1e-6).sum())}, higher {int((r > 1e-6).sum())}, "
        f"equal {int((np.abs(r) <= 1e-6).sum())}; largest excess {r.max():.4f}, "
        f"mean {r.mean():.5f}"
    )


if __name__ == "__main__":
    main()
