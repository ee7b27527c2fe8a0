"""``input-pattern`` alone on standard-suite cells' attacked training sets (no model).

The detector reads inputs and labels only, so a suite cell's verdict can be compared
between two code versions without the suite's models: flags, precision and recall
against the poisoned mask, and each confirmed class's split. Cells as
``DATA:KIND:RATE:SEED``.

    PYTHONPATH=src python benchmarks/probes/input_pattern_suite.py \\
        gtsrb:badnets:0.01:0 gtsrb:blend:0.01:0 gtsrb:wanet:0.01:0 gtsrb:clean:0.0:0
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput
from tripwire.detectors.poisoning.input_pattern import InputPatternDetector

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_data  # type: ignore[import-not-found]


def main() -> None:
    for cell in sys.argv[1:]:
        name, kind, rate, seed = cell.split(":")
        _, ds, truth, _ = standard_data(name, kind, float(rate), int(seed))
        t0 = time.perf_counter()
        res = InputPatternDetector(random_state=int(seed)).detect(
            DetectorInput(labels=np.asarray(ds.y), data=ds)
        )
        flags = np.asarray(res.flags)
        tp = int((flags & truth).sum())
        print(
            json.dumps(
                {
                    "cell": cell,
                    "poisons": int(truth.sum()),
                    "flagged": int(flags.sum()),
                    "true": tp,
                    "precision": round(tp / flags.sum(), 4) if flags.any() else None,
                    "recall": round(tp / truth.sum(), 4) if truth.any() else None,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "confirmed": [
                        {
                            k: c[k]
                            for k in (
                                "class",
                                "carrier_share",
                                "looks_other",
                                "looks_other_rest",
                                "dirty_label",
                                "flagged",
                            )
                        }
                        for c in res.evidence["classes"]
                        if c["confirmed"]
                    ],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
