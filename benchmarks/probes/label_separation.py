"""Can the label checks' probabilities tell a weak proxy's errors from flipped labels?

Reads cells stored by ``std_cell.py`` (which keeps the scan's out-of-sample
probabilities) and prints, per cell, what docs/benchmarks.md (session 16) cites:

- the items both label checks flag: their median top probability and the rank of the
  given label among the classes (0 = the proxy's first choice);
- those flags kept at a top probability of at least 0.9 (clean items and flips);
- a conformal test: the share of items whose label's probability mass at or below its
  own is under a level (calibrated probabilities make it about the level on clean data);
- anchors: each class's most probable items (the top 2-20% of its labelled count by
  that class's probability) and the share of them labelled otherwise;
- thresholds from 500 verified clean items (50 a class, as ``bench --trusted 500``
  draws them) for confident learning, knn-label, feature-outlier and spectre, at the
  higher of their 1% cut and the robust one, and the pairs of them that agree.

    PYTHONPATH=src python benchmarks/probes/std_cell.py cifar10-10k clean 0.0 0
    PYTHONPATH=src python benchmarks/probes/std_cell.py mnist label-flip 0.05 0 \\
        confident-learning,knn-label runs/probe/labels
    PYTHONPATH=src python benchmarks/probes/label_separation.py \\
        runs/probe/cifar10-10k_clean_0.0_0.npz runs/probe/labels/mnist_label-flip_0.05_0.npz
"""

from __future__ import annotations

import sys

import numpy as np

from tripwire.detectors.calibration import robust_threshold, threshold_at_fpr

PAIRS = (
    ("confident-learning", "knn-label"),
    ("confident-learning", "feature-outlier"),
    ("knn-label", "feature-outlier"),
    ("confident-learning", "spectre"),
)


def _verified(y: np.ndarray, truth: np.ndarray, per: int = 50, seed: int = 0) -> np.ndarray:
    """The draw of ``tripwire.bench.runner.verified_subset`` (seed offset 1000)."""
    rng = np.random.default_rng(1000 + seed)
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        mask[rng.permutation(np.flatnonzero((y == c) & ~truth))[:per]] = True
    return mask


def report(path: str) -> None:
    z = np.load(path)
    p, y, truth = z["probs"].astype(float), z["y"], z["truth"].astype(bool)
    n, k = p.shape
    rows = np.arange(n)
    py = p[rows, y]
    top = p.max(axis=1)
    both = z["f__confident-learning"] & z["f__knn-label"]
    rank = (p > py[:, None]).sum(axis=1)
    print(
        f"{path}: {n} items, {int(truth.sum())} poisoned, proxy agrees with "
        f"{np.mean(p.argmax(1) == y):.3f} of the labels"
    )
    for name, m in (("flagged clean", both & ~truth), ("flagged poisoned", both & truth)):
        if m.any():
            print(
                f"  {name}: {int(m.sum())}, median top probability "
                f"{np.median(top[m]):.3f}, rank of the label {np.bincount(rank[m], minlength=k)}"
            )
    keep = both & (top >= 0.9)
    print(
        f"  top probability >= 0.9: {int((keep & ~truth).sum())} clean, "
        f"{int((keep & truth).sum())} of {int((both & truth).sum())} flips kept"
    )
    mass = (p * (p <= py[:, None])).sum(axis=1)
    for level in (0.01, 0.05):
        m = mass < level
        print(
            f"  conformal level {level}: {int((m & ~truth).sum())} clean "
            f"({np.mean(m & ~truth):.4f}), {int((m & truth).sum())} poisoned"
        )
    counts = np.bincount(y, minlength=k)
    for q in (0.02, 0.05, 0.1, 0.2):
        off = tot = 0
        for j in range(k):
            m = max(int(q * counts[j]), 5)
            a = np.argsort(-p[:, j], kind="stable")[:m]
            off += int((y[a] != j).sum())
            tot += m
        print(
            f"  anchors (top {q:.0%} a class): {off} of {tot} labelled otherwise ({off / tot:.4f})"
        )
    dets = [
        d
        for d in ("confident-learning", "knn-label", "feature-outlier", "spectre")
        if f"s__{d}" in z.files
    ]
    if len(dets) < 2:
        return
    ver = _verified(y, truth)
    flags = {}
    for d in dets:
        s = z[f"s__{d}"]
        flags[d] = s > max(threshold_at_fpr(s[ver], 0.01), robust_threshold(s, 3.5))
        print(
            f"  verified 1%: {d} {int(flags[d].sum())} flags, "
            f"{int((flags[d] & truth).sum())} poisoned"
        )
    for a, b in PAIRS:
        if a in flags and b in flags:
            m = flags[a] & flags[b]
            hit = int((m & truth).sum())
            print(f"    {a} & {b}: {int(m.sum())} flags, {hit} poisoned")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        report(arg)
