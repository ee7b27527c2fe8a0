"""Store one standard-suite cell's features, labels and truth for speed probes.

Loads the suite's cached model (``runs/std-cache``), takes its penultimate features
over the attacked training set and writes ``runs/probe/feat_<data>_<attack>_<rate>_<seed>.npz``
(features float32, labels, truth, in-sample softmax predictions); no pickles.

    PYTHONPATH=src python benchmarks/probes/dump_features.py mnist pair-flip 0.05 0
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tripwire.bench.runner import attacked, load_suite_data, train_cached
from tripwire.bench.suites import get_suite

DATA_DIR = "../shared/datasets"


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    suite = get_suite("standard")
    spec = next(d for d in suite.data if d.name == name)
    spec = replace(spec, spec=spec.spec.format(data_dir=DATA_DIR))
    cell = next(a for a in suite.attacks if a.kind == kind)
    train, test = load_suite_data(spec, DATA_DIR)
    ds, truth, _ = attacked(train, cell, rate, seed)
    model = train_cached(ds, test, spec, seed, Path("runs/std-cache"))
    t0 = time.perf_counter()
    feats = model.features(ds.model_input())
    print(f"forward {time.perf_counter() - t0:.1f} s", feats.shape, flush=True)
    out = Path("runs/probe") / f"feat_{name}_{kind}_{rate}_{seed}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, features=np.asarray(feats, np.float32), y=ds.y, truth=truth)


if __name__ == "__main__":
    main()
