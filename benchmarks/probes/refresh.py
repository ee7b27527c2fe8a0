"""Run feature-only detectors again on the stored full-MNIST cells, into a copy.

For every cell stored by ``std_cell.py`` (``runs/probe/mnist_*_0.npz``) whose features
``dump_features.py`` stored (``runs/probe/feat_<cell>.npz``), recompute the named
detectors (those that need only features and labels) and write the cell, with their
outputs replaced, to ``OUT``; ``combine.py --probe-dir OUT`` then gives the ensemble's
verdict with them. No pickles.

    PYTHONPATH=src python benchmarks/probes/refresh.py activation-clustering runs/probe-ac
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput, get


def main() -> None:
    names, out = sys.argv[1].split(","), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path("runs/probe").glob("mnist_*_0.npz")):
        feat = path.with_name(f"feat_{path.name}")
        if not feat.exists():
            print(f"{path.stem}: no stored features, skipped")
            continue
        f = np.load(feat)
        cell = dict(np.load(path, allow_pickle=False))
        meta = json.loads(str(cell["meta"]))
        inputs = DetectorInput(features=f["features"].astype(np.float64), labels=f["y"])
        truth = cell["truth"]
        for name in names:
            r = get(name)().detect(inputs)
            before = cell[f"f__{name}"]
            print(
                f"{path.stem} {name}: flags {int(before.sum())} ({int((before & truth).sum())}"
                f" poisons) -> {int(r.flags.sum())} ({int((r.flags & truth).sum())} poisons)",
                flush=True,
            )
            cell[f"s__{name}"] = np.asarray(r.scores, float)
            cell[f"f__{name}"] = np.asarray(r.flags, bool)
            meta[name] = float(r.threshold)
        cell["meta"] = np.array(json.dumps(meta))
        np.savez(out / path.name, **cell)


if __name__ == "__main__":
    main()
