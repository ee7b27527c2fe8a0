"""Store one standard-suite cell's features, labels and truth for speed probes.

Loads the suite's cached model (``runs/std-cache``), takes its penultimate features
over the attacked training set and writes ``runs/probe/feat_<data>_<attack>_<rate>_<seed>.npz``
(features as float32, labels, the poisoned mask); no pickles.

    PYTHONPATH=src python benchmarks/probes/dump_features.py mnist pair-flip 0.05 0
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_cell


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    _, ds, truth, model = standard_cell(name, kind, rate, seed)
    t0 = time.perf_counter()
    feats = model.features(ds.model_input())
    print(f"forward {time.perf_counter() - t0:.1f} s", feats.shape, flush=True)
    out = Path("runs/probe") / f"feat_{name}_{kind}_{rate}_{seed}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, features=np.asarray(feats, np.float32), y=ds.y, truth=truth)


if __name__ == "__main__":
    main()
