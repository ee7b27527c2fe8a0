"""Out-of-sample class probabilities from features, for label-noise detectors.

A model's in-sample predictions have memorised its poisons, so label checks never trust
them: they use probabilities from a proxy (multinomial logistic regression on
standardised features) fitted under stratified K-fold cross-validation, so that every
sample's probabilities come from a proxy that never saw it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tripwire.errors import InputError


def oos_probabilities(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    *,
    n_classes: int | None = None,
    folds: int = 5,
    random_state: int = 0,
    max_iter: int = 300,
) -> npt.NDArray[np.float64]:
    """Cross-validated ``(N, C)`` probabilities of a logistic-regression proxy.

    Raises
    ------
    InputError
        Fewer than two classes, or lengths that disagree.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputError(f"features {x.shape} and labels {y.shape} do not match", "oos")
    present = np.unique(y)
    if present.size < 2:
        raise InputError("out-of-sample probabilities need at least two classes", "oos")
    k = n_classes or int(y.max()) + 1
    smallest = int(np.bincount(y)[present].min())
    n_splits = max(2, min(folds, smallest))
    out = np.zeros((len(y), k), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train_idx, test_idx in splitter.split(x, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0))
        clf.fit(x[train_idx], y[train_idx])
        cols = clf.classes_.astype(int)
        out[np.ix_(test_idx, cols)] = clf.predict_proba(x[test_idx])
    # Classes absent from a fold's training part get no mass; renormalise for safety.
    out /= np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
    return out
