"""Seconds and answers of the exact all-items neighbour search on generated sets.

Clustered rows (40 Gaussian clusters, as a network's features sit) of several sizes,
widths and ``k``, each with 50 exact copies of one row (ties); times
:func:`tripwire.detectors.neighbours.nearest_neighbours` on each (median of
``--repeats``) and stores the answers, so that two code versions can be shown to
return the same neighbours (up to the order of tied distances) on the same rows:

    git archive f323aed src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python benchmarks/probes/neighbour_search.py /tmp/nn_old.npz
    PYTHONPATH=src python benchmarks/probes/neighbour_search.py /tmp/nn_new.npz \\
        --against /tmp/nn_old.npz

``--path candidates`` or ``--path whole`` forces one way of comparing a block with a
cell (:func:`tripwire.detectors.neighbours._compare_whole` otherwise chooses).
``--block`` times instead what one block of the search costs: the float32 product of
557 rows with a cell of 470 members in 79 columns (full MNIST's sizes), and a row-wise
``argpartition`` of its result for 15 nearest, median of 50.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tripwire.detectors import neighbours
from tripwire.detectors.neighbours import nearest_neighbours

#: (rows, columns, k, cluster spread)
SETS = (
    (25_000, 16, 5, 1.0),
    (30_000, 64, 11, 1.0),
    (30_000, 128, 11, 0.5),
    (25_000, 70, 11, 3.0),
    (22_000, 256, 40, 1.0),
)


def rows(n: int, d: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(40, d)) * 6.0
    x = centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d)) * spread
    x[100:150] = x[0]  # exact copies: ties that either order may answer
    return x


def beyond_ties(
    d_a: np.ndarray, i_a: np.ndarray, d_b: np.ndarray, i_b: np.ndarray
) -> tuple[int, int]:
    """Rows whose neighbour lists differ, and of those the rows where a neighbour
    found by one answer only lies nearer than the row's ``k``-th distance (not a tie
    at the boundary: a real difference)."""
    rows_differ = np.flatnonzero((i_a != i_b).any(axis=1))
    real = 0
    for r in rows_differ:
        only_a = ~np.isin(i_a[r], i_b[r])
        only_b = ~np.isin(i_b[r], i_a[r])
        kth = d_a[r, -1]
        if (d_a[r][only_a] < kth).any() or (d_b[r][only_b] < kth).any():
            real += 1
    return len(rows_differ), real


def time_block(rows_n: int = 557, members: int = 470, dims: int = 79) -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(rows_n, dims)).astype(np.float32)
    m = rng.normal(size=(members, dims)).astype(np.float32)
    d = q @ m.T

    def median_ms(fn: object) -> float:
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e3

    product = median_ms(lambda: q @ m.T)
    partition = median_ms(lambda: np.argpartition(d, 14, axis=1))
    print(
        f"block {rows_n} x {members} x {dims} float32: product {product:.2f} ms, "
        f"row-wise argpartition {partition:.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="answers, .npz")
    ap.add_argument("--against", help="answers of another version, .npz")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--path",
        choices=("auto", "candidates", "whole"),
        default="auto",
        help="force how a block meets a cell (the search's own choice by default)",
    )
    ap.add_argument("--block", action="store_true", help="time one block's parts instead")
    a = ap.parse_args()
    if a.block:
        time_block()
        return
    if a.path != "auto":
        whole = a.path == "whole"
        neighbours._compare_whole = lambda k, dims, members: whole  # type: ignore[assignment]
    rng = np.random.default_rng(1)
    answers: dict[str, np.ndarray] = {}
    other = np.load(a.against) if a.against else None
    print(
        "| rows | columns | k | seconds (median) | same distances "
        "| rows listed otherwise (beyond ties) |"
    )
    print("|---|---|---|---|---|---|")
    for n, d, k, spread in SETS:
        x = rows(n, d, spread, rng)
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            dist, idx = nearest_neighbours(x, k)
            times.append(time.perf_counter() - t0)
        key = f"{n}_{d}_{k}"
        answers[key + "_d"], answers[key + "_i"] = dist, idx
        same, differ = "-", "-"
        if other is not None:
            same = str(bool(np.array_equal(other[key + "_d"], dist)))
            listed, real = beyond_ties(other[key + "_d"], other[key + "_i"], dist, idx)
            differ = f"{listed} ({real})"
        print(f"| {n} | {d} | {k} | {np.median(times):.2f} | {same} | {differ} |", flush=True)
    np.savez(a.out, **answers)


if __name__ == "__main__":
    main()
