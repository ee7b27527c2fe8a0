"""A standard-suite cell's cached model and attack record, for benchmarks that take both.

Trains the suite's recipe on the cell's attacked training set if ``runs/std-cache``
does not hold it yet (as ``tripwire bench --suite standard`` would), then prints one
JSON line: the model's path and the attack record (for
``benchmarks/input_detection.py --model PATH --attack-record JSON``).

    PYTHONPATH=src python benchmarks/probes/suite_model.py cifar10-10k wanet 0.05 0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cells import CACHE, standard_cell

from tripwire.bench.runner import cached_model_path


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    spec, ds, _, _ = standard_cell(name, kind, rate, seed)  # trains it if missing
    path = cached_model_path(ds, spec, seed, CACHE)
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    print(
        json.dumps(
            {
                "model": str(path),
                "accuracy": meta["accuracy"],
                "attack_record": ds.attack,
            }
        )
    )


if __name__ == "__main__":
    main()
