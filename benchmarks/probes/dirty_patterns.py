"""Probe: the groups ``input-pattern`` finds and then leaves to the label checks as
dirty-label sets (a shared added pattern on items that look like other classes), on
clean and attacked training sets.

For every class whose pattern passed the separation, diversity and cross-class tests
and then the dirty-label test: its size, carriers, poisons among them, and the two
look-alike shares. Dirty-label backdoor poisons (a patch or blend relabelled to the
target) should be such groups; a clean set should have none.

    PYTHONPATH=src python benchmarks/probes/dirty_patterns.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from input_pattern import BUNDLED, DATASETS

from tripwire.attacks import poison_dataset
from tripwire.bench.runner import stratified_subset
from tripwire.detectors import DetectorInput
from tripwire.detectors.input_space import InputSpace, group_spread
from tripwire.detectors.poisoning.input_pattern import InputPatternDetector, is_dirty_label
from tripwire.io import load_dataset

CELLS = {"clean": 0.0, "badnets": 0.01, "blend": 0.01, "wanet": 0.01}


def _mask(n: int, idx: np.ndarray) -> np.ndarray:
    m = np.zeros(n, bool)
    m[idx] = True
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--bundled-only", action="store_true")
    ap.add_argument("--only", help="only the dataset whose file name contains this")
    args = ap.parse_args()
    sets = [(n, sub) for n, sub, _ in BUNDLED]
    if not args.bundled_only:
        sets += [(str(Path(args.data_dir) / n), sub) for n, sub, _ in DATASETS]
    for name, subset in sets:
        if args.only and args.only not in name:
            continue
        train = load_dataset(name)
        if subset is not None:
            train = stratified_subset(train, subset, 0)
        for kind, rate in CELLS.items():
            ds = (
                train
                if kind == "clean"
                else poison_dataset(train, kind, rate=rate, target=0, seed=0)
            )
            truth = np.zeros(len(ds), bool) if ds.poisoned is None else np.asarray(ds.poisoned)
            t0 = time.perf_counter()
            space = InputSpace(ds.model_input(), random_state=0)
            det = InputPatternDetector().fit(DetectorInput(labels=ds.y, data=ds, input_space=space))
            spread = group_spread(space, ds.y)
            groups = []
            for p in det.classes_:
                if p.looks_other is None or p.looks_other_rest is None:
                    continue
                if not is_dirty_label(p.looks_other, p.looks_other_rest):
                    continue
                idx = np.flatnonzero(ds.y == p.label)
                groups.append(
                    {
                        "class": int(p.label),
                        "size": int(p.size),
                        "carriers": int(p.carriers.sum()),
                        "poisons_in": int(truth[idx][p.carriers].sum()),
                        "separation": round(p.separation, 2),
                        "looks_other": round(p.looks_other, 3),
                        "rest": round(p.looks_other_rest, 3),
                        "spread": round(float(spread(_mask(len(ds), idx[p.carriers]))), 3),
                    }
                )
            print(
                json.dumps(
                    {
                        "data": Path(name).name,
                        "attack": kind,
                        "rate": rate,
                        "poisons": int(truth.sum()),
                        "dirty_groups": groups,
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
