"""Batched k-means: known splits, Lloyd's fixed point, batch independence, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from tripwire.detectors.kmeans import k_means_many
from tripwire.errors import InputError


def _blobs(seed: int, sizes: tuple[int, ...], d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((len(sizes), d)) * 20.0
    x = np.concatenate([m + rng.standard_normal((s, d)) for m, s in zip(means, sizes, strict=True)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return x, truth


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(i), int(j)) for i, j in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_separated_blobs_are_recovered_with_their_means() -> None:
    x, truth = _blobs(0, (200, 30, 70))
    fit = k_means_many([x], 3, n_init=5, seeds=[1])[0]
    assert _same_partition(fit.labels, truth)
    for j in range(3):
        np.testing.assert_allclose(fit.centres[j], x[fit.labels == j].mean(axis=0))
    assert fit.inertia == pytest.approx(float(((x - fit.centres[fit.labels]) ** 2).sum()))


def test_each_answer_is_a_fixed_point_of_lloyd() -> None:
    """Centres are their items' means and every item is nearest its own centre (the
    stopping rule is an unchanged assignment, not a tolerance)."""
    rng = np.random.default_rng(2)
    problems = [rng.standard_normal((n, 4)) * [3.0, 1.0, 0.5, 0.1] for n in (40, 157, 600)]
    for fit, x in zip(k_means_many(problems, 2, n_init=3, seeds=[0, 1, 2]), problems, strict=True):
        for j in range(2):
            np.testing.assert_allclose(fit.centres[j], x[fit.labels == j].mean(axis=0))
        d2 = ((x[:, None, :] - fit.centres[None]) ** 2).sum(axis=2)
        assert (d2[np.arange(len(x)), fit.labels] <= d2.min(axis=1) + 1e-9).all()


def test_a_problem_gets_the_same_answer_alone_and_in_any_batch() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((120, 6))
    alone = k_means_many([z], 2, n_init=3, seeds=[7])[0]
    others = [rng.standard_normal((120, 6)), rng.standard_normal((80, 2))]
    batched = k_means_many([others[0], z, others[1]], 2, n_init=[10, 3, 1], seeds=[0, 7, 5])[1]
    np.testing.assert_array_equal(alone.labels, batched.labels)
    np.testing.assert_array_equal(alone.centres, batched.centres)
    assert alone.inertia == batched.inertia


def test_inertia_is_on_par_with_scikit_learn() -> None:
    """Over generated problems the best of ten restarts is as good as scikit-learn's
    (its tolerance stops some restarts early; k-means++ draws differ)."""
    rng = np.random.default_rng(4)
    ratios = []
    for t in range(30):
        n, d = int(rng.integers(30, 400)), int(rng.integers(1, 9))
        x = rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d)
        x[: n // 8] += rng.standard_normal(d) * 4.0
        ours = k_means_many([x], 2, n_init=10, seeds=[t])[0].inertia
        theirs = KMeans(2, n_init=10, random_state=t).fit(x).inertia_
        ratios.append(ours / theirs)
    assert max(ratios) < 1.02
    assert float(np.mean(ratios)) < 1.002


def test_fewer_distinct_items_than_clusters_and_an_emptied_cluster() -> None:
    x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), [10, 3], axis=0)
    fit = k_means_many([x], 3, n_init=4, seeds=[0])[0]
    assert fit.inertia == pytest.approx(0.0)
    assert np.isfinite(fit.centres).all()
    same = k_means_many([np.ones((6, 3))], 2, n_init=2, seeds=[0])[0]
    assert same.inertia == pytest.approx(0.0)
    np.testing.assert_allclose(same.centres, 1.0)


def test_seeds_reproduce_and_differ() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 3))
    a = k_means_many([x], 4, n_init=1, seeds=[1])[0]
    b = k_means_many([x], 4, n_init=1, seeds=[1])[0]
    np.testing.assert_array_equal(a.labels, b.labels)
    others = [k_means_many([x], 4, n_init=1, seeds=[s])[0].inertia for s in range(2, 8)]
    assert len({round(v, 6) for v in [a.inertia, *others]}) > 1


@pytest.mark.parametrize(
    ("problems", "k", "n_init", "seeds", "match"),
    [
        ([np.zeros((5, 2))], 0, 1, [0], "k must be at least 1"),
        ([np.zeros((1, 2))], 2, 1, [0], "at least 2 rows"),
        ([np.zeros(5)], 2, 1, [0], "2-D"),
        ([np.full((5, 2), np.nan)], 2, 1, [0], "NaN"),
        ([np.zeros((5, 2))], 2, [1, 1], [0], "one n_init and one seed"),
        ([np.zeros((5, 2))], 2, 0, [0], "1 restart"),
    ],
)
def test_bad_input_is_refused(
    problems: list[np.ndarray], k: int, n_init: int | list[int], seeds: list[int], match: str
) -> None:
    with pytest.raises(InputError, match=match):
        k_means_many(problems, k, n_init=n_init, seeds=seeds)


def test_no_problems_no_answers() -> None:
    assert k_means_many([], 2, n_init=1, seeds=[]) == []
