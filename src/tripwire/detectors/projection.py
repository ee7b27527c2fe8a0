"""Principal directions of feature rows, shared by the detectors and the neighbour search.

The per-class poisoning detectors project each class on its top principal directions
(spectral signatures, activation clustering, SPECTRE, the feature-outlier score), and
the all-items neighbour search screens and searches in principal coordinates. All of
them take the directions from the ``F x F`` (or ``n x n``) Gram matrix, which is
deterministic and costs a fraction of an SVD of every row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError


def _spectrum(
    xc: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Eigenvalues of ``xc``'s scatter, largest first, and the right singular vectors
    as rows in the same order, from the smaller Gram matrix (``F x F`` or ``n x n``),
    each signed so that its largest coordinate is positive (repeated fits agree)."""
    n, f = xc.shape
    if f <= n:
        vals, vecs = np.linalg.eigh(xc.T @ xc)
        v = vecs[:, ::-1].T
    else:
        vals, vecs = np.linalg.eigh(xc @ xc.T)
        s = np.sqrt(np.maximum(vals[::-1], 0.0))
        v = (vecs[:, ::-1] / np.where(s > 0.0, s, 1.0)).T @ xc
    signs = np.sign(v[np.arange(v.shape[0]), np.argmax(np.abs(v), axis=1)])
    return vals[::-1], np.asarray(v * np.where(signs == 0.0, 1.0, signs)[:, None])


def top_directions(xc: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    """The top ``k`` right singular vectors ``(k, F)`` of the centred matrix ``xc``.

    Computed from the smaller Gram matrix (``F x F`` or ``n x n``), so memory is
    ``min(n, F)**2`` and the result is deterministic (no random start).
    """
    n, f = xc.shape
    k = max(1, min(k, n, f))
    return np.asarray(_spectrum(xc)[1][:k], dtype=np.float64)


def principal_subspace(xc: npt.NDArray[np.float64], variance: float) -> npt.NDArray[np.float64]:
    """The fewest top principal directions ``(k, F)`` of the centred rows ``xc`` that
    hold at least the share ``variance`` of their total variance (all ``F`` at 1.0).

    Squared distances between rows projected on them lose at most the remaining share
    of the rows' spread, on average over pairs.

    Raises
    ------
    InputError
        ``variance`` outside ``(0, 1]``.
    """
    if not 0.0 < variance <= 1.0:
        raise InputError(f"variance must lie in (0, 1], got {variance}", "projection")
    f = xc.shape[1]
    if variance >= 1.0:
        return np.eye(f)
    vals, v = _spectrum(xc)
    total = float(np.maximum(vals, 0.0).sum())
    if total <= 0.0:
        return np.eye(f)[:1]
    k = int(np.searchsorted(np.cumsum(vals) / total, variance)) + 1
    return np.asarray(v[: min(k, len(v))], dtype=np.float64)
