"""Probe: can the behaviour family's flags tell which side of a class's feature split
holds the poisons? Where a dirty-label backdoor's poisons are most of their target
class (the GTSRB subset at 5%: 616 poisons, 210 clean items) activation clustering's
smaller cluster and spectral signatures' outlying side are the clean items. Per cell,
for each class where ``perturbation-consistency`` (the behaviour family) flags at least
5% of the class: the class's 2-means split (activation clustering's own fit, whatever
the share), its silhouette z, the side holding most of the behaviour flags, and that
side's poisons and clean items; and the verdict's flags in the class.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/behaviour_side.py gtsrb:badnets:0.05:0
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import cell_results  # type: ignore[import-not-found]

from tripwire.detectors import get
from tripwire.scan.data import scan_ensemble


def main() -> None:
    for cell in sys.argv[1:]:
        ds, truth, inputs, ours = cell_results(cell)
        seed = cell.rsplit(":", 1)[1]
        y = np.asarray(ds.y)
        ens = scan_ensemble(ours, ds, inputs.input_space, int(seed), inputs.features)
        beh = np.asarray(ours["perturbation-consistency"].flags, dtype=bool)
        ac = get("activation-clustering")().fit(inputs)
        rows = []
        for c in np.unique(y[beh]):
            idx = np.flatnonzero(y == c)
            b = beh[idx]
            row = {"class": int(c), "items": int(idx.size), "behaviour": int(b.sum())}
            row["behaviour_poisons"] = int((b & truth[idx]).sum())
            m = ac.model_["classes"].get(int(c))
            if b.mean() >= 0.05 and m is not None:
                z = (inputs.features[idx] - m["mean"]) @ m["components"].T
                one = np.linalg.norm(z - m["centres"][1], axis=1) < np.linalg.norm(
                    z - m["centres"][0], axis=1
                )
                side = one if (b & one).sum() >= (b & ~one).sum() else ~one
                row |= {
                    "silhouette_z": round(m["silhouette_z"], 2),
                    "small_share": round(m["small_share"], 3),
                    "behaviour_on_side": round(float((b & side).sum() / b.sum()), 3),
                    "side_items": int(side.sum()),
                    "side_poisons": int((side & truth[idx]).sum()),
                    "class_poisons": int(truth[idx].sum()),
                }
            row["verdict_flags"] = int(ens.flags[idx].sum())
            rows.append(row)
        print(
            json.dumps(
                {
                    "cell": cell,
                    "poisons": int(truth.sum()),
                    "behaviour": int(beh.sum()),
                    "verdict": int(ens.flags.sum()),
                    "verdict_poisons": int((ens.flags & truth).sum()),
                    "classes": rows,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
