"""Probe: concentrated label flips (issue #4: up to 45% of one class flipped to one other).

Reads the dumps of ``benchmarks/label_noise.py --dump DIR`` (features, the scan's
pooled probabilities, labels, truth) and compares, per cell, ways of choosing the label
issues:

- ``count``: confident learning's count and order (:func:`noise_rate_issues`);
- ``groups``: the count plus :func:`flip_groups` (what ``confident-learning`` flags);
- ``knn-label``: the feature-neighbour member alone (the labels family's quorum needs
  it to agree);
- ``wide x2 -> confirmed``: per label, twice the count's items by error posterior, kept
  where they look like another class as inputs among the non-candidates
  (:func:`other_class_confirmation`; the images are rebuilt, the attacks are seeded).

    PYTHONPATH=src python benchmarks/label_noise.py --dump runs/ln-dump --out ...
    PYTHONPATH=src python benchmarks/probes/concentrated_flips.py 'runs/ln-dump/*.npz'
"""

from __future__ import annotations

import glob
import re
import sys

import numpy as np

from tripwire.attacks import poison_dataset
from tripwire.detectors.base import DetectorInput
from tripwire.detectors.input_space import InputSpace, other_class_confirmation
from tripwire.detectors.poisoning.label_noise import (
    KnnLabelDetector,
    calibrated_joint,
    flip_groups,
    label_error_posterior,
    noise_rate_issues,
    per_class_thresholds,
)
from tripwire.io import load_dataset

_NAME = re.compile(
    r"(?P<arch>[^_]+)_(?P<kind>[a-z-]+?)(-(?P<s>\d+)-(?P<t>\d+))?_(?P<rate>[\d.]+)_(?P<seed>\d+)"
)


def rebuild(path: str) -> tuple[np.ndarray, int]:
    m = _NAME.search(path.rsplit("/", 1)[-1])
    if m is None:
        raise SystemExit(f"{path}: not a label_noise dump name")
    train = load_dataset("bundled:mnist", split="train")
    kind, rate, seed = m["kind"], float(m["rate"]), int(m["seed"])
    params = {"source": int(m["s"]), "target": int(m["t"])} if m["s"] else {}
    ds = train if kind == "clean" else poison_dataset(train, kind, rate=rate, seed=seed, **params)
    return ds.model_input(), seed


def prf(flags: np.ndarray, truth: np.ndarray) -> str:
    tp = int((flags & truth).sum())
    n = int(flags.sum())
    if not truth.any():
        return f"{n:4d} flagged"
    return f"{n:4d} flagged P {tp / max(n, 1):.3f} R {tp / truth.sum():.3f}"


def main() -> None:
    for path in sorted(glob.glob(sys.argv[1])):
        d = np.load(path)
        p, y, truth = d["probs"], d["y"].astype(np.int64), d["truth"].astype(bool)
        t = per_class_thresholds(p, y)
        issues, counts = noise_rate_issues(p, y, t)
        groups = flip_groups(p, y, issues, counts)
        grouped = issues.copy()
        for members in groups.values():
            grouped[members] = True
        knn = KnnLabelDetector().detect(DetectorInput(features=d["features"], labels=y)).flags
        print(path.rsplit("/", 1)[-1], f"truth {int(truth.sum())}")
        print("   count      ", prf(issues, truth))
        sizes = {f"{g}<-{s}": (len(m), int(truth[m].sum())) for (g, s), m in groups.items()}
        print("   groups     ", prf(grouped, truth), "(size, flipped):", sizes)
        print("   knn-label  ", prf(knn, truth))
        x, seed = rebuild(path)
        confirm = other_class_confirmation(InputSpace(x, random_state=seed), y)
        err = label_error_posterior(p, y, calibrated_joint(p, y, t))
        cand = np.zeros(len(y), bool)
        for c, m in enumerate(counts.sum(axis=1)):
            members = np.flatnonzero(y == c)
            cand[members[np.argsort(-err[members], kind="stable")[: 2 * int(m)]]] = True
        kept = confirm(cand) if confirm is not None else cand
        print("   wide x2    ", prf(cand, truth), "-> confirmed", prf(kept, truth))


if __name__ == "__main__":
    main()
