"""Thresholds from data, not guesses: FPR quantiles on clean scores, or robust z-scores."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

#: Scales the median absolute deviation to the standard deviation of a normal sample.
MAD_TO_SD = 1.4826


def threshold_at_fpr(clean_scores: npt.ArrayLike, fpr: float) -> float:
    """The threshold that flags at most a ``fpr`` share of clean items.

    Uses the conformal order statistic: with ``n`` clean scores, the
    ``ceil((n + 1) * (1 - fpr))``-th smallest. A fresh clean item then exceeds it with
    probability at most ``fpr`` (exchangeability), which the plain quantile does not
    guarantee for small ``n``. With too few scores for the requested rate, the largest
    clean score is used and the achievable rate is ``1 / (n + 1)``.

    Raises
    ------
    ValueError
        Empty or non-finite scores, or ``fpr`` outside (0, 1).
    """
    s = np.sort(np.asarray(clean_scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise ValueError("calibration needs at least one clean score")
    if not np.all(np.isfinite(s)):
        raise ValueError("calibration scores must be finite")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie in (0, 1), got {fpr}")
    k = math.ceil((s.size + 1) * (1.0 - fpr))
    return float(s[min(k, s.size) - 1])


def robust_threshold(scores: npt.ArrayLike, z: float = 3.5) -> float:
    """``median + z * 1.4826 * MAD`` of ``scores``: an outlier cut that the outliers
    themselves barely move (the breakdown point of the median is 50%)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("robust threshold needs at least one score")
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med))) * MAD_TO_SD
    if mad == 0.0:
        # Degenerate (most scores equal): flag only what exceeds the common value.
        return med
    return med + z * mad


def robust_z(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Robust z-scores ``(s - median) / (1.4826 * MAD)`` (0 where MAD is 0)."""
    s = np.asarray(scores, dtype=np.float64)
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med))) * MAD_TO_SD
    if mad == 0.0:
        return np.zeros(s.shape, dtype=np.float64)
    return np.asarray((s - med) / mad, dtype=np.float64)


def empirical_p_values(
    scores: npt.ArrayLike, clean_scores: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Conformal p-values: ``(1 + #{clean >= s}) / (n + 1)`` for each score ``s``."""
    c = np.sort(np.asarray(clean_scores, dtype=np.float64).ravel())
    s = np.asarray(scores, dtype=np.float64)
    greater_equal = c.size - np.searchsorted(c, s, side="left")
    return np.asarray((1.0 + greater_equal) / (c.size + 1.0), dtype=np.float64)


def planted_fdr_threshold(
    scores: npt.ArrayLike, planted: npt.ArrayLike, alpha: float = 0.1, share: float = 0.5
) -> tuple[float, float]:
    """A cut on ``scores`` whose flags hold an estimated ``alpha`` share of false alarms,
    from the scores of ``planted`` items known to be of the kind one looks for.

    The planted items show where the sought items score; the data's own scores are
    a mixture of them (share ``pi``) and of others. ``pi`` is estimated at the
    planted items' upper ``share``-quantile ``lam`` as ``P(s >= lam) / share``
    (Storey's estimator with the roles of null and alternative swapped). It assumes
    that few others score as high as the middle of the sought items: those it counts
    as sought, so with a heavy tail of others ``pi`` errs high and the flags hold more
    than ``alpha`` of them. Each cut ``t`` then holds an
    estimated ``pi * n * G(t)`` sought items among its ``K(t)`` flags (``G``: the
    planted items' tail); the cut is the lowest one (most flags) whose estimated
    false share ``1 - pi * n * G(t) / K(t)`` is at most ``alpha`` (the step-up rule
    of Benjamini and Hochberg).

    Returns
    -------
    (threshold, pi)
        Scores strictly above ``threshold`` are flagged (the highest score where no
        cut reaches ``alpha``: none); ``pi`` is the estimated share of sought items.

    Raises
    ------
    ValueError
        Empty or non-finite scores, or ``alpha`` or ``share`` outside (0, 1).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.sort(np.asarray(planted, dtype=np.float64).ravel())
    if s.size == 0 or c.size == 0:
        raise ValueError("a planted cut needs scores and planted scores")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(c))):
        raise ValueError("scores must be finite")
    if not (0.0 < alpha < 1.0 and 0.0 < share < 1.0):
        raise ValueError(f"alpha and share must lie in (0, 1), got {alpha}, {share}")
    lam = float(np.quantile(c, 1.0 - share))
    pi = min(1.0, float((s >= lam).mean()) / share)
    order = np.sort(s)[::-1]
    k = np.arange(1, s.size + 1)
    # Planted items scoring at least each cut (ties flagged together with the cut).
    tail = (c.size - np.searchsorted(c, order, side="left")) / c.size
    false_share = 1.0 - np.minimum(1.0, pi * s.size * tail / k)
    ok = np.flatnonzero(false_share <= alpha)
    if ok.size == 0:
        return float(order[0]), pi  # nothing flagged (a finite cut: reports are JSON)
    cut = order[ok[-1]]
    # Flags are strictly above the threshold: halfway to the next lower score, so that
    # ties at the cut are flagged with it.
    below = s[s < cut]
    if below.size == 0:
        return float(np.nextafter(cut, -np.inf)), pi  # every score flagged
    return float((cut + below.max()) / 2), pi
