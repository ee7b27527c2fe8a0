"""k-means for many small problems at once: every restart of every problem in one array.

The per-class detectors split each class by k-means many times over (activation
clustering: the class, five Gaussian null samples, the flagged cluster's shedding;
dual-space: three clusters a class). A library k-means call costs about 3-4 ms of
validation and set-up whatever the size, which on a 43-class set of about 300 items a
class was most of activation clustering's time (``benchmarks/probes/ac_cost.py``).
Here the restarts of all problems of one shape given together run as one batch of Lloyd
iterations (products over a ``(problems, restarts, clusters, rows)`` array), so the
fixed cost is paid once per batch, not once per restart.

Each restart starts from k-means++ seeding (Arthur and Vassilvitskii, 2007) and
iterates until no assignment changes (an exact fixed point of Lloyd's algorithm, not a
tolerance on the centres' moves) or ``max_iter``; a cluster left empty restarts at the
problem's item farthest from its nearest centre. The restart with the least inertia is
kept, the first one among equals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

#: Most Lloyd iterations of a restart (scikit-learn's default too).
MAX_ITER = 300


@dataclass(frozen=True)
class Clustering:
    """One problem's best restart: ``labels`` ``(n,)`` in ``0..k-1``, ``centres``
    ``(k, d)`` and ``inertia`` (the sum of squared distances to the own centre)."""

    labels: npt.NDArray[np.intp]
    centres: npt.NDArray[np.float64]
    inertia: float


def k_means_many(
    problems: Sequence[npt.NDArray[np.float64]],
    k: int,
    *,
    n_init: int | Sequence[int],
    seeds: Sequence[int],
    max_iter: int = MAX_ITER,
) -> list[Clustering]:
    """k-means with ``k`` clusters of each ``(n_i, d_i)`` array in ``problems``,
    ``n_init`` restarts each (one count, or one per problem), seeded by
    ``seeds`` (one per problem: a problem's answer depends on its own seed and data
    alone, not on the batch it ran in).

    Raises
    ------
    InputError
        ``k`` below 1, a problem that is not 2-D, has fewer than ``k`` rows or
        non-finite values, or counts that do not match the problems.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}", "k-means")
    inits = [n_init] * len(problems) if isinstance(n_init, int) else list(n_init)
    if len(inits) != len(problems) or len(seeds) != len(problems):
        raise InputError("one n_init and one seed per problem are needed", "k-means")
    if not problems:
        return []
    if any(p.ndim != 2 for p in problems):
        raise InputError("every problem must be a 2-D array", "k-means")
    if any(len(p) < k for p in problems) or min(inits) < 1:
        raise InputError(f"each problem needs at least {k} rows and 1 restart", "k-means")
    if not all(np.isfinite(p).all() for p in problems):
        raise InputError("the problems hold NaN or infinite values", "k-means")
    out: dict[int, Clustering] = {}
    # One batch per shape: padding a 1,000-row null sample to a 6,000-item class would
    # multiply its work by six.
    for shape in sorted({p.shape for p in problems}):
        group = [i for i, p in enumerate(problems) if p.shape == shape]
        fits = _k_means_batch(
            [problems[i] for i in group],
            k,
            [inits[i] for i in group],
            [seeds[i] for i in group],
            max_iter,
        )
        out.update(zip(group, fits, strict=True))
    return [out[i] for i in range(len(problems))]


def _k_means_batch(
    problems: Sequence[npt.NDArray[np.float64]],
    k: int,
    inits: Sequence[int],
    seeds: Sequence[int],
    max_iter: int,
) -> list[Clustering]:
    """:func:`k_means_many` of problems of one shape, in one batch."""
    m, d = problems[0].shape
    runs = max(inits)
    # The rows with a last column of 1s, so that one product gives a cluster's sum and
    # its count.
    data = np.ones((len(problems), m, d + 1))
    for i, p in enumerate(problems):
        data[i, :, :d] = p
    # Every problem runs as many restarts as the most asked for (one array): its own
    # n_init seeded by its own seed, the rest copies of its first, not counted.
    starts = np.empty((len(problems), runs, k, d))
    for i, p in enumerate(problems):
        starts[i, : inits[i]] = _seed_centres(p, k, inits[i], seeds[i])
        starts[i, inits[i] :] = starts[i, 0]
    labels, centres, inertia = _lloyd(data, starts, max_iter)
    out: list[Clustering] = []
    for i, r in enumerate(inits):
        best = int(np.argmin(inertia[i, :r]))
        out.append(
            Clustering(labels[i, best].copy(), centres[i, best].copy(), float(inertia[i, best]))
        )
    return out


def _seed_centres(
    x: npt.NDArray[np.float64], k: int, runs: int, seed: int
) -> npt.NDArray[np.float64]:
    """k-means++ starts ``(runs, k, d)`` among the rows of ``x``: the first centre
    uniformly, each next one with probability proportional to the squared distance to
    the nearest centre chosen so far."""
    rng = np.random.default_rng(seed)
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty((runs, k, x.shape[1]))
    pick = rng.integers(len(x), size=runs)
    out[:, 0] = x[pick]
    nearest = np.maximum(sq[None, :] - 2.0 * out[:, 0] @ x.T + sq[pick, None], 0.0)
    for j in range(1, k):
        total = nearest.sum(axis=1)
        cum = np.cumsum(nearest, axis=1)
        u = rng.random(runs) * total
        # All items on their centres (total 0): any item will do.
        pick = np.where(total > 0.0, np.minimum((cum < u[:, None]).sum(axis=1), len(x) - 1), pick)
        out[:, j] = x[pick]
        d2 = np.maximum(sq[None, :] - 2.0 * out[:, j] @ x.T + sq[pick, None], 0.0)
        np.minimum(nearest, d2, out=nearest)
    return out


def _lloyd(
    data: npt.NDArray[np.float64], centres: npt.NDArray[np.float64], max_iter: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Lloyd's iterations of every restart at once, until no assignment changes.

    ``data`` ``(P, m, d + 1)``: each problem's rows with a column of 1s last;
    ``centres`` ``(P, R, k, d)``: the restarts' starts. Returns the labels
    ``(P, R, m)``, centres ``(P, R, k, d)`` and inertias ``(P, R)``.

    Arrays keep the items last, so that each cluster's distances are one contiguous
    slice: NumPy's reductions and comparisons over a short last axis (``k``) cost
    several times more than ``k`` passes over slices.
    """
    p, m, d1 = data.shape
    _, runs, k, d = centres.shape
    xt = np.ascontiguousarray(data[:, :, :d].transpose(0, 2, 1))  # (P, d, m)
    sq = np.einsum("pdm,pdm->pm", xt, xt)[:, None, :]
    labels = np.full((p, runs, m), -1, dtype=np.intp)
    onehot = np.empty((p, runs, k, m))
    nearest = np.empty((p, runs, m))
    for _ in range(max_iter):
        flat = centres.reshape(p, runs * k, d)
        d2 = flat @ xt
        d2 *= -2.0
        d2 += np.einsum("pcd,pcd->pc", flat, flat)[:, :, None]
        d2 = d2.reshape(p, runs, k, m)
        new = np.zeros((p, runs, m), dtype=np.intp)
        np.copyto(nearest, d2[:, :, 0])
        for j in range(1, k):
            closer = d2[:, :, j] < nearest
            new[closer] = j
            np.minimum(nearest, d2[:, :, j], out=nearest)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            np.equal(labels, j, out=onehot[:, :, j])
        sums = (onehot.reshape(p, runs * k, m) @ data).reshape(p, runs, k, d1)
        counts = sums[..., d]
        fresh = sums[..., :d] / np.maximum(counts, 1.0)[..., None]
        for i, r, j in zip(*np.nonzero(counts == 0.0), strict=True):
            # An empty cluster: restart it at the item farthest from its nearest centre.
            fresh[i, r, j] = data[i, int(np.argmax(nearest[i, r] + sq[i, 0])), :d]
        centres = fresh
    inertia = np.maximum(nearest + sq, 0.0).sum(axis=2)
    return labels, centres, inertia
