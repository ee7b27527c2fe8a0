"""Complete a found group of poisons: the class's items a classifier of the group puts in it.

The feature-cluster checks find a backdoor's poisons as the part of their target class
that the network represents apart (an unsupervised split of the class's features). A
few poisons, whose trigger the network represents only in part, sit on the clean side
of that split: on the CIFAR-10 subset with 5% WaNet, 32 of the 500 warped images
(``benchmarks/probes/group_refine.py``, docs/benchmarks.md, session 34). Once a group
stands, the question changes from "is there a group?" to "which items are like the
group rather than like the rest of the class?", which a supervised classifier answers
better than the split: a logistic regression of the group against the rest of its class,
on the same features, cross-validated so that each unflagged item is judged by a model
that did not see it. An item joins where its out-of-fold probability of the group is
above :data:`MIN_GROUP_PROBABILITY` (the classes weighted equally: more like the group
than like the rest). A group that the split already separates cleanly (BadNets, blend)
adds next to nothing: no clean item of the class looks like it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tripwire.detectors.input_space import group_class
from tripwire.errors import InputError

#: Cross-validation folds of the group-against-class classifier.
COMPLETION_FOLDS = 5
#: An unflagged item joins the group above this out-of-fold probability (balanced
#: classes: more like the group than like the rest of its class).
MIN_GROUP_PROBABILITY = 0.5
#: Inverse L2 strength of the logistic regression on standardised features: a strong
#: penalty, since a class's few hundred items meet hundreds of feature dimensions.
COMPLETION_C = 0.1


def group_probabilities(
    features: npt.NDArray[np.floating[Any]],
    group: npt.NDArray[np.bool_],
    *,
    folds: int = COMPLETION_FOLDS,
    random_state: int = 0,
) -> npt.NDArray[np.float64]:
    """Each item's out-of-fold probability of belonging to ``group``.

    ``features`` are one class's items (rows); ``group`` flags the found group among
    them. Returns NaN everywhere where either side has fewer than ``folds`` items.
    """
    x = np.asarray(features, dtype=np.float64)
    g = np.asarray(group, dtype=bool)
    if x.ndim != 2 or g.shape != (x.shape[0],):
        raise InputError(
            f"needs one group flag per feature row ({g.shape} for {x.shape})", "group completion"
        )
    out = np.full(x.shape[0], np.nan)
    if min(int(g.sum()), int((~g).sum())) < folds:
        return out
    split = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    for train, test in split.split(x, g):
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=COMPLETION_C, max_iter=2000, class_weight="balanced"),
        )
        clf.fit(x[train], g[train])
        out[test] = clf.predict_proba(x[test])[:, 1]
    return out


def group_completion(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.ArrayLike,
    *,
    min_probability: float = MIN_GROUP_PROBABILITY,
    random_state: int = 0,
) -> Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]:
    """A function that takes a found group (a mask over all items, all of one label)
    and returns the unflagged items of that class that a classifier of the group puts
    in it (out-of-fold probability above ``min_probability``; see the module docstring).

    Raises
    ------
    InputError
        Not one label per feature row, or a probability outside (0, 1).
    """
    x = np.asarray(features)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(
            f"needs one label per feature row ({y.shape} for {x.shape})", "group completion"
        )
    if not 0.0 < min_probability < 1.0:
        raise InputError("min_probability must be in (0, 1)", "group completion")

    def complete(group: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        g, cls = group_class(group, y, "group completion")
        idx = np.flatnonzero(y == cls)
        p = group_probabilities(x[idx], g[idx], random_state=random_state)
        out = np.zeros(y.shape, dtype=bool)
        out[idx] = ~g[idx] & (np.nan_to_num(p, nan=0.0) > min_probability)
        return out

    return complete
