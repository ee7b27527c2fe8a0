"""SPECTRE's seconds and scores on stored features, to compare two code versions.

Runs ``spectre`` (defaults) on each file holding ``features`` and ``y`` (a
``dump_features.py`` file or a stored cell that keeps its features), prints its
seconds and flag count, and writes every file's scores to OUT.npz; with ``--against
OTHER.npz`` (the same files, another code version) it also prints the largest score
difference per file:

    git archive 156eac8 src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python benchmarks/probes/spectre_scores.py /tmp/old.npz FILES...
    PYTHONPATH=src python benchmarks/probes/spectre_scores.py /tmp/new.npz FILES... \\
        --against /tmp/old.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tripwire.detectors import DetectorInput, get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--against", type=Path, help="scores of another code version")
    args = ap.parse_args()
    other = np.load(args.against) if args.against else None
    scores: dict[str, np.ndarray] = {}
    for path in args.files:
        z = np.load(path, allow_pickle=False)
        inputs = DetectorInput(features=z["features"].astype(np.float64), labels=z["y"])
        t0 = time.perf_counter()
        result = get("spectre")().detect(inputs)
        seconds = time.perf_counter() - t0
        scores[path.stem] = np.asarray(result.scores)
        line = f"{path.stem}: {seconds:.2f} s, {int(result.flags.sum())} flagged"
        if other is not None and path.stem in other.files:
            diff = float(np.abs(other[path.stem] - scores[path.stem]).max())
            line += f", largest difference {diff:.3g}"
        print(line, flush=True)
    np.savez(args.out, **scores)


if __name__ == "__main__":
    main()
