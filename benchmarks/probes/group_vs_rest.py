"""How far each class's feature-cluster flags look like other classes beyond the rest
of their class, on stored cells (the ensemble's verdict recomputed, then
``input_pattern.looks_other_shares`` per flagged class: the group's share that looks
like another class as inputs, and the rest of its class's share).

    PYTHONPATH=src python benchmarks/probes/group_vs_rest.py runs/s21/gprobe/gtsrb_*_0.npz
    PYTHONPATH=src python benchmarks/probes/group_vs_rest.py runs/ens-cache/*_0.npz

(The verdict is taken without the near-copy gate, so that every group shows.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from combine import evidence, stored_cell

from tripwire.detectors.input_space import InputSpace, group_spread
from tripwire.detectors.poisoning.input_pattern import looks_other_shares
from tripwire.scan.ensemble import combine


def bundled_cell(path: Path) -> tuple[Any, Any, Any]:
    """An ``ensemble_ranking.py`` cache cell (bundled MNIST): data, results, input space."""
    from ensemble_ranking import CELLS, _cell_data, stored_results

    _, kind, rate, seed = path.stem.split("_")
    params = next(p for k, r, p in CELLS if k == kind and str(r) == rate)
    ds = _cell_data(kind, float(rate), params, int(seed))
    results = stored_results(np.load(path, allow_pickle=False))
    return ds, results, InputSpace(ds.model_input(), random_state=int(seed))


def main() -> None:
    for arg in sys.argv[1:]:
        path = Path(arg)
        ds, results, space = bundled_cell(path) if "ens-cache" in arg else stored_cell(path)
        truth = np.asarray(ds.poisoned) if ds.poisoned is not None else np.zeros(len(ds), bool)
        # The verdict without the near-copy gate, so that every group's spread shows.
        kw = evidence(combine, ds, space)
        kw.pop("spread", None)
        e = combine(results, len(ds), **kw)
        fam = e.families["feature-clusters"]
        flags = np.zeros(len(ds), bool)
        # The family's own flags: its members' flags that the verdict kept.
        for m in fam["members"]:
            flags |= np.asarray(results[m].flags, dtype=bool)
        flags &= e.flags
        print(f"== {path.stem}: family flags {int(flags.sum())}")
        spread = group_spread(space, ds.y)
        for c in np.unique(ds.y[flags]):
            idx = np.flatnonzero(ds.y == c)
            group = flags[idx]
            g, r = looks_other_shares(space, ds.y, idx, group)
            print(
                f"class {c}: {int(group.sum())} of {idx.size}, poisons"
                f" {int(truth[idx][group].sum())}; looks other {g:.2f}, rest {r:.2f};"
                f" spread {spread(flags & (ds.y == c)):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
