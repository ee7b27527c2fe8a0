"""Run feature-only detectors again on stored cells, into a copy.

For every cell stored by ``std_cell.py`` (``PROBE_DIR/DATA_*_0.npz``; default
``runs/probe``, full MNIST) whose features are stored (in the cell itself, or by
``dump_features.py`` beside it as ``feat_<cell>.npz``), recompute the named detectors
(those that need only features and labels) and write the cell, with their outputs
replaced, to ``OUT``; ``combine.py --probe-dir OUT`` then gives the ensemble's verdict
with them. No pickles.

    PYTHONPATH=src python benchmarks/probes/refresh.py activation-clustering runs/probe-ac
    PYTHONPATH=src python benchmarks/probes/refresh.py activation-clustering /tmp/gprobe-ac \
        --probe-dir runs/s21/gprobe --data gtsrb

``--set NAME=VALUE`` (repeatable; VALUE read as JSON) passes a parameter to the
detectors, for a rule before a change: ``--set vote_neighbours=0`` is activation
clustering without its neighbour vote. ``--seed`` picks the cells' seed (default 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput, get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("detectors", help="comma-separated detectors to run again")
    ap.add_argument("out", type=Path, help="folder for the refreshed copies")
    ap.add_argument("--probe-dir", type=Path, default=Path("runs/probe"))
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="detector parameter NAME=VALUE")
    args = ap.parse_args()
    names, out = args.detectors.split(","), args.out
    params = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.probe_dir.glob(f"{args.data}_*_{args.seed}.npz")):
        cell = dict(np.load(path, allow_pickle=False))
        feat = path.with_name(f"feat_{path.name}")
        if "features" in cell:
            f = cell
        elif feat.exists():
            f = dict(np.load(feat, allow_pickle=False))
        else:
            print(f"{path.stem}: no stored features, skipped")
            continue
        meta = json.loads(str(cell["meta"]))
        inputs = DetectorInput(features=f["features"].astype(np.float64), labels=f["y"])
        truth = cell["truth"]
        for name in names:
            r = get(name)(**params).detect(inputs)
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
