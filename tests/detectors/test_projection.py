"""Principal directions shared by the detectors: the Gram-matrix route and the subspace
that holds a given share of the variance."""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.detectors.projection import principal_subspace, top_directions
from tripwire.errors import InputError


def spread(variances: list[float], n: int = 4000, seed: int = 0) -> np.ndarray:
    """Centred rows with the given variances along randomly rotated axes."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(variances), len(variances))))
    x = rng.normal(size=(n, len(variances))) * np.sqrt(variances) @ q.T
    return x - x.mean(axis=0)


@pytest.mark.parametrize("n", [500, 20])  # more rows than columns, and fewer
def test_top_directions_are_the_leading_singular_vectors(n: int) -> None:
    x = spread([9.0, 4.0, 1.0, 0.5, 0.1, 0.05], n=n)
    v = top_directions(x, 3)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    assert v.shape == (3, 6)
    np.testing.assert_allclose(np.abs(v @ vt[:3].T), np.eye(3), atol=1e-8)
    np.testing.assert_array_equal(v, top_directions(x.copy(), 3))  # deterministic signs


def test_principal_subspace_keeps_the_fewest_directions_for_the_share() -> None:
    x = spread([10.0, 5.0, 1.0, 0.01, 0.01, 0.01])
    total = float((x**2).sum())
    comps = principal_subspace(x, 0.99)
    assert comps.shape == (3, 6)  # two directions hold ~94%, three ~99.8%
    assert float(((x @ comps.T) ** 2).sum()) / total >= 0.99
    assert principal_subspace(x, 0.9).shape[0] == 2
    np.testing.assert_array_equal(principal_subspace(x, 1.0), np.eye(6))
    assert principal_subspace(np.zeros((5, 4)), 0.99).shape == (1, 4)  # no spread at all
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(InputError, match="variance"):
            principal_subspace(x, bad)


def test_remembered_directions_are_those_computed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan's detectors share one decomposition a class through the content-keyed
    cache: a hit returns what a fresh computation gives, a changed matrix misses, and
    callers cannot change what is remembered."""
    from tripwire.detectors import projection

    x = spread([9.0, 4.0, 1.0, 0.5, 0.1, 0.05], n=300, seed=3)
    first = top_directions(x, 3)
    first[:] = 0.0  # a caller's own copy
    hit = top_directions(x.copy(), 2)
    projection._cache.clear()
    fresh = top_directions(x, 3)
    np.testing.assert_array_equal(hit, fresh[:2])
    assert np.abs(fresh).max() > 0.0
    moved = x.copy()
    moved[0, 0] += 1.0
    assert not np.array_equal(top_directions(moved, 3), fresh)
    # Bounded: with room for one entry only the latest stays.
    monkeypatch.setattr(projection, "CACHE_BYTES", 1)
    for seed in range(4):
        top_directions(spread([2.0, 1.0, 0.5], n=50, seed=seed), 2)
    assert len(projection._cache) == 1
