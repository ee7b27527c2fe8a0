"""Completing a found group: the class's items that a classifier of the group puts in it."""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.detectors.poisoning.group_completion import (
    group_completion,
    group_probabilities,
    group_side,
)
from tripwire.errors import InputError


def _class_with_group(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two classes of 300 in 32 dimensions; in class 0, 60 poisons shifted in an
    8-dimensional subspace (the trigger's features), of which the split "found" the 50
    furthest out. Returns features, labels, the poisons and the found group."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 32))
    y = np.repeat([0, 1], 300)
    x[300:, 1] += 3.0
    poisons = np.zeros(600, dtype=bool)
    poisons[:60] = True
    shift = np.r_[np.full(50, 2.0), np.full(10, 1.5)]  # the last 10 only in part
    x[:60, :8] += shift[:, None]
    found = poisons.copy()
    found[50:60] = False
    return x, y, poisons, found


def test_the_items_like_the_found_group_join_it() -> None:
    x, y, poisons, found = _class_with_group()
    added = group_completion(x, y)(found)
    missed = poisons & ~found
    assert added[missed].sum() >= 7  # most of the 10 left on the clean side
    assert added[~poisons].sum() <= 3  # and next to no clean item of the class
    assert not added[found].any() and not added[y == 1].any()


def test_a_group_the_split_separated_fully_adds_next_to_nothing() -> None:
    x, y, poisons, _ = _class_with_group()
    x[50:60, :8] += 0.5  # every poison now as far out as the rest
    added = group_completion(x, y)(poisons)
    assert added.sum() <= 2


def test_probabilities_are_out_of_fold_and_nan_for_a_tiny_side() -> None:
    x, _, _, found = _class_with_group()
    p = group_probabilities(x[:300], found[:300])
    assert np.all((p >= 0) & (p <= 1))
    assert np.median(p[found[:300]]) > 0.9 > 0.1 > np.median(p[~found[:300]][10:])
    tiny = np.zeros(300, dtype=bool)
    tiny[:3] = True
    assert np.isnan(group_probabilities(x[:300], tiny)).all()


def test_bad_input_is_a_one_line_error() -> None:
    x, y, _, found = _class_with_group()
    with pytest.raises(InputError, match="one label per feature row"):
        group_completion(x, y[:10])
    with pytest.raises(InputError, match="min_probability"):
        group_completion(x, y, min_probability=1.0)
    complete = group_completion(x, y)
    with pytest.raises(InputError, match="one class"):
        complete(np.ones(600, dtype=bool))
    with pytest.raises(InputError, match="non-empty"):
        complete(np.zeros(600, dtype=bool))
    with pytest.raises(InputError, match="one group flag per feature row"):
        group_probabilities(x, found[:10])


def _majority_class(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two classes of 300 in 32 dimensions; in class 0, 225 poisons (75% of the class)
    shifted in an 8-dimensional subspace. Returns features, labels and the poisons."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 32))
    y = np.repeat([0, 1], 300)
    x[300:, 1] += 3.0
    poisons = np.zeros(600, dtype=bool)
    poisons[:225] = True
    x[:225, :8] += 2.0
    return x, y, poisons


def test_a_group_names_its_side_of_the_split_whatever_its_share() -> None:
    x, y, poisons = _majority_class()
    seen = np.zeros(600, dtype=bool)
    seen[:90] = True  # part of the poisons, as a behavioural test finds them
    added = group_side(x, y)(seen)
    assert added[poisons & ~seen].mean() >= 0.95  # the rest of the poisons
    assert added[~poisons].sum() <= 3  # not the class's clean items, nor class 1
    assert not added[seen].any()


def test_no_side_without_a_clear_split_or_with_a_scattered_group() -> None:
    x, y, _ = _majority_class()
    scattered = np.zeros(600, dtype=bool)
    scattered[200:260] = True  # 25 poisons and 35 clean items: both sides
    assert not group_side(x, y)(scattered).any()
    x[:225, :8] -= 2.0  # no poisons: class 0 is one Gaussian blob
    seen = np.zeros(600, dtype=bool)
    seen[:90] = True
    assert not group_side(x, y)(seen).any()


def test_group_side_bad_input() -> None:
    x, y, _ = _majority_class()
    with pytest.raises(InputError, match="one label per feature row"):
        group_side(x, y[:10])
    with pytest.raises(InputError, match="min_side_share"):
        group_side(x, y, min_side_share=0.5)
    with pytest.raises(InputError, match="one class"):
        group_side(x, y)(np.ones(600, dtype=bool))
