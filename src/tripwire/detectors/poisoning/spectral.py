"""Spectral signatures: poisons leave a trace along the top singular vector of their class.

A backdoor makes the network represent poisoned inputs with a feature that clean inputs
of the target class lack. Within that class the poisons then shift the mean along one
direction, which becomes the top singular vector of the centred class representations,
and the poisons project far along it. Each item is scored by its projection on its
class's top right singular vector.

Known weaknesses (kept visible in the tests): with very few poisons (about 1% of a
class) the top direction is the clean class's own largest variance and the poisons do
not stand out; when the poisons are about half of a class the two groups sit
symmetrically about the class centre and both project equally far.

This module also holds the small helpers that the other per-class poisoning detectors
share (input checks, grouping by class).

Reference: Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tripwire.detectors.base import BaseDetector, DetectorInput, Need, Threat
from tripwire.detectors.calibration import MAD_TO_SD
from tripwire.detectors.projection import top_directions
from tripwire.detectors.registry import register
from tripwire.errors import InputError

#: Default smallest class a per-class detector estimates anything from.
MIN_CLASS_SIZE = 10


def features_and_labels(
    inputs: DetectorInput, detector: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``(N, F)`` float64 features and ``(N,)`` int64 labels from ``inputs``, checked.

    Raises
    ------
    InputError
        Missing inputs, features that are not 2-D, or labels that are not integers.
    """
    if inputs.features is None or inputs.labels is None:
        raise InputError("needs features and labels", detector)
    x = np.asarray(inputs.features, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"features must be 2-D (N, F), got shape {x.shape}", detector)
    return x, integer_labels(inputs.labels, detector)


def integer_labels(labels: npt.ArrayLike, detector: str) -> npt.NDArray[np.int64]:
    """``labels`` as a 1-D int64 array; integer-valued floats are accepted."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise InputError(f"labels must be 1-D, got shape {y.shape}", detector)
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise InputError(f"labels must be integers, got dtype {y.dtype}", detector)


def class_indices(labels: npt.NDArray[np.int64]) -> dict[int, npt.NDArray[np.intp]]:
    """Positions of each class's items, keyed by class label (sorted)."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    bounds = [*starts[1:].tolist(), labels.size]
    return {int(c): order[s:e] for c, s, e in zip(classes, starts, bounds, strict=True)}


def split_by_size(
    groups: dict[int, npt.NDArray[np.intp]], min_size: int, detector: str
) -> tuple[list[int], list[int]]:
    """Classes with at least ``min_size`` items, and the smaller ones (skipped).

    Raises
    ------
    InputError
        When no class is large enough to estimate anything from.
    """
    big = [c for c, idx in groups.items() if idx.size >= min_size]
    small = [c for c, idx in groups.items() if idx.size < min_size]
    if not big:
        sizes = {c: int(idx.size) for c, idx in groups.items()}
        raise InputError(
            f"no class has the {min_size} items it needs at least (class sizes: {sizes})",
            detector,
        )
    return big, small


def check_known_classes(
    labels: npt.NDArray[np.int64], known: set[int] | frozenset[int], detector: str
) -> None:
    """Raise :class:`InputError` when ``labels`` hold classes the detector never saw."""
    unknown = sorted(set(np.unique(labels).tolist()) - set(known))
    if unknown:
        raise InputError(
            f"labels include classes the detector was not fitted on: {unknown[:10]}", detector
        )


def check_width(features: npt.NDArray[np.float64], width: int, detector: str) -> None:
    """Raise :class:`InputError` when ``features`` do not have the fitted column count."""
    if features.shape[1] != width:
        raise InputError(
            f"features have {features.shape[1]} columns, the detector was fitted on {width}",
            detector,
        )


def robust_location_scale(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Median and ``1.4826 * MAD`` of ``values``, the scale floored above zero."""
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * MAD_TO_SD
    if mad <= 0.0:
        # Most values tie: fall back to the mean absolute deviation, then to 1.
        mad = float(np.mean(np.abs(values - med))) or 1.0
    return med, mad


def fit_spectral(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    min_class_size: int = MIN_CLASS_SIZE,
    detector: str = "spectral-signature",
) -> dict[str, Any]:
    """Per class: mean, top right singular vector, and the robust centre and scale of the
    projections on it.

    Returns a dict with ``classes`` (fitted class -> ``mean``, ``direction``,
    ``center``, ``scale``, ``n``, ``eig_ratio``) and ``skipped`` (classes smaller than
    ``min_class_size``, which are not scored).
    """
    groups = class_indices(labels)
    big, small = split_by_size(groups, min_class_size, detector)
    classes: dict[int, dict[str, Any]] = {}
    for c in big:
        xc = features[groups[c]]
        mean = xc.mean(axis=0)
        centred = xc - mean
        v = top_directions(centred, 2)
        proj = centred @ v[0]
        center, scale = robust_location_scale(proj)
        # How much the top direction dominates the next: poisons inflate it.
        var2 = float(np.var(centred @ v[1])) if v.shape[0] > 1 else 0.0
        classes[c] = {
            "mean": mean,
            "direction": v[0],
            "center": center,
            "scale": scale,
            "n": int(xc.shape[0]),
            "eig_ratio": float(np.var(proj) / var2) if var2 > 0.0 else float("inf"),
        }
    return {"classes": classes, "skipped": small, "width": int(features.shape[1])}


def spectral_scores(
    features: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    model: dict[str, Any],
    *,
    detector: str = "spectral-signature",
) -> npt.NDArray[np.float64]:
    """``|p_i - median(p)| / (1.4826 * MAD(p))`` with ``p_i`` the projection of item
    ``i`` on its class's top singular vector; 0 for items of skipped classes."""
    classes: dict[int, dict[str, Any]] = model["classes"]
    check_known_classes(labels, classes.keys() | set(model["skipped"]), detector)
    check_width(features, model["width"], detector)
    scores = np.zeros(labels.size, dtype=np.float64)
    for c, idx in class_indices(labels).items():
        m = classes.get(c)
        if m is None:
            continue
        proj = (features[idx] - m["mean"]) @ m["direction"]
        scores[idx] = np.abs(proj - m["center"]) / m["scale"]
    return scores


def _finite_or_none(value: float) -> float | None:
    """``value`` for a JSON report: ``None`` where it is infinite or NaN."""
    return float(value) if np.isfinite(value) else None


@register
class SpectralSignatureDetector(BaseDetector):
    """Score items by their projection on their class's top singular vector.

    Needs ``features`` (penultimate-layer activations of the suspect model on its
    training data) and ``labels`` (the training labels).

    The paper's statistic is the squared projection of the mean-centred class on its
    top right singular vector. The score here is a robust z-score of that projection
    within its class, ``|p_i - median(p)| / (1.4826 * MAD(p))``: the same ranking
    within a class up to the centre (the median stays with the clean majority, where
    the mean is pulled towards the poisons), on a scale shared by all classes, so that
    one threshold fits them all; and not squared, so that clean scores have the light,
    half-normal tail that the robust-z threshold assumes.

    Classes with fewer than ``min_class_size`` items are not scored (score 0) and are
    listed in the evidence under ``skipped_classes``.

    Parameters
    ----------
    min_class_size
        Smallest class a direction is estimated from.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "spectral-signature"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS})

    def __init__(
        self, *, min_class_size: int = MIN_CLASS_SIZE, fpr: float = 0.01, z: float = 3.5
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.min_class_size = min_class_size

    def _fit(self, inputs: DetectorInput) -> None:
        if self.min_class_size < 3:
            raise InputError("min_class_size must be at least 3", self.name)
        x, y = features_and_labels(inputs, self.name)
        self.model_ = fit_spectral(x, y, min_class_size=self.min_class_size, detector=self.name)

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        x, y = features_and_labels(inputs, self.name)
        return spectral_scores(x, y, self.model_, detector=self.name)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = integer_labels(inputs.labels if inputs.labels is not None else [], self.name)
        per_class = {
            c: {
                "items": int(idx.size),
                "flagged": int(flags[idx].sum()),
                "top_to_second_variance": _finite_or_none(self.model_["classes"][c]["eig_ratio"]),
            }
            for c, idx in class_indices(y).items()
            if c in self.model_["classes"]
        }
        return {"per_class": per_class, "skipped_classes": list(self.model_["skipped"])}
