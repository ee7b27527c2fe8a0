"""Which classes the lone feature-cluster groups look like as inputs, on stored cells.

For each member of the feature-clusters family (activation clustering, spectral
signatures) and each class where its flags are confirmed as looking like another class
(the ensemble's lone-group test), prints the group's size, its poisons, and the share
of its items whose input-space neighbours' majority label is the group's most common
look-alike class. A dirty-label backdoor's victims come from many classes; a clean
sub-mode (a GTSRB video track) resembles one neighbour class.

    PYTHONPATH=src python benchmarks/probes/lone_lookalike.py runs/s21/gprobe/gtsrb_blend_0.01_0.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from combine import stored_cell

from tripwire.detectors.input_space import neighbours_among, other_class_confirmation

MEMBERS = ("activation-clustering", "spectral-signature")


def main() -> None:
    for arg in sys.argv[1:]:
        path = Path(arg)
        ds, results, space = stored_cell(path)
        confirm = other_class_confirmation(space, ds.y)
        truth = np.asarray(ds.poisoned) if ds.poisoned is not None else np.zeros(len(ds), bool)
        print(f"== {path.stem}")
        if confirm is None:
            print("inputs do not predict labels: no confirmation")
            continue
        for m in MEMBERS:
            mine = np.asarray(results[m].flags, dtype=bool)
            own = confirm(mine) & mine
            cand = np.flatnonzero(own)
            if cand.size == 0:
                continue
            nb = neighbours_among(space, ~mine, cand, 10)
            lab = ds.y[nb]
            nc = int(ds.y.max()) + 1
            maj = np.array([np.bincount(r, minlength=nc).argmax() for r in lab])
            # Each item's purity: the share of its neighbours carrying their commonest label.
            purity = np.array([np.bincount(r, minlength=nc).max() / len(r) for r in lab])
            for c in np.unique(ds.y[cand]):
                g = ds.y[cand] == c
                group = mine & (ds.y == c)
                if g.sum() < 0.8 * group.sum() or g.sum() < 5:
                    continue
                counts = np.bincount(maj[g], minlength=int(ds.y.max()) + 1)
                top = int(counts.argmax())
                print(
                    f"{m}:{c} flagged {int(group.sum())} confirmed {int(g.sum())}"
                    f" poisons {int(truth[cand[g]].sum())} top look-alike {top}"
                    f" share {counts[top] / g.sum():.2f} classes {int((counts > 0).sum())}"
                    f" purity {np.median(purity[g]):.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
