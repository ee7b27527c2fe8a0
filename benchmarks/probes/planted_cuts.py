"""training-margin's cut at several targets, from the runs ``training_dynamics.py`` stored.

For each cell: the calibrators' estimate of the mislabelled share against the truth,
and the flags (precision / recall / F1) of the planted cut at false-share targets
0.02-0.2 and of the robust cuts z = 3.5, 2.5, beside the ranking's AUROC; the
calibrators themselves are left out of every figure.

    PYTHONPATH=src python benchmarks/probes/planted_cuts.py --margins-dir runs/s32/dyn \\
        cifar10-10k:label-flip:0.05:0 cifar10-10k:clean:0.0:0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from tripwire.detectors.calibration import planted_fdr_threshold, robust_threshold
from tripwire.detectors.poisoning.dynamics import area_under_margin

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_data  # type: ignore[import-not-found]


def prf(truth: np.ndarray, flags: np.ndarray) -> str:
    tp = int((truth & flags).sum())
    p = tp / max(1, int(flags.sum()))
    r = tp / max(1, int(truth.sum()))
    f1 = 2 * p * r / max(1e-9, p + r)
    return f"{int(flags.sum()):6d} flags  P {p:.3f}  R {r:.3f}  F1 {f1:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", nargs="+", metavar="DATA:KIND:RATE:SEED")
    ap.add_argument("--margins-dir", type=Path, default=Path("runs/dynamics"))
    args = ap.parse_args()
    for cell in args.cells:
        name, kind, rate, seed = cell.split(":")
        _, _, truth, _ = standard_data(name, kind, float(rate), int(seed))
        with np.load(args.margins_dir / f"{name}_{kind}_{rate}_{seed}.npz") as z:
            aum, planted = area_under_margin(z["margins"]), z["calibrators"]
        rest = np.ones(len(aum), dtype=bool)
        rest[planted] = False
        s, c, t = -aum[rest], -aum[planted], np.asarray(truth, dtype=bool)[rest]
        auroc = f"{roc_auc_score(t, s):.4f}" if t.any() else "-"
        print(
            f"{cell}: {rest.sum()} items, {planted.size} calibrators, true share "
            f"{t.mean():.4f}, AUROC {auroc}"
        )
        for alpha in (0.02, 0.05, 0.1, 0.2):
            cut, pi = planted_fdr_threshold(s, c, alpha)
            print(f"  planted {alpha:<4}  {prf(t, s > cut)}  (estimated share {pi:.4f})")
        for zz in (3.5, 2.5):
            print(f"  robust z {zz:<3}  {prf(t, s > robust_threshold(s, zz))}")


if __name__ == "__main__":
    main()
