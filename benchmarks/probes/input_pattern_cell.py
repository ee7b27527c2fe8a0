"""``input-pattern`` alone on one standard-suite cell, with its per-class evidence.

Why a clean-label cell was missed: the split, its separation, the carriers' share, the
other-class ratio and the dirty-label test's two shares, for the attack's target class
(and the flags against the poisoned mask). Uses the suite's cached model and data
(``runs/std-cache``, as ``std_cell.py`` does):

    PYTHONPATH=src python benchmarks/probes/input_pattern_cell.py gtsrb sig 0.01 0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tripwire.detectors.poisoning.input_pattern import InputPatternDetector

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_cell
from ensemble_ranking import detector_input


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    _, ds, truth, model = standard_cell(name, kind, rate, seed)
    y = np.asarray(ds.y)
    targets = sorted({int(c) for c in y[truth]})
    for c in targets:
        print(f"class {c}: {int((y == c).sum())} items, {int((truth & (y == c)).sum())} poisoned")
    r = InputPatternDetector(random_state=seed).detect(detector_input(ds, model, seed))
    print(f"flagged {int(r.flags.sum())}, of them poisoned {int((r.flags & truth).sum())}")
    for entry in r.evidence.get("classes", []):
        if entry.get("class") in targets or entry.get("confirmed"):
            print(json.dumps(entry))


if __name__ == "__main__":
    main()
