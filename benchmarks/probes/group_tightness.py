"""How tight each feature-cluster group is in input space, against its own class.

For every group the ensemble's ``feature-clusters`` family flagged in a class (``fam``)
and every other confirmed-size group of one member (``ac``, ``sp``: at least 5% of
the class), the median distance from a member to its nearest other member (pooled-pixel
embedding), over the same median for random draws of as many items from the rest of
the class (5 draws). Near-copies (a GTSRB video track: frames of one physical sign)
are far tighter than any draw of their class (ratio well below 1); poisons drawn from
many source images are not. Reads the cells ``std_cell.py`` stored:

    PYTHONPATH=src python benchmarks/probes/group_tightness.py runs/probe/gtsrb_*_0.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors.input_space import InputSpace
from tripwire.scan.ensemble import combine

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from combine import stored

MAX_GROUP = 2000  # larger groups are subsampled (the nearest-member search is exact)
DRAWS = 5


def nn_median(x: np.ndarray) -> float:
    """Median distance from each row to its nearest other row."""
    if len(x) < 3:
        return float("nan")
    d, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    return float(np.median(d[:, 1]))


def main() -> None:
    rng = np.random.default_rng(0)
    for arg in sys.argv[1:]:
        path = Path(arg)
        ds, res, confirm = stored(path)
        y = np.asarray(ds.y)
        truth = np.asarray(ds.poisoned) if ds.poisoned is not None else np.zeros(len(y), bool)
        fam = combine(res, len(y), confirm_other=confirm, labels=y).family_flags
        flags = fam["feature-clusters"]
        emb = InputSpace(ds.model_input(), random_state=0).embedding()
        groups = [("fam", c, flags & (y == c)) for c in np.unique(y[flags])]
        for member in ("activation-clustering", "spectral-signature"):
            mine = np.asarray(res[member].flags, bool)
            for c in np.unique(y[mine]):
                g = mine & (y == c)
                if g.sum() >= 0.05 * (y == c).sum() and not (flags & (y == c)).any():
                    groups.append((member[:2], c, g))
        for tag, c, g in groups:
            n = int(g.sum())
            rest = np.flatnonzero((y == c) & ~g)
            idx = np.flatnonzero(g)
            if n > MAX_GROUP:
                idx, n = rng.choice(idx, MAX_GROUP, replace=False), MAX_GROUP
            draws = [
                nn_median(emb[rng.choice(rest, min(n, len(rest)), replace=False)])
                for _ in range(DRAWS)
            ]
            ratio = nn_median(emb[idx]) / float(np.median(draws))
            print(
                f"{path.stem} {tag} class {c} n {int(g.sum())} "
                f"poisoned {int((g & truth).sum())} tightness {ratio:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
