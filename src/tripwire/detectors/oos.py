"""Out-of-sample class probabilities, for label-noise detectors.

A model's in-sample predictions have memorised its poisons, so label checks never trust
them: they use probabilities from a proxy (multinomial logistic regression on
standardised features) fitted under stratified K-fold cross-validation, so that every
sample's probabilities come from a proxy that never saw it.

The features still come from a model trained on the suspect labels: it has partly
learnt its flipped samples, and a proxy on its features inherits that (a flip the model
absorbed looks like its new class there). Images have a second view the labels never
touched: their neighbours in input space. :func:`label_probabilities` pools both views
(normalised geometric mean of the feature proxy's probabilities and the leave-one-out
k-nearest-neighbour label frequencies of a pooled-pixel PCA embedding), so that a label
is doubted when both views doubt it and trusted more where both agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tripwire.detectors.input_space import InputSpace, neighbour_labels
from tripwire.errors import InputError


def _rows_and_labels(
    x: npt.ArrayLike, labels: npt.ArrayLike, what: str, dtype: type[np.floating[Any]]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    arr = np.asarray(x, dtype=dtype)
    y = np.asarray(labels, dtype=np.int64)
    if arr.ndim != 2 or arr.shape[0] != y.shape[0]:
        raise InputError(f"{what} {arr.shape} and labels {y.shape} do not match", "oos")
    return arr, y


def _proxy() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))


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
    x, y = _rows_and_labels(features, labels, "features", np.float64)
    present = np.unique(y)
    if present.size < 2:
        raise InputError("out-of-sample probabilities need at least two classes", "oos")
    k = n_classes or int(y.max()) + 1
    smallest = int(np.bincount(y)[present].min())
    n_splits = max(2, min(folds, smallest))
    out = np.zeros((len(y), k), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for train_idx, test_idx in splitter.split(x, y):
        clf = _proxy().set_params(logisticregression__max_iter=max_iter)
        clf.fit(x[train_idx], y[train_idx])
        cols = clf.classes_.astype(int)
        out[np.ix_(test_idx, cols)] = clf.predict_proba(x[test_idx])
    # Classes absent from a fold's training part get no mass; renormalise for safety.
    out /= np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
    return out


def knn_label_probabilities(
    embedding: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    *,
    n_classes: int | None = None,
    k: int = 10,
    smoothing: float = 0.1,
) -> npt.NDArray[np.float64]:
    """Leave-one-out ``k``-nearest-neighbour label frequencies, ``(N, C)``.

    Row ``i`` counts the labels of item ``i``'s ``k`` nearest other items, plus
    ``smoothing`` per class (so that no class gets probability 0), normalised.

    Raises
    ------
    InputError
        Fewer than two items, or lengths that disagree.
    """
    z, y = _rows_and_labels(embedding, labels, "embedding", np.float32)
    if len(y) < 2:
        raise InputError("neighbour probabilities need at least two items", "oos")
    return space_label_probabilities(
        InputSpace.from_embedding(z), y, n_classes=n_classes, k=k, smoothing=smoothing
    )


def space_label_probabilities(
    space: InputSpace,
    labels: npt.NDArray[np.int64],
    *,
    n_classes: int | None = None,
    k: int = 10,
    smoothing: float = 0.1,
) -> npt.NDArray[np.float64]:
    """:func:`knn_label_probabilities` over an :class:`InputSpace` (a scan's shared one:
    its neighbour graph is read, not searched again)."""
    y, near = neighbour_labels(space, labels, k)
    return label_frequencies(near, n_classes or int(y.max()) + 1, smoothing)


def label_frequencies(
    near: npt.NDArray[np.int64], n_classes: int, smoothing: float
) -> npt.NDArray[np.float64]:
    """Rows of neighbour labels ``(N, k)`` as ``(N, C)`` frequencies, plus ``smoothing``
    per class so that no class gets probability 0."""
    counts = np.zeros((len(near), n_classes), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(len(near)), near.shape[1]), near.ravel()), 1.0)
    return np.asarray(
        (counts + smoothing) / (near.shape[1] + n_classes * smoothing), dtype=np.float64
    )


def pooled_probabilities(*probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Normalised geometric mean of several ``(N, C)`` probability estimates (a
    logarithmic opinion pool: a class keeps mass only where every view gives it some)."""
    if not probs:
        raise ValueError("nothing to pool")
    logs = np.mean([np.log(np.clip(p, 1e-12, None)) for p in probs], axis=0)
    logs -= logs.max(axis=1, keepdims=True)
    out = np.exp(logs)
    return np.asarray(out / out.sum(axis=1, keepdims=True), dtype=np.float64)


#: How :func:`label_probabilities` got its probabilities (reported with the scan).
FEATURE_VIEW = "cross-validated logistic regression on the features"
POOLED_VIEWS = (
    FEATURE_VIEW + ", pooled (geometric mean) with leave-one-out 10-nearest-neighbour "
    "label frequencies in input space (pooled pixels, PCA)"
)


def label_probabilities(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    *,
    images: npt.NDArray[np.floating[Any]] | None = None,
    n_classes: int | None = None,
    random_state: int = 0,
    space: InputSpace | None = None,
) -> tuple[npt.NDArray[np.float64], str]:
    """Out-of-sample probabilities for label checks, and how they were made.

    With ``images`` (``(N, C, H, W)`` in [0, 1], the items the features belong to), the
    feature proxy's probabilities are pooled with input-space neighbour frequencies (see
    the module docstring); without, the feature proxy's alone. ``space`` stands for
    ``images`` where the caller already holds their shared :class:`InputSpace` (a scan
    does), so that its neighbour search is reused.
    """
    p = oos_probabilities(features, labels, n_classes=n_classes, random_state=random_state)
    if space is None:
        if images is None or np.ndim(images) != 4:
            return p, FEATURE_VIEW
        space = InputSpace(images, random_state=random_state)
    pk = space_label_probabilities(space, labels, n_classes=p.shape[1])
    return pooled_probabilities(p, pk), POOLED_VIEWS


def reference_probabilities(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    reference_features: npt.NDArray[np.floating[Any]],
    *,
    n_classes: int,
    space: InputSpace | None = None,
    reference_images: npt.NDArray[np.floating[Any]] | None = None,
    k: int = 10,
    smoothing: float = 0.1,
) -> npt.NDArray[np.float64]:
    """Probabilities of a trusted set's items as the suspect data's own label checks see
    theirs: from a proxy fitted on the suspect items and, with ``space`` and
    ``reference_images``, pooled with the labels of their ``k`` nearest suspect items in
    that input space (:func:`label_probabilities`'s two views).

    A trusted set calibrates the label checks' thresholds; probabilities from a proxy
    fitted on the trusted set alone (a few hundred items, another model) would put its
    items on another scale than the suspect items'. Here each trusted item is, like each
    suspect item under cross-validation, scored by a proxy that never saw it.

    Raises
    ------
    InputError
        Feature widths or lengths that disagree, or fewer than two classes.
    """
    x, y = _rows_and_labels(features, labels, "features", np.float64)
    ref = np.asarray(reference_features, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[1] != x.shape[1]:
        raise InputError(
            f"trusted features {ref.shape} do not match the data's {x.shape[1]} columns", "oos"
        )
    if np.unique(y).size < 2:
        raise InputError("out-of-sample probabilities need at least two classes", "oos")
    clf = _proxy().fit(x, y)
    p = np.zeros((len(ref), n_classes), dtype=np.float64)
    p[:, clf.classes_.astype(int)] = clf.predict_proba(ref)
    p /= np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    if space is None or reference_images is None or np.ndim(reference_images) != 4:
        return p
    emb = space.embedding()
    near = (
        NearestNeighbors(n_neighbors=min(k, len(emb)))
        .fit(emb)
        .kneighbors(space.embed(reference_images), return_distance=False)
    )
    return pooled_probabilities(p, label_frequencies(y[near], n_classes, smoothing))
