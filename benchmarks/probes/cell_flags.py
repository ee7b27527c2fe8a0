"""Which items some detectors flag on one standard-suite cell, saved, and compared with
another code version's file (the same items, not only as many):

    PYTHONPATH=runs/s31/old/src python benchmarks/probes/cell_flags.py gtsrb badnets 0.01 0 \\
        --out /tmp/old.npz
    PYTHONPATH=src python benchmarks/probes/cell_flags.py gtsrb badnets 0.01 0 \\
        --out /tmp/new.npz --against /tmp/old.npz

The cell's inputs are built as ``benchmarks/feature_speed.py --cell`` builds them (its
cached model, features and input space).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cell", nargs=4, metavar=("DATA", "ATTACK", "RATE", "SEED"))
    ap.add_argument("--detectors", default="activation-clustering,dual-space")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--against", type=Path, help="another version's --out file")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from feature_speed import cell_inputs  # type: ignore[import-not-found]

    from tripwire.detectors import get

    name, kind, rate, seed = args.cell
    inputs, _ = cell_inputs(name, kind, float(rate), int(seed))
    flags = {d: get(d)().detect(inputs).flags for d in args.detectors.split(",")}
    np.savez(args.out, **flags)
    other = np.load(args.against) if args.against else None
    for d, f in flags.items():
        line = f"{d}: {int(f.sum())} flagged"
        if other is not None and d in other:
            same = bool(np.array_equal(other[d], f))
            line += f"; against {args.against}: {int(other[d].sum())}, same items {same}"
        print(line)


if __name__ == "__main__":
    main()
