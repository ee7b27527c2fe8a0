"""SPECTRE-style detection: robust whitening of each class, then quantum entropy scores.

Spectral signatures look for the poisons along the top direction of a class's raw
representations, where the clean class's own largest variance often hides them. SPECTRE
first whitens the class with a *robust* estimate of the clean covariance: the clean
items then have identity covariance, and the only direction with excess variance is
the one the poisons add. Quantum entropy scoring (QUE) weighs every direction by
``exp(alpha * excess variance)``, so it follows that direction when there is one and
spreads over several when there are many (several triggers).

The robust estimate is the hard part: a compact poison cluster has a smaller
determinant than the clean majority, so Minimum Covariance Determinant and other
Mahalanobis-trimming estimators absorb it, and per-coordinate estimators (median/MAD,
OGK) cannot see a shift spread over many coordinates. (SPECTRE's own filter, after
Diakonikolas et al., tests fourth moments and is told the poison count; fourth moments
need far more items per class than a few hundred.) Here the estimate comes from a
filter that uses what poisons add and a clean Gaussian class lacks, **skewness**: a
cluster of poisons on one side of the class makes it asymmetric along the poison
direction. Each round whitens the kept items with their own covariance, climbs to
directions of locally largest third moment from a few starts, and on each drops the
items beyond ``z_cut`` robust z-scores on the heavy side; the direction that cuts off
the largest group wins. A round only counts when that group is larger than what the
same search cuts from Gaussian data of the same size (simulated), so a clean class
keeps all its items. The kept items' mean and covariance whiten the whole class, then
QUE scores it.

Scores are made comparable across classes by mapping each class's QUE values through
their null distribution (a weighted sum of chi-squares for Gaussian clean data,
matched in two moments) to a normal z-score: clean items score about N(0, 1) in every
class. SPECTRE's removal of ``1.5 * epsilon`` items becomes the base class's threshold
on those z-scores, so no contamination rate is assumed anywhere.

Known limits: with the poisons about half of a class there is no clean majority and no
asymmetry to find; the filter then trims the tail of the wider group (the clean
items), and clean items are flagged instead of poisons. With very few poisons (about
1% of a class) the filter finds them only when they are far out. When nothing is
filtered the QUE step has no excess direction and the score is a Mahalanobis
distance, which ranks a compact poison cluster *low*.

References: Hayase, Kong, Somani and Oh, "SPECTRE: Defending Against Backdoor Attacks
Using Robust Statistics", ICML 2021; Dong, Hopkins and Li, "Quantum Entropy Scoring for
Fast Robust Mean Estimation and Improved Outlier Detection", NeurIPS 2019.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri_exp
from scipy.stats import chi2
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from tripwire.detectors.base import BaseDetector, DetectorInput, Need, Threat
from tripwire.detectors.parallel import worker_count
from tripwire.detectors.poisoning.spectral import (
    MIN_CLASS_SIZE,
    check_known_classes,
    check_width,
    class_indices,
    features_and_labels,
    integer_labels,
    split_by_size,
)
from tripwire.detectors.projection import top_directions
from tripwire.detectors.registry import register
from tripwire.errors import InputError

#: Items per principal dimension a class needs (caps the dimension of small classes).
ITEMS_PER_DIM = 10

#: Items of a class the skewness filter reads, at most (a random sample of larger
#: classes). The filter only estimates the clean mean and covariance of 32 projected
#: dimensions, which a few thousand items fix as well as all of them, and its ascents
#: and null simulations cost in proportion to the items (full MNIST's classes of
#: 6,000: 1.6 s -> 0.66 s for the detector); every item is still scored.
MAX_FILTER_ITEMS = 2000

#: Steps of each skewness ascent (most starts settle well before).
ASCENT_STEPS = 40

#: Rows (items, zeros below shorter samples included) of one stack of skewness ascents:
#: bounds its memory to a few times this many x 32 floats (2 MB a million floats).
BATCH_ROWS = 64_000

#: Lowest z-score reported; QUE values near zero would otherwise map to -inf.
_Z_FLOOR = -10.0


def whitening(
    z: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean ``(k,)`` and whitening matrix ``W`` ``(k, k)`` of ``z``: ``(z - mean) @ W``
    has identity covariance. Near-zero variances are floored, not inverted."""
    mean = z.mean(axis=0)
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    vals, vecs = np.linalg.eigh(cov)
    floor = max(float(vals.max()), 1e-300) * 1e-9
    return mean, vecs / np.sqrt(np.maximum(vals, floor))


def whitened(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``z`` whitened by its own :func:`whitening`."""
    mean, w = whitening(z)
    return np.asarray((z - mean) @ w, dtype=np.float64)


def _third_moment(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``mean(p ** 3, axis=0)`` by products: ``** 3`` calls ``pow`` per element, 20x
    slower, and the ascent evaluates it thousands of times per class."""
    return np.asarray(np.einsum("ij,ij,ij->j", p, p, p) / len(p), dtype=np.float64)


def skew_directions(
    y: npt.NDArray[np.float64], *, max_iter: int | None = None, n_axes: int = 3
) -> npt.NDArray[np.float64]:
    """Unit directions ``(k, s)`` of locally largest third moment of whitened ``y``,
    each oriented so that its third moment is positive (towards the heavy side).

    The ascents start from ``mean(y * |y|**2)`` and ``mean(y) - median(y)`` (both point
    along a skewed direction when there is one) and from the last ``n_axes``
    coordinate axes (the top principal directions when ``y`` comes from
    :func:`whitening`, where a large poison share puts its direction). Each climbs
    ``f(v) = mean((y @ v) ** 3)`` on the unit sphere (:func:`_ascend_skewness_batch`)
    for at most ``max_iter`` steps (default :data:`ASCENT_STEPS`).
    """
    starts = _starts(y, n_axes)
    steps = ASCENT_STEPS if max_iter is None else max_iter
    ends = _ascend_skewness_batch(y[None], np.array([len(y)]), starts[None], max_iter=steps)
    return np.asarray(ends[0], dtype=np.float64)


def _ascend_skewness_batch(
    y: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    starts: npt.NDArray[np.float64],
    *,
    max_iter: int,
) -> npt.NDArray[np.float64]:
    """Climb ``f(v) = mean((y @ v) ** 3)`` on the unit sphere from each start, for
    several samples at once: ``y`` ``(C, N, k)``, sample ``c`` in its first
    ``counts[c]`` rows and zeros below (which add nothing to the moments, taken over
    ``counts[c]``), ``starts`` ``(C, k, s)`` unit columns; returns the ``(C, k, s)``
    end points, each as its sample's ascent alone reaches it.

    Projected gradient ascent with one adaptive step per start, a step being taken only
    when ``f`` grows: the plain tensor power iteration is not monotone for odd orders
    and can wander off the maximum it started at. One product per step for every
    sample: one sample's dozen small NumPy calls per step held the GIL for most of its
    time, so per-class threads gained nothing; stacked, each call does every class's
    work (the filter on full MNIST: 0.7 -> 0.4 s, the same cuts).
    """
    n = counts.astype(np.float64)
    yt = np.swapaxes(y, 1, 2)
    v = starts.copy()
    p = y @ v
    p2 = p * p
    f = np.einsum("cij,cij->cj", p2, p) / n[:, None]
    grad = yt @ p2 / n[:, None, None]
    step = np.ones(f.shape)
    for _ in range(max_iter):
        live = step >= 1e-3  # starts still climbing
        if not live.any():
            break
        g = grad - np.sum(grad * v, axis=1, keepdims=True) * v
        cand = v + step[:, None, :] * g
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        pc = y @ cand
        pc2 = pc * pc
        fc = np.einsum("cij,cij->cj", pc2, pc) / n[:, None]
        better = live & (fc > f + 1e-9 * np.abs(f))
        if better.any():
            v = np.where(better[:, None, :], cand, v)
            f = np.where(better, fc, f)
            grad = np.where(better[:, None, :], yt @ pc2 / n[:, None, None], grad)
        step = np.where(live, np.where(better, step * 1.5, step * 0.5), step)
    return np.asarray(v, dtype=np.float64)


def _starts(y: npt.NDArray[np.float64], n_axes: int) -> npt.NDArray[np.float64]:
    """The unit start directions ``(k, s)`` of :func:`skew_directions`, oriented
    towards their heavy side."""
    k = y.shape[1]
    cols = [
        (y * np.einsum("ij,ij->i", y, y)[:, None]).mean(axis=0),
        y.mean(axis=0) - np.median(y, axis=0),
        *np.eye(k)[::-1][: min(n_axes, k)],
    ]
    starts = np.stack([c for c in cols if float(np.linalg.norm(c)) > 0.0], axis=1)
    starts /= np.linalg.norm(starts, axis=0)
    starts *= np.where(_third_moment(y @ starts) < 0.0, -1.0, 1.0)
    return np.asarray(starts, dtype=np.float64)


def _largest_cut(
    y: npt.NDArray[np.float64], directions: npt.NDArray[np.float64], z_cut: float
) -> npt.NDArray[np.bool_]:
    """The largest group of items of ``y`` beyond ``z_cut`` robust z-scores along one of
    the ``directions`` (columns), the first such direction on ties."""
    best = np.zeros(len(y), dtype=bool)
    for v in directions.T:
        p = y @ v
        med = float(np.median(p))
        mad = float(np.median(np.abs(p - med))) * 1.4826
        if mad <= 0.0:
            continue
        cut = np.asarray((p - med) / mad > z_cut, dtype=bool)
        if int(cut.sum()) > int(best.sum()):
            best = cut
    return best


def cuts_along_skew(
    samples: list[npt.NDArray[np.float64]],
    z_cut: float,
    *,
    max_iter: int | None = None,
    n_axes: int = 3,
) -> list[npt.NDArray[np.bool_]]:
    """For each whitened sample, the largest group of items beyond ``z_cut`` robust
    z-scores on the heavy side of a most-skewed direction (:func:`skew_directions`).
    Candidates are chosen by the size of the group they cut off, not by skewness: a
    large poison share skews its direction less than sampling noise skews others.

    The ascents of samples of equal width run together (:func:`_ascend_skewness_batch`,
    in stacks of at most :data:`BATCH_ROWS` rows, which bounds memory; ``max_iter``
    steps, default :data:`ASCENT_STEPS`). Each sample's cut is the one it gets alone."""
    steps = ASCENT_STEPS if max_iter is None else max_iter
    out: list[npt.NDArray[np.bool_]] = [np.zeros(0, dtype=bool)] * len(samples)
    by_width: dict[int, list[int]] = {}
    # Longest first, so that a stack pads its shorter samples little.
    for i in sorted(range(len(samples)), key=lambda i: -len(samples[i])):
        by_width.setdefault(samples[i].shape[1], []).append(i)
    for width, members in by_width.items():
        for part in _stacks(members, [len(samples[i]) for i in members]):
            starts = [_starts(samples[i], n_axes) for i in part]
            rows = max(len(samples[i]) for i in part)
            cols = max(st.shape[1] for st in starts)
            stack = np.zeros((len(part), rows, width))
            begin = np.empty((len(part), width, cols))
            for j, (i, st) in enumerate(zip(part, starts, strict=True)):
                stack[j, : len(samples[i])] = samples[i]
                # Spare columns repeat the first start: a copy's end point is the
                # first's, and the first of equal cuts wins.
                begin[j] = st[:, np.minimum(np.arange(cols), st.shape[1] - 1)]
            counts = np.array([len(samples[i]) for i in part], dtype=np.int64)
            ends = _ascend_skewness_batch(stack, counts, begin, max_iter=steps)
            for j, i in enumerate(part):
                out[i] = _largest_cut(samples[i], ends[j][:, : starts[j].shape[1]], z_cut)
    return out


def _stacks(members: list[int], rows: list[int]) -> list[list[int]]:
    """``members`` (longest first, ``rows`` each) cut into runs whose stack, each one
    padded to its first member's rows, holds at most :data:`BATCH_ROWS` rows (at least
    one member a run)."""
    runs: list[list[int]] = []
    tallest = 0
    for member, n in zip(members, rows, strict=True):
        if runs and (len(runs[-1]) + 1) * tallest <= BATCH_ROWS:
            runs[-1].append(member)
        else:
            runs.append([member])
            tallest = n
    return runs


def null_cut_count(n: int, k: int, *, z_cut: float, draws: int, rng: np.random.Generator) -> float:
    """How many items one filter round drops from clean data: mean + 3 sd of the count
    over ``draws`` Gaussian samples of ``n`` items in ``k`` dimensions.

    The search for the most skewed direction always finds one in a finite sample, and
    that direction runs through the sample's own extremes; this is the count to beat.
    """
    samples = [whitened(rng.standard_normal((n, k))) for _ in range(draws)]
    return _count_to_beat([int(cut.sum()) for cut in cuts_along_skew(samples, z_cut)])


def _count_to_beat(counts: list[int]) -> float:
    arr = np.asarray(counts, dtype=np.float64)
    return float(arr.mean() + 3.0 * max(float(arr.std()), 1.0))


def null_cut_counts(
    shapes: list[tuple[int, int]],
    *,
    z_cut: float,
    draws: int,
    rng: np.random.Generator,
    pool: ThreadPoolExecutor,
    workers: int,
) -> dict[tuple[int, int], float]:
    """:func:`null_cut_count` of each ``(n, k)`` in ``shapes``, the ascents run as
    stacks (:func:`cuts_along_skew`) split over ``workers`` threads of ``pool``.

    The samples are drawn here, in order, exactly as one :func:`null_cut_count` call
    per shape would draw them, so the counts do not depend on the number of workers;
    about :data:`BATCH_ROWS` rows of samples per worker are held at once.
    """
    counts: dict[tuple[int, int], list[int]] = {shape: [] for shape in shapes}
    held: list[tuple[tuple[int, int], npt.NDArray[np.float64]]] = []

    def flush() -> None:
        cuts = _cuts_in_threads([w for _, w in held], z_cut, pool, workers)
        for (shape, _), cut in zip(held, cuts, strict=True):
            counts[shape].append(int(cut.sum()))
        held.clear()

    for shape in shapes:
        for _ in range(draws):
            held.append((shape, whitened(rng.standard_normal(shape))))
            if sum(len(w) for _, w in held) >= BATCH_ROWS * max(1, workers):
                flush()
    flush()
    return {shape: _count_to_beat(c) for shape, c in counts.items()}


def _cuts_in_threads(
    samples: list[npt.NDArray[np.float64]],
    z_cut: float,
    pool: ThreadPoolExecutor,
    workers: int,
) -> list[npt.NDArray[np.bool_]]:
    """:func:`cuts_along_skew` of ``samples``, dealt out to ``workers`` threads."""
    parts = _deal(len(samples), workers)
    done = pool.map(lambda part: cuts_along_skew([samples[i] for i in part], z_cut), parts)
    out: list[npt.NDArray[np.bool_]] = [np.zeros(0, dtype=bool)] * len(samples)
    for part, cuts in zip(parts, done, strict=True):
        for i, cut in zip(part, cuts, strict=True):
            out[i] = cut
    return out


def _deal(n: int, workers: int) -> list[list[int]]:
    """Positions ``0..n-1`` dealt round-robin into at most ``workers`` non-empty hands."""
    return [h for h in (list(range(w, n, max(1, workers))) for w in range(workers)) if h]


def skew_filter(
    z: npt.NDArray[np.float64],
    *,
    z_cut: float = 3.5,
    max_rounds: int = 10,
    null_draws: int = 5,
    rng: np.random.Generator,
    null_cache: dict[tuple[int, int], float] | None = None,
) -> tuple[npt.NDArray[np.bool_], int]:
    """The items kept by the skewness filter (see the module docstring), and how many
    rounds dropped items. Never drops half of the items or more.

    ``null_cache`` keeps the simulated null count by ``(n, k)``, so that classes of
    equal size (balanced datasets) share one simulation.
    """
    n, k = z.shape
    if n <= 2 * k + 2:
        return np.ones(n, dtype=bool), 0
    cache = {} if null_cache is None else null_cache
    if (n, k) not in cache:
        cache[n, k] = null_cut_count(n, k, z_cut=z_cut, draws=null_draws, rng=rng)
    return skew_filters([z], [cache[n, k]], z_cut=z_cut, max_rounds=max_rounds)[0]


def skew_filters(
    samples: list[npt.NDArray[np.float64]],
    beats: list[float],
    *,
    z_cut: float = 3.5,
    max_rounds: int = 10,
) -> list[tuple[npt.NDArray[np.bool_], int]]:
    """:func:`skew_filter` of several classes' items, each with the null count it must
    beat, their rounds run side by side so that each round's ascents run as one stack
    (:func:`cuts_along_skew`); each class stops as it would alone."""
    keeps = [np.ones(len(z), dtype=bool) for z in samples]
    rounds = [0] * len(samples)
    active = [i for i, z in enumerate(samples) if len(z) > 2 * z.shape[1] + 2]
    for _ in range(max_rounds):
        if not active:
            break
        kept = {i: np.flatnonzero(keeps[i]) for i in active}
        white = [whitened(samples[i][kept[i]]) for i in active]
        still = []
        for i, cut in zip(active, cuts_along_skew(white, z_cut), strict=True):
            n, k = samples[i].shape
            n_cut = int(cut.sum())
            if n_cut <= beats[i] or kept[i].size - n_cut < max(n / 2, 2 * k + 2):
                continue
            keeps[i][kept[i][cut]] = False
            rounds[i] += 1
            still.append(i)
        active = still
    return list(zip(keeps, rounds, strict=True))


def que_weights(
    w: npt.NDArray[np.float64], alpha: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Eigenvectors ``U``, weights ``e`` (sum 1) of ``Q = U diag(e) U^T``, and the top
    eigenvalue of ``Sigma_w = w^T w / n``.

    ``Q = exp(alpha * (Sigma_w - I) / (||Sigma_w||_2 - 1)) / trace``. Without excess
    variance (``||Sigma_w||_2 <= 1``) there is no direction to follow and ``Q = I / k``.
    """
    sigma = (w.T @ w) / max(len(w), 1)
    vals, vecs = np.linalg.eigh(sigma)
    top = float(vals[-1])
    if top - 1.0 <= 1e-9:
        weights = np.full(len(vals), 1.0 / len(vals))
    else:
        expo = alpha * (vals - 1.0) / (top - 1.0)
        weights = np.exp(expo - expo.max())  # trace normalisation makes the shift free
        weights /= weights.sum()
    return vecs, weights, top


def que_values(
    w: npt.NDArray[np.float64], vecs: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``tau_i = w_i^T Q w_i`` for each row of ``w``."""
    proj = w @ vecs
    return np.asarray((proj * proj) @ weights, dtype=np.float64)


def que_null(weights: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Scale ``c`` and degrees of freedom ``nu`` with ``tau ~ c * chi2(nu)`` for
    whitened Gaussian items (Welch-Satterthwaite match of mean and variance)."""
    s2 = float(np.sum(weights**2))
    return s2, 1.0 / s2


def null_z(tau: npt.NDArray[np.float64], c: float, nu: float) -> npt.NDArray[np.float64]:
    """Normal z-scores of the upper-tail probabilities of ``tau`` under ``c * chi2(nu)``,
    computed in log space so that extreme values stay finite."""
    # logsf underflows to -inf for items far out in the tail; the floor keeps them finite
    # (and still ranked above every other item).
    log_sf = np.clip(chi2.logsf(tau / c, nu), -1e300, -1e-300)
    z = -ndtri_exp(log_sf)
    return np.asarray(np.clip(z, _Z_FLOOR, None), dtype=np.float64)


def fit_class_whitening(
    z: npt.NDArray[np.float64],
    *,
    alpha: float,
    z_cut: float,
    null_draws: int,
    rng: np.random.Generator,
    null_cache: dict[tuple[int, int], float] | None = None,
    sample: npt.NDArray[np.int64] | None = None,
    filtered: tuple[npt.NDArray[np.bool_], int] | None = None,
) -> dict[str, Any]:
    """Robust whitening and QUE weights of one class's projected items ``z``.

    With ``sample`` (row positions), the filter reads those rows only; the whitening
    comes from the ones it keeps, and every row is scored. ``filtered``: the filter's
    result on those rows (kept mask, rounds) where the caller ran it already.
    """
    zs = z if sample is None else z[sample]
    keep, rounds = (
        filtered
        if filtered is not None
        else skew_filter(zs, z_cut=z_cut, null_draws=null_draws, rng=rng, null_cache=null_cache)
    )
    loc, w_mat = whitening(zs[keep])
    w = (z - loc) @ w_mat
    vecs, weights, top = que_weights(w, alpha)
    scale, dof = que_null(weights)
    tau = que_values(w, vecs, weights)
    # Rescale so that the class median sits at the null median: the kept items'
    # covariance is slightly narrow after trimming, and real classes are not Gaussian.
    med = float(np.median(tau))
    return {
        "location": loc,
        "whitener": w_mat,
        "que_vecs": vecs,
        "que_weights": weights,
        "ratio": float(chi2.median(dof) * scale / med) if med > 0.0 else 1.0,
        "null_scale": scale,
        "null_dof": dof,
        "dim": int(z.shape[1]),
        "filtered": int((~keep).sum()),
        "filter_items": len(zs),
        "filter_rounds": rounds,
        "top_excess_variance": top,
    }


def fit_spectre(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    n_components: int = 32,
    alpha: float = 4.0,
    z_cut: float = 3.5,
    null_draws: int = 5,
    min_class_size: int = MIN_CLASS_SIZE,
    max_filter_items: int | None = MAX_FILTER_ITEMS,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    detector: str = "spectre",
) -> dict[str, Any]:
    """Fit per-class projection, robust whitening and QUE weights.

    Each class is projected on its top ``min(n_components, n_c // ITEMS_PER_DIM, F)``
    principal directions (at least 1): ten items per dimension keep the third-moment
    search and the covariance estimable in small classes. In classes of more than
    ``max_filter_items`` items (``None``: no limit) the filter reads a random sample of
    that many.

    Classes are fitted ``n_jobs`` at a time (default: one per available core); the
    result does not depend on it.

    Returns ``classes`` (class -> fitted arrays and evidence) and ``skipped`` (classes
    smaller than ``min_class_size``, not scored).
    """
    rng = np.random.default_rng(random_state)
    # The samples come from a stream of their own, so that the null simulations draw
    # the same numbers whether or not any class is sampled.
    sample_rng = rng.spawn(1)[0]
    groups = class_indices(labels)
    big, small = split_by_size(groups, min_class_size, detector)
    projected: dict[int, tuple[Any, Any, npt.NDArray[np.float64]]] = {}
    samples: dict[int, npt.NDArray[np.int64] | None] = {}
    for c in big:
        xc = features[groups[c]]
        mean = xc.mean(axis=0)
        centred = xc - mean
        k = max(1, min(n_components, xc.shape[0] // ITEMS_PER_DIM, xc.shape[1]))
        comps = top_directions(centred, k)
        projected[c] = (mean, comps, centred @ comps.T)
        n_c = len(groups[c])
        samples[c] = (
            np.sort(sample_rng.choice(n_c, size=max_filter_items, replace=False))
            if max_filter_items is not None and n_c > max_filter_items
            else None
        )
    # The null of each size that the filter will test (as skew_filter would ask for
    # them, class by class), then the classes: independent, so one per worker.
    filter_shapes = (
        (len(z) if (pick := samples[c]) is None else len(pick), z.shape[1])
        for c, (*_, z) in projected.items()
    )
    shapes = list(dict.fromkeys(s for s in filter_shapes if s[0] > 2 * s[1] + 2))
    workers = worker_count(n_jobs, len(big))
    # Stacks of small products: BLAS threads only add overhead; the workers use the
    # cores instead (NumPy releases the GIL inside each product).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        cache = null_cut_counts(
            shapes, z_cut=z_cut, draws=null_draws, rng=rng, pool=pool, workers=workers
        )
        read = [
            projected[c][2] if (pick := samples[c]) is None else projected[c][2][pick] for c in big
        ]
        # Classes too small for the filter keep everything (no null was simulated).
        beats = [cache.get(zs.shape, np.inf) for zs in read]
        hands = _deal(len(big), workers)
        done = pool.map(
            lambda hand: skew_filters(
                [read[i] for i in hand], [beats[i] for i in hand], z_cut=z_cut
            ),
            hands,
        )
        filtered: list[tuple[npt.NDArray[np.bool_], int]] = [(np.zeros(0, bool), 0)] * len(big)
        for hand, results in zip(hands, done, strict=True):
            for i, result in zip(hand, results, strict=True):
                filtered[i] = result
        fits = [
            fit_class_whitening(
                projected[c][2],
                alpha=alpha,
                z_cut=z_cut,
                null_draws=null_draws,
                rng=rng,
                sample=samples[c],
                filtered=filtered[i],
            )
            for i, c in enumerate(big)
        ]
    classes = {
        c: {"mean": projected[c][0], "components": projected[c][1], "n": len(groups[c]), **f}
        for c, f in zip(big, fits, strict=True)
    }
    return {"classes": classes, "skipped": small, "width": int(features.shape[1])}


def spectre_scores(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    model: dict[str, Any],
    *,
    detector: str = "spectre",
) -> npt.NDArray[np.float64]:
    """Null z-scores of the QUE values of each item within its class (about N(0, 1) for
    clean items); ``_Z_FLOOR`` for items of skipped classes."""
    classes: dict[int, dict[str, Any]] = model["classes"]
    check_known_classes(labels, classes.keys() | set(model["skipped"]), detector)
    check_width(features, model["width"], detector)
    scores = np.full(labels.size, _Z_FLOOR, dtype=np.float64)
    for c, idx in class_indices(labels).items():
        m = classes.get(c)
        if m is None:
            continue
        z = (features[idx] - m["mean"]) @ m["components"].T
        w = (z - m["location"]) @ m["whitener"]
        tau = que_values(w, m["que_vecs"], m["que_weights"]) * m["ratio"]
        scores[idx] = null_z(tau, m["null_scale"], m["null_dof"])
    return scores


@register
class SpectreDetector(BaseDetector):
    """Robustly whiten each class, then score items by quantum entropy (SPECTRE).

    Needs ``features`` (penultimate-layer activations on the training data) and
    ``labels``. The score of an item is the normal z-score of its QUE value
    ``w^T Q w`` (``w`` the robustly whitened representation, ``Q`` the trace-normalised
    ``exp(alpha * (Sigma_w - I) / (||Sigma_w||_2 - 1))`` of its class) under the
    Gaussian null, so clean items score about N(0, 1) in every class.

    Classes with fewer than ``min_class_size`` items are not scored (score -10) and are
    listed in the evidence under ``skipped_classes``.

    Parameters
    ----------
    n_components
        Most principal dimensions kept per class (fewer in classes with fewer than
        ten items per dimension).
    alpha
        QUE's focus: 0 weighs all directions equally (Mahalanobis distance), large
        values follow only the top excess-variance direction (spectral signatures on
        whitened data). SPECTRE uses 4.
    z_cut
        Robust z-score beyond which the skewness filter drops an item.
    null_draws
        Gaussian samples simulated per class to calibrate the filter.
    min_class_size
        Smallest class that is scored.
    max_filter_items
        Most items of a class the filter reads (a random sample of larger classes;
        ``None``: all). Every item is scored.
    random_state
        Seed of the null simulations and of the samples.
    n_jobs
        Classes fitted at once (default: one per available core); the scores do not
        depend on it.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "spectre"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS})

    def __init__(
        self,
        *,
        n_components: int = 32,
        alpha: float = 4.0,
        z_cut: float = 3.5,
        null_draws: int = 5,
        min_class_size: int = MIN_CLASS_SIZE,
        max_filter_items: int | None = MAX_FILTER_ITEMS,
        random_state: int | None = 0,
        n_jobs: int | None = None,
        fpr: float = 0.01,
        z: float = 3.5,
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.n_components = n_components
        self.alpha = alpha
        self.z_cut = z_cut
        self.null_draws = null_draws
        self.min_class_size = min_class_size
        self.max_filter_items = max_filter_items
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, inputs: DetectorInput) -> None:
        if self.n_components < 1:
            raise InputError("n_components must be at least 1", self.name)
        if self.alpha < 0.0:
            raise InputError(f"alpha must be non-negative, got {self.alpha}", self.name)
        if self.z_cut <= 0.0:
            raise InputError(f"z_cut must be positive, got {self.z_cut}", self.name)
        if self.null_draws < 2:
            raise InputError("null_draws must be at least 2", self.name)
        if self.min_class_size < 10:
            raise InputError("min_class_size must be at least 10", self.name)
        if self.n_jobs is not None and self.n_jobs < 1:
            raise InputError(f"n_jobs must be at least 1, got {self.n_jobs}", self.name)
        least = ITEMS_PER_DIM * self.n_components  # ten sampled items per dimension
        if self.max_filter_items is not None and self.max_filter_items < least:
            raise InputError(
                f"max_filter_items must be at least {least} ({ITEMS_PER_DIM} per "
                f"component), got {self.max_filter_items}",
                self.name,
            )
        x, y = features_and_labels(inputs, self.name)
        self.model_ = fit_spectre(
            x,
            y,
            n_components=self.n_components,
            alpha=self.alpha,
            z_cut=self.z_cut,
            null_draws=self.null_draws,
            min_class_size=self.min_class_size,
            max_filter_items=self.max_filter_items,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            detector=self.name,
        )

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        x, y = features_and_labels(inputs, self.name)
        return spectre_scores(x, y, self.model_, detector=self.name)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = integer_labels(inputs.labels if inputs.labels is not None else [], self.name)
        per_class: dict[int, dict[str, Any]] = {}
        for c, idx in class_indices(y).items():
            m = self.model_["classes"].get(c)
            if m is None:
                continue
            per_class[c] = {
                "items": int(idx.size),
                "flagged": int(flags[idx].sum()),
                "dim": m["dim"],
                "filtered_when_fitting": m["filtered"],
                "filter_items": m["filter_items"],
                "filter_rounds": m["filter_rounds"],
                "top_excess_variance": float(m["top_excess_variance"]),
            }
        return {"per_class": per_class, "skipped_classes": list(self.model_["skipped"])}
