"""Both halves of activation clustering's split, against the input-space test.

For one stored full-MNIST cell (features from ``dump_features.py``), split every class
by 2-means as activation clustering does and ask, for each half in turn, which of its
items look like another class as inputs (``other_class_confirmation``, the half left
out of the reference, as the ensemble asks of a lone group). Prints each half's size,
poisons and share of look-alikes. With 10% WaNet (poisons half of class 0) both halves
pass: the test cannot tell which half to flag.

    PYTHONPATH=src python benchmarks/probes/even_split.py wanet 0.1
"""

from __future__ import annotations

import sys

import numpy as np

from tripwire.bench.runner import attacked, load_suite_data
from tripwire.bench.suites import get_suite
from tripwire.detectors.input_space import InputSpace, other_class_confirmation
from tripwire.detectors.poisoning.activation_clustering import two_means
from tripwire.detectors.projection import top_directions


def main() -> None:
    kind, rate = sys.argv[1], float(sys.argv[2])
    suite = get_suite("standard")
    train, _ = load_suite_data(suite.data[0], "../shared/datasets")
    cell = next(a for a in suite.attacks if a.kind == kind)
    ds, truth, _ = attacked(train, cell, rate, 0)
    f = np.load(f"runs/probe/feat_mnist_{kind}_{rate}_0.npz")
    x, y = f["features"].astype(np.float64), f["y"]
    confirm = other_class_confirmation(InputSpace(ds.model_input(), random_state=0), ds.y)
    if confirm is None:
        raise SystemExit("the inputs do not predict their labels: no input-space test")
    for c in range(int(y.max()) + 1):
        rows = np.flatnonzero(y == c)
        centred = x[rows] - x[rows].mean(axis=0)
        z = centred @ top_directions(centred, 10).T
        assign, _ = two_means(z, random_state=0, n_init=10)
        out = []
        for side in (0, 1):
            cand = np.zeros(len(y), bool)
            cand[rows[assign == side]] = True
            share = float(confirm(cand)[cand].mean())
            out.append(
                f"half {side}: {int(cand.sum())} items, {int(truth[cand].sum())} poisons,"
                f" looks like another class {share:.2f}"
            )
        print(c, " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
