"""Remove the ensemble's flags from a stored cell, retrain the suite's recipe, and report
the attack success rate and clean accuracy before and after (the runner's retrain step).

    PYTHONPATH=src python benchmarks/probes/retrain.py runs/probe/mnist_wanet_0.01_0.npz
    PYTHONPATH=src python benchmarks/probes/retrain.py runs/s26/gprobe-ac/gtsrb_blend_0.01_0.npz
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from tripwire.attacks import attack_success_rate
from tripwire.bench.runner import load_suite_data, train_cached
from tripwire.bench.suites import get_suite
from tripwire.scan.ensemble import combine

sys.path.insert(0, str(Path(__file__).parent))
from combine import DATA_DIR, evidence, stored_cell


def main() -> None:
    path = Path(sys.argv[1])
    ds, results, space = stored_cell(path)
    name = path.stem.split("_")[0]
    spec = next(d for d in get_suite("standard").data if d.name == name)
    spec = replace(spec, spec=spec.spec.format(data_dir=DATA_DIR))
    _, test = load_suite_data(spec, DATA_DIR)
    e = combine(results, len(ds), **evidence(combine, ds, space))
    cache = Path("runs/std-cache")
    before = train_cached(ds, test, spec, 0, cache)
    after = train_cached(ds.subset(np.flatnonzero(~e.flags)), test, spec, 0, cache)
    record = ds.attack
    print(
        json.dumps(
            {
                "cell": path.stem,
                "flagged": int(e.flags.sum()),
                "asr_before": attack_success_rate(before.predict, test, record),
                "asr_after": attack_success_rate(after.predict, test, record),
                "accuracy_before": before.accuracy,
                "accuracy_after": after.accuracy,
            }
        )
    )


if __name__ == "__main__":
    main()
