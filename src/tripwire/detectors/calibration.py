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
