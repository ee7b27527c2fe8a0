"""Probe: which of ``training-margin``'s flags the label checks' quorum misses, and
rules for letting them stand alone, on standard-suite cells whose margins
``benchmarks/training_dynamics.py`` stored (``runs/dynamics``).

For each cell: the items that ``training-margin`` flags and the labels quorum
(confident learning and ``knn-label``) does not, split into flips and clean items, with
their area under the margin (AUM) and whether either label check flagged them alone;
then the verdict of quorum | rule for a few rules.

    PYTHONPATH=src python benchmarks/probes/dynamics_alone.py mnist:label-flip:0.05 \
        gtsrb:label-flip:0.05 gtsrb:pair-flip:0.05 gtsrb:clean:0.0
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tripwire.bench.runner import detector_input
from tripwire.detectors import get
from tripwire.detectors.poisoning.dynamics import area_under_margin

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_cell  # type: ignore[import-not-found]
from dynamics_combos import show  # type: ignore[import-not-found]


def quantiles(a: np.ndarray) -> str:
    if a.size == 0:
        return "-"
    q = np.quantile(a, [0.1, 0.5, 0.9])
    return f"{a.size} items, AUM p10 {q[0]:.2f} p50 {q[1]:.2f} p90 {q[2]:.2f}"


def main() -> None:
    for arg in sys.argv[1:]:
        name, kind, rate = arg.split(":")
        _, ds, truth, model = standard_cell(name, kind, float(rate), 0)
        truth = np.asarray(truth, dtype=bool)
        inputs, _ = detector_input(ds, model, 0)
        cl = get("confident-learning")().detect(inputs).flags
        kn = get("knn-label")().detect(inputs).flags
        margins = np.load(f"runs/dynamics/{name}_{kind}_{rate}_0.npy")
        aum = area_under_margin(margins)
        inputs.margins = margins
        dyn = get("training-margin")().detect(inputs)
        tm = np.asarray(dyn.flags, dtype=bool)
        quorum = cl & kn
        only = tm & ~quorum
        print(f"== {arg}: {int(tm.sum())} margin flags, threshold {dyn.threshold:.3f}")
        print("  margin-only flips: ", quantiles(aum[only & truth]))
        print("  margin-only clean: ", quantiles(aum[only & ~truth]))
        print(
            "  margin-only with one label check: flips",
            int((only & truth & (cl | kn)).sum()),
            "clean",
            int((only & ~truth & (cl | kn)).sum()),
        )
        show("  quorum", quorum, truth)
        show("  quorum | margins", quorum | tm, truth)
        show("  quorum | margins & AUM<0", quorum | (tm & (aum < 0)), truth)
        show("  quorum | margins & (CL|kNN)", quorum | (tm & (cl | kn)), truth)
        show("  quorum | margins & CL", quorum | (tm & cl), truth)
        show("  quorum | margins & kNN", quorum | (tm & kn), truth)


if __name__ == "__main__":
    main()
