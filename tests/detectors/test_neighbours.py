"""The cell search of all items' nearest neighbours returns the all-pairs answer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors import neighbours as nb
from tripwire.detectors.neighbours import nearest_neighbours
from tripwire.errors import InputError


def _clusters(n: int, d: int, seed: int) -> np.ndarray:
    """Tight clusters, as a trained network's features of ten classes sit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 6.0
    return centres[rng.integers(0, 10, n)] + rng.normal(size=(n, d))


def _same_answer(x: np.ndarray, k: int, reference: str = "ball_tree", **kw: int) -> None:
    dist, idx = nearest_neighbours(x, k, exact_below=0, **kw)
    # A tree search measures each distance from the coordinates (the brute search of
    # many-coordinate rows errs by 1e-6 through |a|^2 + |b|^2 - 2 a.b).
    nn = NearestNeighbors(n_neighbors=k, algorithm=reference)
    ref_d, ref_i = nn.fit(x).kneighbors(x)
    assert dist.shape == idx.shape == (len(x), k)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-7, atol=1e-9)
    # Same neighbours wherever the k-th distance is not tied with the next one.
    for row in range(len(x)):
        if ref_d[row, -1] < np.sort(np.linalg.norm(x - x[row], axis=1))[k] - 1e-9:
            assert set(idx[row]) == set(ref_i[row])
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("k", [1, 6, 40])
def test_cell_search_equals_all_pairs_on_clustered_rows(k: int) -> None:
    x = _clusters(2500, 12, seed=k)
    _same_answer(x, k, n_cells=20)


def test_few_probes_are_completed_by_the_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    # One probed cell finds a row's neighbours only inside its own cell; the ones
    # across the border come from the certificate's pass.
    pairs: list[int] = []
    real = nb._search

    def counted(x: np.ndarray, sq: np.ndarray, members: list, rows: np.ndarray, *a: object) -> None:
        pairs.append(len(rows))
        real(x, sq, members, rows, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(nb, "_search", counted)
    x = _clusters(2000, 8, seed=3)
    _same_answer(x, 10, n_cells=40, n_probe=1)
    assert pairs[:2] == [2000, 0] and 0 < pairs[2] < 2000 * 39  # home, other probes, more


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize(("spread", "offset"), [(1.0, 0.0), (1e-3, 1e3)])
def test_screens_keep_the_answer_exact(
    spread: float, offset: float, whole: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 96 coordinates: both screens run (principal coordinates, then all in float32).
    # Tiny clusters far from the origin make float32 rounding as large as the
    # distances that decide the neighbours; the rounding bound must still hold, for
    # the candidates a row's cut lets through and for whole cells alike.
    monkeypatch.setattr(nb, "_compare_whole", lambda k, dims, members: whole)
    x = _clusters(2400, 96, seed=5) * spread + offset
    _same_answer(x, 7, n_cells=24, n_probe=1)


@pytest.mark.parametrize("whole", [False, True])
def test_neighbours_nearer_than_float32_can_tell_apart_are_still_exact(
    whole: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two tight groups far from their common centre: the neighbours' squared distances
    # (about 1e-4) are far below the float32 rounding of the coordinates' norms (about
    # 1e6), so the bounds rule nothing out and every member is measured in float64.
    monkeypatch.setattr(nb, "_compare_whole", lambda k, dims, members: whole)
    x = _clusters(2400, 96, seed=8) * 1e-3
    x[:1200, 0] += 1e3
    x[1200:, 0] -= 1e3
    _same_answer(x, 5, n_cells=24, n_probe=1)


def test_float32_bounds_leave_few_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cut keeps a row's float64 comparisons to about its k nearest members.
    measured: list[int] = []
    real = nb._merged

    def counted(old_d: np.ndarray, old_i: np.ndarray, new_d: np.ndarray, *a: object) -> object:
        measured.append(int(np.isfinite(new_d).sum()))
        return real(old_d, old_i, new_d, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(nb, "_merged", counted)
    monkeypatch.setattr(nb, "_compare_whole", lambda k, dims, members: False)
    x = _clusters(3000, 80, seed=6)
    _same_answer(x, 5, n_cells=30, n_probe=1)
    assert 3000 * 5 <= sum(measured) < 3000 * 5 * 4


def test_many_copies_at_the_cut_are_all_measured() -> None:
    # Rows of 40 distinct points, each repeated 40 times: the k-th distance (0) is tied
    # with every other copy, on both sides of the cut.
    base = _clusters(40, 70, seed=2)
    x = base[np.random.default_rng(3).integers(0, 40, 1600)]
    dist, idx = nearest_neighbours(x, 6, exact_below=0, n_cells=16)
    ref_d, _ = NearestNeighbors(n_neighbors=6, algorithm="ball_tree").fit(x).kneighbors(x)
    np.testing.assert_allclose(dist, ref_d, atol=1e-9)
    assert (x[idx] == x[:, None, :]).all()  # copies first


def test_exact_copies_are_at_distance_zero_and_ordered_by_position() -> None:
    x = _clusters(1500, 6, seed=4)
    x[700] = x[20]
    x[1400] = x[20]
    dist, idx = nearest_neighbours(x, 4, exact_below=0, n_cells=10)
    for row in (20, 700, 1400):
        assert list(idx[row, :3]) == [20, 700, 1400]
        assert (dist[row, :3] == 0.0).all()


def test_many_copies_leave_cells_empty_or_coinciding() -> None:
    # 30 distinct rows, each repeated: k-means cannot place 50 distinct centroids.
    base = _clusters(30, 4, seed=7)
    x = base[np.random.default_rng(8).integers(0, 30, 1500)]
    dist, idx = nearest_neighbours(x, 5, exact_below=0, n_cells=50)
    ref_d, _ = NearestNeighbors(n_neighbors=5).fit(x).kneighbors(x)
    np.testing.assert_allclose(dist, ref_d, atol=1e-9)
    assert (x[idx] == x[:, None, :]).all()  # every row's copies are its neighbours


def test_rows_the_cells_cannot_prune_fall_back_to_all_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = nb._brute

    def counted(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(x))
        return real(x, k)

    monkeypatch.setattr(nb, "_brute", counted)
    x = np.random.default_rng(5).uniform(size=(1200, 30))  # no clusters to prune by
    _same_answer(x, 8, reference="brute", n_cells=12)  # the fallback is that search
    assert calls == [1200]  # the search gave up on the cells


def test_small_sets_are_searched_pair_by_pair() -> None:
    x = _clusters(300, 5, seed=6)
    dist, idx = nearest_neighbours(x, 300)
    # scikit-learn's brute search expands |a - b|^2, so a row's distance to itself is
    # zero only up to rounding (3e-7 seen under load, where BLAS blocks differently).
    assert (idx[:, 0] == np.arange(300)).all() and np.allclose(dist[:, 0], 0.0, atol=1e-5)
    assert idx.shape == (300, 300)


@pytest.mark.parametrize(
    ("x", "k", "message"),
    [
        (np.zeros(5), 1, "needs \\(N, D\\) rows"),
        (np.zeros((5, 2)), 0, "k must lie in \\[1, 5\\]"),
        (np.zeros((5, 2)), 6, "k must lie in \\[1, 5\\]"),
        (np.full((5, 2), np.nan), 2, "finite"),
    ],
)
def test_bad_input_is_refused(x: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        nearest_neighbours(x, k)


def test_workers_share_the_rows_without_changing_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small blocks and three workers: the rows are dealt out even on this small set.
    monkeypatch.setattr(nb, "BLOCK_ROWS", 64)
    monkeypatch.setattr(nb, "worker_count", lambda n_jobs, tasks: 3)
    x = _clusters(2500, 70, seed=9)
    _same_answer(x, 6, n_cells=25, n_probe=1)
