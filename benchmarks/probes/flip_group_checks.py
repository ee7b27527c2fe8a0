"""Probe: the two checks a flip group must pass, on every candidate group.

With the checks switched off, lists each candidate group (given <- source), its size,
the joint's count for that cell, the core ratio (least share on the 30/50/70% sets over
the share on the 90% set; ``CORE_AGREEMENT`` is 0.5) and the excess over the count in
binomial errors (``GROUP_EXCESS_SE`` is 3), with how many of its items are flips where
that is known. Cases: the scan tests' generated data (weak proxies of overlapping
classes: ``tests/scan/test_data_scan.py``) and the dumps of ``benchmarks/label_noise.py
--dump``.

    PYTHONPATH=src:. python benchmarks/probes/flip_group_checks.py 'runs/s19/ln-dump/*.npz'
"""

from __future__ import annotations

import glob
import sys

import numpy as np

import tripwire.detectors.poisoning.label_noise as ln
from tripwire.detectors.oos import label_probabilities


def candidates(name: str, p: np.ndarray, y: np.ndarray, truth: np.ndarray | None) -> None:
    ln.CORE_AGREEMENT, ln.GROUP_EXCESS_SE = 0.0, -np.inf
    issues, counts = ln.noise_rate_issues(p, y, ln.per_class_thresholds(p, y))
    taken = issues.copy()  # as flip_groups: the source's reference leaves these out
    for (g, s), members in ln.flip_groups(p, y, issues, counts).items():
        own = np.flatnonzero(y == g)
        ref = np.flatnonzero((y == s) & ~taken)
        stat = ln._source_likeness(p[own], g, s)
        ref_stat = ln._source_likeness(p[ref], g, s)
        share = ln.group_share(stat, ref_stat)
        core = min(ln.group_share(stat, ref_stat, q) for q in ln.CORE_QUANTILES)
        passing = min(share * ln.SOURCE_QUANTILE, 1.0)
        error = np.sqrt(own.size * passing * (1 - passing)) / ln.SOURCE_QUANTILE
        flips = "" if truth is None else f" flips {int(truth[members].sum())}"
        print(
            f"{name} {g}<-{s}: size {members.size} count {int(counts[g, s])} "
            f"core {core / share:.2f} excess {(members.size - counts[g, s]) / error:.2f}{flips}"
        )
        taken[members] = True


def main() -> None:
    from tests.scan.test_data_scan import _overlapping_classes, planted

    for n_bad in (4, 6):
        ds, feats, _ = planted(n_per=60, k=10, n_bad=n_bad)
        p, _ = label_probabilities(feats, ds.y, images=ds.model_input(), n_classes=10)
        candidates(f"planted({n_bad})", p, ds.y, None)
    for flips in (0, 80):
        ds, feats, truth = _overlapping_classes(flips)
        p, _ = label_probabilities(feats, ds.y, images=ds.model_input(), n_classes=4)
        candidates(f"overlapping({flips})", p, ds.y, truth)
    for path in sorted(glob.glob(sys.argv[1])) if len(sys.argv) > 1 else []:
        d = np.load(path)
        name = path.rsplit("/", 1)[-1][:-4]
        candidates(name, d["probs"], d["y"].astype(np.int64), d["truth"].astype(bool))


if __name__ == "__main__":
    main()
