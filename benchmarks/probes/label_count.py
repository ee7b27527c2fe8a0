"""How many label issues confident learning's count finds, and what the labels family
flags, on stored cells with out-of-sample probabilities, beside cleanlab.

Reads cells that hold ``probs``, ``y``, ``truth`` and ``features`` (the dumps of
``benchmarks/label_noise.py --dump`` and the cells of ``std_cell.py``), runs
``confident-learning`` and ``knn-label`` as the scan does, combines them with the
ensemble's rule (the labels family: both members, or a flip group), and prints per cell:
flips, the count's issues and how many are flips, ``knn-label``'s flags, the family's
precision / recall / F1, cleanlab's ``find_label_issues`` on the same probabilities, and
the items whose out-of-sample argmax is not their label.

    PYTHONPATH=src python benchmarks/probes/label_count.py 'runs/s19/ln-dump/*.npz' \\
        runs/probe/gtsrb_label-flip_0.05_0.npz
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import numpy as np

from tripwire.bench.metrics import flag_metrics
from tripwire.detectors import DetectorInput, get
from tripwire.scan.ensemble import combine


def prf(flags: np.ndarray, truth: np.ndarray) -> str:
    if not truth.any():
        return f"{int(flags.sum())} flagged"
    m = flag_metrics(truth, flags)
    return f"{m['n_flagged']} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f}"


def f1(flags: np.ndarray, truth: np.ndarray) -> float:
    return float(flag_metrics(truth, flags)["f1"] or 0.0)


def main() -> None:
    from cleanlab.filter import find_label_issues

    paths = [p for arg in sys.argv[1:] for p in sorted(glob.glob(arg))]
    for path in paths:
        f = np.load(path)
        probs, y, truth = f["probs"], f["y"], f["truth"].astype(bool)
        x = f["features"].astype(np.float64)
        inputs = DetectorInput(features=x, labels=y, probs=probs)
        res = {n: get(n)().detect(inputs) for n in ("confident-learning", "knn-label")}
        ens = combine(res, len(y), labels=y)
        cl = find_label_issues(y, probs)
        off = probs.argmax(axis=1) != y
        ratio = (1 - f1(ens.flags, truth)) / max(1 - f1(cl, truth), 1e-9) if truth.any() else 0
        count = prf(res["confident-learning"].flags, truth)
        print(
            f"{Path(path).stem}: flips {int(truth.sum())}; confident-learning {count}; "
            f"knn-label {prf(res['knn-label'].flags, truth)}; family {prf(ens.flags, truth)}"
            f" (errors {ratio:.2f}x cleanlab's); cleanlab {prf(cl, truth)}; "
            f"argmax not the label {prf(off, truth)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
