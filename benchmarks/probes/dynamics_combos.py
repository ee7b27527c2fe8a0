"""Probe: training-margin's robust cut at several z, and the label checks' quorum gated
by the area under the margin, on one standard-suite cell whose margins
``benchmarks/training_dynamics.py`` stored (``runs/dynamics``).

    PYTHONPATH=src python benchmarks/probes/dynamics_combos.py cifar10-10k label-flip 0.05
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


def show(tag: str, flags: np.ndarray, truth: np.ndarray) -> None:
    n = int(flags.sum())
    if not truth.any():
        print(f"{tag:32s} flags {n:5d} ({n / len(flags):.2%} of a clean set)")
        return
    tp = int((flags & truth).sum())
    p, r = tp / max(n, 1), tp / int(truth.sum())
    print(f"{tag:32s} flags {n:5d} P {p:.3f} R {r:.3f} F1 {2 * p * r / max(p + r, 1e-9):.3f}")


def main() -> None:
    name, kind, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    _, ds, truth, model = standard_cell(name, kind, rate, 0)
    truth = np.asarray(truth, dtype=bool)
    inputs, _ = detector_input(ds, model, 0)
    cl = get("confident-learning")().detect(inputs).flags
    kn = get("knn-label")().detect(inputs).flags
    aum = area_under_margin(np.load(f"runs/dynamics/{name}_{kind}_{rate}_0.npy"))
    quorum = cl & kn
    show("CL & kNN (the labels quorum)", quorum, truth)
    s = -aum
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med))
    for z in (2.0, 2.5, 3.0, 3.5):
        show(f"AUM robust z {z}", s > med + z * mad, truth)
    for t in (0.0, float(np.median(aum))):
        show(f"quorum & AUM < {t:.2f}", quorum & (aum < t), truth)
        show(f"(CL | kNN) & AUM < {t:.2f}", (cl | kn) & (aum < t), truth)


if __name__ == "__main__":
    main()
