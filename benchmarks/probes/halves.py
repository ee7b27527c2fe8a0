"""Whether input space tells the two halves of a class apart (WaNet 10%: poisons are half
of the target class). Per class of a standard-suite cell: 2-means on the
features' top 10 principal dimensions, then for each half, with it left out of the
reference, the share of its items whose 10 nearest input-space items mostly carry
another label, and the mean purity of those labels; with the whole class left out,
the entropy of the nearest other-class labels and the distance to the nearest
other-class item over the distance to the nearest item of the same half (medians).
The cell's model comes from the standard suite's cache (runs/std-cache).

    PYTHONPATH=src python benchmarks/probes/halves.py mnist wanet 0.1 0
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors.input_space import InputSpace, neighbours_among

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_cell


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    _, ds, truth, model = standard_cell(name, kind, rate, seed)
    feats = model.features(ds.model_input())
    y = ds.y
    space = InputSpace(ds.model_input(), random_state=seed)
    emb = space.embedding()
    rng = np.random.default_rng(0)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        z = PCA(10, random_state=0).fit_transform(feats[idx] - feats[idx].mean(0))
        half = KMeans(2, n_init=4, random_state=0).fit_predict(z)
        others = np.flatnonzero(y != c)
        nn_other = NearestNeighbors(n_neighbors=10).fit(emb[others])
        parts = []
        for h in (0, 1):
            members = idx[half == h]
            q = members if members.size <= 800 else rng.choice(members, 800, replace=False)
            keep = np.ones(len(y), bool)
            keep[members] = False
            labels = y[neighbours_among(space, keep, q, 10)]
            other = float(((labels != c).mean(1) > 0.5).mean())
            purity = float(np.mean([np.bincount(r).max() / 10 for r in labels]))
            d_other, i_other = nn_other.kneighbors(emb[q])
            pred = np.array([np.bincount(r).argmax() for r in y[others[i_other]]])
            p = np.bincount(pred) / len(pred)
            entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
            d_own, _ = NearestNeighbors(n_neighbors=2).fit(emb[members]).kneighbors(emb[q])
            ratio = float(np.median(d_other[:, 0] / np.maximum(d_own[:, 1], 1e-9)))
            parts.append(
                f"half {h}: n={members.size} poisons={truth[members].mean():.2f} "
                f"looks_other={other:.2f} purity={purity:.2f} entropy={entropy:.2f} "
                f"distance_ratio={ratio:.2f}"
            )
        print(f"class {c} | " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
