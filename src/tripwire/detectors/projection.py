"""Principal directions of feature rows, shared by the detectors and the neighbour search.

The per-class poisoning detectors project each class on its top principal directions
(spectral signatures, activation clustering, SPECTRE, the feature-outlier score), and
the all-items neighbour search screens and searches in principal coordinates. All of
them take the directions from the ``F x F`` (or ``n x n``) Gram matrix, which is
deterministic and costs a fraction of an SVD of every row.

:func:`top_directions` remembers the leading eigenpairs of recent Gram matrices (up to
:data:`CACHE_BYTES`), keyed by the Gram matrix's content: a scan runs spectral
signatures, activation clustering, SPECTRE and dual-space on the same classes, each
centring a class the same way, so one decomposition a class serves all four (on the
43-class GTSRB subset, 43 instead of 172). The key is the Gram matrix, not the rows:
the directions depend on the rows only through it (``F <= n``; otherwise they are
recomputed from the rows, cheaply), and hashing ``F**2`` numbers costs a fraction of
the decomposition, while hashing a tall class's rows can cost more than the product
(6,000 x 128: 9 ms against 5 ms).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError

#: Leading eigenvectors remembered per Gram matrix, however few a caller asks for.
CACHED_DIMS = 32
#: Bytes of remembered eigenpairs, the least recently used dropped first.
CACHE_BYTES = 64 * 2**20

_Pairs = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
_cache: OrderedDict[tuple[tuple[int, ...], bytes], _Pairs] = OrderedDict()
_cache_lock = threading.Lock()


def _gram(xc: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The smaller Gram matrix of ``xc``: ``F x F`` where ``F <= n``, else ``n x n``."""
    n, f = xc.shape
    return xc.T @ xc if f <= n else xc @ xc.T


def _directions(
    xc: npt.NDArray[np.float64], vals: npt.NDArray[np.float64], vecs: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Right singular vectors of ``xc`` as rows, from eigenpairs of :func:`_gram`
    (``vals`` and ``vecs``' columns largest first), each signed so that its largest
    coordinate is positive (repeated fits agree)."""
    n, f = xc.shape
    if f <= n:
        v = vecs.T
    else:
        s = np.sqrt(np.maximum(vals, 0.0))
        v = (vecs / np.where(s > 0.0, s, 1.0)).T @ xc
    signs = np.sign(v[np.arange(v.shape[0]), np.argmax(np.abs(v), axis=1)])
    return np.asarray(v * np.where(signs == 0.0, 1.0, signs)[:, None], dtype=np.float64)


def _spectrum(
    xc: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Eigenvalues of ``xc``'s scatter, largest first, and the right singular vectors
    as rows in the same order (:func:`_directions`)."""
    vals, vecs = np.linalg.eigh(_gram(xc))
    return vals[::-1], _directions(xc, vals[::-1], vecs[:, ::-1])


def top_directions(xc: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    """The top ``k`` right singular vectors ``(k, F)`` of the centred matrix ``xc``.

    Computed from the smaller Gram matrix (``F x F`` or ``n x n``), so memory is
    ``min(n, F)**2`` and the result is deterministic (no random start); each is signed
    so that its largest coordinate is positive (repeated fits agree). The Gram
    matrix's eigenpairs are remembered (module docstring).
    """
    n, f = xc.shape
    k = max(1, min(k, n, f))
    return _directions(xc, *_leading_pairs(_gram(xc), k))


def clear_cache() -> None:
    """Forget every remembered decomposition (benchmarks time each scan from cold)."""
    with _cache_lock:
        _cache.clear()


def _leading_pairs(gram: npt.NDArray[np.float64], k: int) -> _Pairs:
    """The ``k`` largest eigenvalues of the symmetric ``gram`` and their eigenvectors
    as columns, largest first (at least :data:`CACHED_DIMS` are remembered)."""
    square = np.ascontiguousarray(gram, dtype=np.float64)
    key = (square.shape, hashlib.blake2b(square.tobytes(), digest_size=16).digest())
    with _cache_lock:
        known = _cache.get(key)
        if known is not None and known[0].size >= k:
            _cache.move_to_end(key)
            return known[0][:k].copy(), known[1][:, :k].copy()
    vals, vecs = np.linalg.eigh(square)
    keep = max(k, min(CACHED_DIMS, len(vals)))
    pairs = (vals[::-1][:keep].copy(), vecs[:, ::-1][:, :keep].copy())
    with _cache_lock:
        _cache[key] = pairs
        _cache.move_to_end(key)
        while len(_cache) > 1 and sum(a.nbytes + b.nbytes for a, b in _cache.values()) > (
            CACHE_BYTES
        ):
            _cache.popitem(last=False)
    return pairs[0][:k].copy(), pairs[1][:, :k].copy()


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
