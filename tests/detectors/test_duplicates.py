"""Duplicate-label screen on bundled digits with planted copies."""

from __future__ import annotations

import numpy as np

from tripwire.detectors import DetectorInput
from tripwire.detectors.poisoning.duplicates import DuplicateLabelDetector, exact_groups
from tripwire.io import load_dataset, make_dataset


def _with_copies() -> tuple[DetectorInput, np.ndarray, np.ndarray]:
    ds = load_dataset("bundled:digits")
    rng = np.random.default_rng(0)
    src = rng.choice(len(ds), 30, replace=False)
    x_exact = ds.x[src[:10]]
    y_exact = (ds.y[src[:10]] + 1) % 10  # same image, another label
    # Near copies: three pixels of each nudged by one grey level (of 16).
    x_near = ds.x[src[10:20]].astype(np.int16).reshape(10, -1)
    for row in x_near:
        pos = rng.choice(64, 3, replace=False)
        row[pos] = np.where(row[pos] < 16, row[pos] + 1, row[pos] - 1)
    x_near = x_near.reshape(10, 8, 8)
    y_near = (ds.y[src[10:20]] + 3) % 10
    x_same = ds.x[src[20:30]]  # honest duplicates: same label
    y_same = ds.y[src[20:30]]
    x = np.concatenate([ds.x, x_exact, x_near.astype(ds.x.dtype), x_same])
    y = np.concatenate([ds.y, y_exact, y_near, y_same])
    n = len(ds)
    conflicting = np.concatenate([src[:20], np.arange(n, n + 20)])
    honest = np.concatenate([src[20:30], np.arange(n + 20, n + 30)])
    data = make_dataset(x, y, path="digits-copies")
    return DetectorInput(labels=y, data=data), conflicting, honest


def test_flags_both_sides_of_a_conflict_and_spares_honest_copies() -> None:
    inputs, conflicting, honest = _with_copies()
    res = DuplicateLabelDetector().detect(inputs)
    flagged = set(np.flatnonzero(res.flags).tolist())
    exact_side = set(conflicting[:10].tolist()) | set(conflicting[20:30].tolist())
    assert exact_side <= flagged
    near_side = set(conflicting[10:20].tolist()) | set(conflicting[30:].tolist())
    assert len(near_side & flagged) >= 16
    assert not (set(honest.tolist()) & flagged)
    # Nothing else: bundled digits hold no conflicting copies of their own.
    assert flagged <= set(conflicting.tolist())
    assert res.evidence["exact_duplicate_groups"] >= 20
    assert res.calibration.method == "fixed"


def test_exact_groups_match_bytes() -> None:
    x = np.array([[1, 2], [3, 4], [1, 2]], dtype=np.uint8)
    g = exact_groups(x)
    assert g[0] == g[2] != g[1]
