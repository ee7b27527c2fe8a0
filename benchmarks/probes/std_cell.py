"""Every data detector on one standard-suite cell, outputs stored for the ensemble.

The bench runner's cell code cut apart: the suite's cached model for the cell (trained
by ``tripwire bench --suite standard --cache-dir runs/std-cache``), its features, the
scan's probabilities, then each data detector; scores, flags and thresholds (and the
probabilities and features) go to ``runs/probe/<data>_<attack>_<rate>_<seed>.npz``
(no pickles), so that
``combine.py`` can recompute the ensemble without re-running the detectors.

    PYTHONPATH=src python benchmarks/probes/std_cell.py mnist wanet 0.05 0 [DETECTORS] [OUT_DIR]

``OUT_DIR`` (default ``runs/probe``) keeps a run of a few detectors from overwriting a
cell stored with all of them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from tripwire.detectors import Need, available

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_cell
from ensemble_ranking import detector_input


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    only = set(sys.argv[5].split(",")) if len(sys.argv) > 5 and sys.argv[5] != "all" else None
    out_dir = Path(sys.argv[6]) if len(sys.argv) > 6 else Path("runs/probe")
    _, ds, truth, model = standard_cell(name, kind, rate, seed)
    inputs = detector_input(ds, model, seed)
    have = frozenset({Need.FEATURES, Need.LABELS, Need.PROBS, Need.DATA, Need.MODEL})
    arrays: dict[str, np.ndarray] = {"truth": truth, "y": ds.y}
    # The label checks' inputs too, for probes of the labels family.
    arrays["probs"] = np.asarray(inputs.probs, np.float32)
    arrays["features"] = np.asarray(inputs.features, np.float32)
    thresholds: dict[str, float] = {}
    for cls in available(satisfiable_with=have):
        if only is not None and cls.name not in only:
            continue
        t0 = time.perf_counter()
        r = cls().detect(inputs)
        arrays[f"s__{cls.name}"] = np.asarray(r.scores, float)
        arrays[f"f__{cls.name}"] = np.asarray(r.flags, bool)
        thresholds[cls.name] = float(r.threshold)
        hits = int((r.flags & truth).sum())
        print(cls.name, f"{time.perf_counter() - t0:.1f} s", int(r.flags.sum()), hits, flush=True)
    out = out_dir / f"{name}_{kind}_{rate}_{seed}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, meta=np.array(json.dumps(thresholds)), **arrays)


if __name__ == "__main__":
    main()
