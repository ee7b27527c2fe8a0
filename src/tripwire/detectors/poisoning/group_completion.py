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

The same question has a second form where a group was found by behaviour rather than
in feature space (:func:`group_side`): a dirty-label backdoor's poisons can be most of
their target class (the GTSRB subset at 5%: 616 poisons beside 210 clean items), and
then the class's 2-means split still separates them, but its smaller side is the
clean items, which activation clustering and spectral signatures take for the poisons.
A behavioural test that fires on part of the poisons (``perturbation-consistency``:
248 of the 616) says which side they are: the side of the split that holds nearly all
of the group (``benchmarks/probes/behaviour_side.py``, docs/benchmarks.md, session 35).
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
from tripwire.detectors.poisoning.activation_clustering import fit_activation_clusters
from tripwire.detectors.poisoning.spectral import MIN_CLASS_SIZE
from tripwire.errors import InputError

#: Cross-validation folds of the group-against-class classifier.
COMPLETION_FOLDS = 5
#: An unflagged item joins the group above this out-of-fold probability (balanced
#: classes: more like the group than like the rest of its class).
MIN_GROUP_PROBABILITY = 0.5
#: Inverse L2 strength of the logistic regression on standardised features: a strong
#: penalty, since a class's few hundred items meet hundreds of feature dimensions.
COMPLETION_C = 0.1
#: A class's split names the side of a behavioural group only where the split beats
#: chance by as many null standard deviations as activation clustering asks.
SIDE_MIN_SILHOUETTE_Z = 3.0
#: ... and where at least this share of the group lies on that side: a group that is
#: part of the poisons lies on their side (0.958 and 0.996 measured on the GTSRB subset
#: with 1% and 5% BadNets), while flags scattered over a class's two modes split
#: between them.
MIN_SIDE_SHARE = 0.9


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


def group_side(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.ArrayLike,
    *,
    min_silhouette_z: float = SIDE_MIN_SILHOUETTE_Z,
    min_side_share: float = MIN_SIDE_SHARE,
    random_state: int = 0,
) -> Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]:
    """A function that takes a group (a mask over all items, all of one label) and
    returns the other items of that class on the group's side of the class's split.

    The split is activation clustering's (2-means on the class's principal dimensions,
    whatever the share of either side); it names a side only where its silhouette beats
    Gaussian data of the class's variances by ``min_silhouette_z`` null standard
    deviations and at least ``min_side_share`` of the group lies on one side. Otherwise
    (or for a class under the per-class detectors' minimum size) nothing is returned.
    See the module docstring.

    Raises
    ------
    InputError
        Not one label per feature row, or a share outside (0.5, 1].
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(f"needs one label per feature row ({y.shape} for {x.shape})", "group side")
    if not 0.5 < min_side_share <= 1.0:
        raise InputError("min_side_share must be in (0.5, 1]", "group side")

    def side(group: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        g, cls = group_class(group, y, "group side")
        idx = np.flatnonzero(y == cls)
        out = np.zeros(y.shape, dtype=bool)
        if idx.size < MIN_CLASS_SIZE:
            return out
        fit = fit_activation_clusters(
            x[idx],
            np.zeros(idx.size, dtype=np.int64),
            random_state=random_state,
            detector="group side",
        )["classes"][0]
        if fit["silhouette_z"] < min_silhouette_z:
            return out
        z = (x[idx] - fit["mean"]) @ fit["components"].T
        centres = fit["centres"]
        one = np.linalg.norm(z - centres[1], axis=1) < np.linalg.norm(z - centres[0], axis=1)
        mine = g[idx]
        on = one if (mine & one).sum() >= (mine & ~one).sum() else ~one
        if (mine & on).sum() < min_side_share * mine.sum():
            return out
        out[idx] = on & ~mine
        return out

    return side
