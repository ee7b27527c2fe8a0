"""Activation clustering's split of one class, split again: is a part a bridge?

On stored full-MNIST features (``dump_features.py``), for each named class: the
class's 2-means split as activation clustering makes it (10 principal dimensions),
then repeated 2-means splits of the smaller cluster, printing each part's size, its
poisons, the distance of its centre to the larger cluster's centre and the distance
between the two parts (the rule of ``shed_bridges``: a part nearer to the larger
cluster than to its sibling is a bridge). Also the silhouette z-scores against the
Gaussian null, which do not stop the recursion on real features.

    PYTHONPATH=src python benchmarks/probes/ac_bridges.py \
        runs/probe/feat_mnist_wanet_0.01_0.npz 0,7
"""

from __future__ import annotations

import sys

import numpy as np

from tripwire.detectors.poisoning.activation_clustering import (
    null_silhouettes,
    silhouette,
    two_means,
)
from tripwire.detectors.projection import top_directions


def main() -> None:
    f = np.load(sys.argv[1])
    x, y, truth = f["features"].astype(np.float64), f["y"], f["truth"]
    rng = np.random.default_rng(0)
    for c in map(int, sys.argv[2].split(",")):
        rows = np.flatnonzero(y == c)
        centred = x[rows] - x[rows].mean(axis=0)
        z = centred @ top_directions(centred, 10).T
        t = truth[rows]
        assign, centres = two_means(z, random_state=0, n_init=10)
        small = assign == 1
        print(
            f"class {c}: {len(z)} items, smaller cluster {small.sum()} ({t[small].sum()} poisons)"
        )
        for level in (1, 2, 3):
            idx = np.flatnonzero(small)
            if idx.size < 20:
                break
            sub, parts = two_means(z[idx], random_state=0, n_init=10)
            sil = silhouette(z[idx], sub, max_samples=1000, random_state=0)
            null = null_silhouettes(
                z[idx].var(axis=0), idx.size, draws=5, max_samples=1000, rng=rng
            )
            sil_z = (sil - null.mean()) / max(float(null.std(ddof=1)), 0.01)
            to_main = np.linalg.norm(parts - centres[0], axis=1)
            between = float(np.linalg.norm(parts[0] - parts[1]))
            for g in (0, 1):
                print(
                    f"  level {level} part {g}: {int((sub == g).sum())} items, "
                    f"{int(t[idx[sub == g]].sum())} poisons, centre to the class's {to_main[g]:.2f}"
                )
            print(f"  level {level}: parts {between:.2f} apart; silhouette z {sil_z:.1f}")
            near = int(np.argmin(to_main))
            if to_main[near] >= between:
                print("  no bridge: stop")
                break
            small = np.zeros_like(small)
            small[idx[sub != near]] = True


if __name__ == "__main__":
    main()
