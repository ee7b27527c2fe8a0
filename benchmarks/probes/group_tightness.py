"""How spread out each feature-cluster group is in input space, against its own class.

For every group the ensemble's ``feature-clusters`` family flagged in a class before
the near-copy check (``fam``) and every other group of one member that makes at least
5% of its class (``ac``, ``sp``), two measures against random draws of as many items
from the rest of the class:

- ``spread``: :func:`tripwire.detectors.input_space.group_spread`, what the ensemble
  holds groups back by (median nearest-member distance over the draws');
- ``scale-free``: the same ratio after dividing each side's nearest-member median by
  its median pairwise distance (insensitive to a blend pulling a group together, blind
  to a group that is one tight track).

Near-copies (a GTSRB video track: frames of one physical sign) are far tighter than
any draw of their class; poisons drawn from many source images are not. Reads the
cells ``std_cell.py`` stored, or those ``ensemble_ranking.py`` cached (bundled MNIST,
``ARCH_KIND_RATE_SEED.npz``):

    PYTHONPATH=src python benchmarks/probes/group_tightness.py runs/probe/gtsrb_*_0.npz
    PYTHONPATH=src python benchmarks/probes/group_tightness.py runs/ens-cache/*.npz
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors.input_space import SPREAD_SAMPLE, group_spread
from tripwire.scan.ensemble import combine

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from combine import evidence, stored_cell
from ensemble_ranking import CELLS, _cell_data, stored_results

from tripwire.detectors.input_space import InputSpace

DRAWS = 5


def scale_free(x: np.ndarray) -> float:
    """Median nearest-other-row distance over the median pairwise distance."""
    d, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    return float(np.median(d[:, 1]) / np.median(pdist(x)))


def cell(path: Path) -> tuple[Any, dict[str, Any], InputSpace]:
    """A stored cell: a standard-suite one (``DATA_KIND_RATE_SEED``) or a bundled-MNIST
    one of ``ensemble_ranking.py`` (``ARCH_KIND_RATE_SEED``, its cell's own seed)."""
    arch, kind, rate, seed = path.stem.split("_")
    if arch not in ("cnn-small", "resnet-mini"):
        return stored_cell(path)
    params = next(p for k, r, p in CELLS if k == kind and r == float(rate))
    ds = _cell_data(kind, float(rate), params, int(seed))
    results = stored_results(np.load(path, allow_pickle=False))
    return ds, results, InputSpace(ds.model_input(), random_state=int(seed))


def main() -> None:
    rng = np.random.default_rng(0)
    for arg in sys.argv[1:]:
        path = Path(arg)
        ds, res, space = cell(path)
        y = np.asarray(ds.y)
        truth = np.asarray(ds.poisoned) if ds.poisoned is not None else np.zeros(len(y), bool)
        kw = evidence(combine, ds, space)
        kw.pop("spread", None)  # the groups before the near-copy check
        flags = combine(res, len(y), **kw).family_flags["feature-clusters"]
        spread = group_spread(space, y, random_state=0)
        emb = space.embedding()
        groups = [("fam", c, flags & (y == c)) for c in np.unique(y[flags])]
        for member in ("activation-clustering", "spectral-signature"):
            mine = np.asarray(res[member].flags, bool)
            for c in np.unique(y[mine]):
                g = mine & (y == c)
                if g.sum() >= 0.05 * (y == c).sum() and not (flags & (y == c)).any():
                    groups.append((member[:2], c, g))
        for tag, c, g in groups:
            idx, rest = np.flatnonzero(g), np.flatnonzero((y == c) & ~g)
            m = min(idx.size, rest.size, SPREAD_SAMPLE)
            if m < 3:
                continue
            free = scale_free(emb[rng.choice(idx, m, replace=False)]) / float(
                np.median(
                    [scale_free(emb[rng.choice(rest, m, replace=False)]) for _ in range(DRAWS)]
                )
            )
            print(
                f"{path.stem} {tag} class {c} n {idx.size} poisoned {int((g & truth).sum())} "
                f"spread {spread(g):.2f} scale-free {free:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
