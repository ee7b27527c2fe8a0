"""Class-conditional feature-space outlier score (Mahalanobis with shrinkage).

Triggered inputs and many poisons sit away from the clean activations of the class they
are labelled (or predicted) as. This detector fits a mean and a Ledoit-Wolf shrunk
covariance per class, in a PCA-reduced space, and scores each item by its Mahalanobis
distance to its class, normalised by the dimension so that classes are comparable.
It is cheap (one matrix product per item) and is the gateway's first-tier input check.

Reference: Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018 (class-conditional Gaussians on features).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.covariance import LedoitWolf

from tripwire.detectors.base import (
    BaseDetector,
    DetectorInput,
    Need,
    Threat,
    class_flag_counts,
)
from tripwire.detectors.projection import top_directions
from tripwire.detectors.registry import register
from tripwire.errors import InputError


def fit_class_gaussians(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    *,
    n_components: int = 32,
    trim: float = 0.2,
) -> dict[str, Any]:
    """Fit a PCA projection and one shrunk Gaussian per class.

    ``trim`` is the share of each class's most distant items left out of a second,
    reweighted fit (a robust estimate, not a contamination guess: flags still come from
    the calibrated threshold).

    Returns a dict with ``mean`` and ``components`` of the projection and, per class,
    ``class_mean`` ``(K, d)`` and ``precision`` ``(K, d, d)``; classes with fewer than
    two items get the pooled covariance.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise InputError(f"needs (N, F) features with N >= 3, got {x.shape}", "feature-outlier")
    mu = x.mean(axis=0)
    xc = x - mu
    # PCA keeps the estimate stable when F is large relative to class sizes; from the
    # F x F Gram matrix, not an SVD of all N rows (0.03 s against 0.5 s on full MNIST).
    comps = top_directions(xc, n_components)
    d = int(comps.shape[0])
    z = xc @ comps.T
    classes = np.unique(labels)
    n_cls = int(labels.max()) + 1
    means = np.zeros((n_cls, d))
    present = np.zeros(n_cls, dtype=bool)
    for c in classes:
        means[c] = z[labels == c].mean(axis=0)
        present[c] = True
    # Small classes borrow the pooled within-class covariance.
    pooled = LedoitWolf().fit(z - means[labels]).precision_
    precisions = np.zeros((n_cls, d, d))
    for c in classes:
        zc = z[labels == c]
        if len(zc) <= d // 2 + 2:
            precisions[c] = pooled
            continue
        est = LedoitWolf().fit(zc)
        if trim > 0.0 and len(zc) >= 20:
            # Reweighting step, as in MCD: refit on the most central items so that a
            # cluster of outliers cannot inflate the covariance and mask itself.
            d2 = est.mahalanobis(zc)
            keep = d2 <= np.quantile(d2, 1.0 - trim)
            est = LedoitWolf().fit(zc[keep])
            means[c] = est.location_
        precisions[c] = est.precision_
    return {
        "mean": mu,
        "components": comps,
        "class_mean": means,
        "precision": precisions,
        "present": present,
        "dim": d,
    }


def mahalanobis_scores(
    features: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64],
    model: dict[str, Any],
) -> npt.NDArray[np.float64]:
    """Dimension-normalised Mahalanobis distance of each item to its class's Gaussian."""
    z = (np.asarray(features, dtype=np.float64) - model["mean"]) @ model["components"].T
    if labels.size and int(labels.max()) >= len(model["present"]):
        raise InputError("labels include classes the detector was not fitted on", "feature-outlier")
    if labels.size and not np.all(model["present"][labels]):
        raise InputError("labels include classes the detector was not fitted on", "feature-outlier")
    diff = z - model["class_mean"][labels]
    # Class by class: gathering a (d, d) precision per item costs N * d * d memory.
    d2 = np.empty(len(diff))
    for c in np.unique(labels):
        rows = labels == c
        d2[rows] = np.einsum("ni,ni->n", diff[rows] @ model["precision"][c], diff[rows])
    return np.asarray(np.sqrt(np.maximum(d2, 0.0) / model["dim"]), dtype=np.float64)


@register
class FeatureOutlierDetector(BaseDetector):
    """Score items by their distance to their class in feature space.

    Needs ``features`` and ``labels`` (true labels for training data, predicted labels
    for run-time inputs). Fit it on clean reference features when available (then
    :meth:`calibrate` on held-out clean items sets an FPR threshold); fitted on the
    suspect data itself, the robust-z threshold applies.

    Parameters
    ----------
    n_components
        PCA dimensions kept before fitting class Gaussians.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "feature-outlier"
    threat: ClassVar[Threat] = Threat.BACKDOOR
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS})

    def __init__(self, *, n_components: int = 32, fpr: float = 0.01, z: float = 3.5) -> None:
        super().__init__(fpr=fpr, z=z)
        self.n_components = n_components

    def _fit(self, inputs: DetectorInput) -> None:
        if self.n_components < 1:
            raise InputError("n_components must be at least 1", self.name)
        feats, labels = inputs.features, inputs.labels
        if feats is None or labels is None:  # pragma: no cover - require() checked it
            raise InputError("needs features and labels", self.name)
        self.model_ = fit_class_gaussians(feats, labels, n_components=self.n_components)

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        if inputs.features is None or inputs.labels is None:  # pragma: no cover
            raise InputError("needs features and labels", self.name)
        return mahalanobis_scores(inputs.features, inputs.labels, self.model_)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        return {
            "pca_dim": int(self.model_["dim"]),
            "per_class": class_flag_counts(inputs.labels, flags),
        }
