"""The detector contract that every detector of every layer implements.

A detector has a ``name``, the ``threat`` it covers and the inputs it ``needs``. It is
fitted on a :class:`DetectorInput`, scores items (samples, classes, clients) with
**higher = more suspicious**, and turns scores into flags through a threshold that is
*calibrated*: either at a target false-positive rate on clean reference data
(:meth:`BaseDetector.calibrate`) or, without clean data, by robust statistics on the
scores themselves (median + z * MAD). Never by a guessed contamination rate.

Scans and the benchmark find detectors through :mod:`tripwire.detectors.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from tripwire.detectors.calibration import robust_threshold, threshold_at_fpr
from tripwire.detectors.input_space import InputSpace
from tripwire.errors import InputError, NotFittedError

if TYPE_CHECKING:
    from tripwire.io.dataset import Dataset
    from tripwire.models.loading import Model


class Threat(StrEnum):
    """What a detector defends against."""

    POISONING = "poisoning"
    BACKDOOR = "backdoor"
    EXTRACTION = "extraction"


class Need(StrEnum):
    """An input a detector can ask for."""

    LABELS = "labels"
    #: Penultimate-layer activations (or any embedding), one row per item.
    FEATURES = "features"
    #: Out-of-sample class probabilities (cross-validated or from retraining), never
    #: the in-sample predictions of a model that memorised the poisons.
    PROBS = "probs"
    MODEL = "model"
    #: The raw dataset (samples as stored, ids, sources).
    DATA = "data"
    #: A client's query stream, in arrival order.
    QUERIES = "queries"
    #: Training dynamics: each item's margin in each epoch of a training run on the
    #: data (``(epochs, N)``), recorded where tripwire trains.
    DYNAMICS = "dynamics"


@dataclass
class DetectorInput:
    """Everything a detector may read; each detector reads only what it ``needs``.

    Attributes
    ----------
    labels
        Integer labels ``(N,)``.
    features
        ``(N, F)`` float features.
    probs
        ``(N, C)`` out-of-sample probabilities.
    model
        A loaded :class:`~tripwire.models.loading.Model`.
    data
        The :class:`~tripwire.io.Dataset` the items come from.
    queries
        ``(N, ...)`` model-space query inputs of one client, in arrival order.
    input_space
        The shared input-space embedding and neighbour graph of ``data`` (a scan builds
        one for all its detectors; see :meth:`space`).
    margins
        ``(epochs, N)`` margins of each item in each epoch of a training run on the
        data (:func:`~tripwire.models.train.train_model` with ``record_margins``).
    calibrators
        Positions of the items that run relabelled at random
        (:func:`~tripwire.detectors.poisoning.dynamics.record_dynamics`); their margins
        are against the planted labels.
    """

    labels: npt.NDArray[np.int64] | None = None
    features: npt.NDArray[np.floating[Any]] | None = None
    probs: npt.NDArray[np.floating[Any]] | None = None
    model: Model | None = None
    data: Dataset | None = None
    queries: npt.NDArray[np.floating[Any]] | None = None
    input_space: InputSpace | None = None
    margins: npt.NDArray[np.floating[Any]] | None = None
    calibrators: npt.NDArray[np.integer[Any]] | None = None

    def space(self, random_state: int = 0) -> InputSpace:
        """``data``'s shared :class:`InputSpace` where one was given, else a new one.

        Raises
        ------
        InputError
            No data, or a shared space over another number of items.
        """
        if self.data is None:
            raise InputError("needs the raw data for its input-space view", "input space")
        if self.input_space is None:
            return InputSpace(self.data.model_input(), random_state=random_state)
        if len(self.input_space) != len(self.data):
            raise InputError(
                f"the shared input space has {len(self.input_space)} items, the data "
                f"{len(self.data)}",
                "input space",
            )
        return self.input_space

    def available(self) -> frozenset[Need]:
        """The needs this input can satisfy."""
        have = {
            Need.LABELS: self.labels,
            Need.FEATURES: self.features,
            Need.PROBS: self.probs,
            Need.MODEL: self.model,
            Need.DATA: self.data,
            Need.QUERIES: self.queries,
            Need.DYNAMICS: self.margins,
        }
        return frozenset(k for k, v in have.items() if v is not None)

    def require(self, needs: frozenset[Need], detector: str) -> None:
        """Raise :class:`InputError` naming what ``detector`` needs but did not get."""
        missing = sorted(needs - self.available())
        if missing:
            raise InputError(
                f"needs {', '.join(missing)}, which the input does not provide", detector
            )
        lengths = {
            name: len(arr)
            for name, arr in (
                ("labels", self.labels),
                ("features", self.features),
                ("probs", self.probs),
            )
            if arr is not None
        }
        if len(set(lengths.values())) > 1:
            raise InputError(f"inputs disagree in length: {lengths}", detector)
        for name, arr in (("features", self.features), ("probs", self.probs)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise InputError(f"{name} contain NaN or infinite values", detector)


@dataclass(frozen=True)
class Calibration:
    """How a threshold was set, so that a reader can judge the flags.

    Attributes
    ----------
    method
        ``fpr``: the ``1 - target_fpr`` quantile of scores on clean reference data;
        ``robust-z``: median + ``z`` * 1.4826 * MAD of the scored items themselves;
        ``fixed``: a threshold the user gave;
        ``class-test``: flags only in classes that pass the detector's own class-level
        test (its ``details`` say which), at a fixed cut on scores built so;
        ``planted``: at an estimated false share among the flags, from items planted
        with the sought defect (``training-margin``'s calibrators).
    threshold
        Scores strictly above it are flagged.
    target_fpr
        The false-positive rate aimed at (``fpr`` method).
    n_reference
        How many scores the threshold was estimated from.
    """

    method: Literal["fpr", "robust-z", "fixed", "class-test", "planted"]
    threshold: float
    target_fpr: float | None = None
    n_reference: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threshold": float(self.threshold),
            "target_fpr": self.target_fpr,
            "n_reference": self.n_reference,
            "details": self.details,
        }


@dataclass(frozen=True)
class DetectorResult:
    """Scores, threshold, flags and evidence of one detector on one input.

    ``scores[i]`` is item ``i``'s suspicion (higher = more suspicious, always finite);
    ``flags[i]`` is ``scores[i] > threshold``.
    """

    detector: str
    threat: Threat
    scores: npt.NDArray[np.float64]
    threshold: float
    flags: npt.NDArray[np.bool_]
    calibration: Calibration
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> list[int]:
        """Positions of flagged items, sorted."""
        return [int(i) for i in np.flatnonzero(self.flags)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists, floats, no NumPy types)."""
        return {
            "detector": self.detector,
            "threat": str(self.threat),
            "scores": [float(s) for s in self.scores],
            "threshold": float(self.threshold),
            "flagged": self.flagged,
            "calibration": self.calibration.to_dict(),
            "evidence": self.evidence,
        }


@runtime_checkable
class Detector(Protocol):
    """The structural contract; :class:`BaseDetector` implements the plumbing."""

    name: ClassVar[str]
    threat: ClassVar[Threat]
    needs: ClassVar[frozenset[Need]]

    def fit(self, inputs: DetectorInput) -> Self: ...

    def score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]: ...

    def calibrate(self, reference: DetectorInput) -> Self: ...

    def detect(self, inputs: DetectorInput) -> DetectorResult: ...


def class_flag_counts(
    labels: npt.NDArray[np.int64] | None, flags: npt.NDArray[np.bool_]
) -> dict[int, dict[str, int]]:
    """Per class (all in class 0 without labels): its items and how many are flagged,
    the per-class evidence of a detector's report."""
    y = labels if labels is not None else np.zeros(len(flags), np.int64)
    return {
        int(c): {"items": int((y == c).sum()), "flagged": int(flags[y == c].sum())}
        for c in np.unique(y)
    }


def fitted_scores(
    inputs: DetectorInput,
    scores: npt.NDArray[np.float64],
    n_items: int,
    detector: str,
    why: str = "",
) -> npt.NDArray[np.float64]:
    """The scores a transductive detector computed in ``fit``, for that same data only.

    Detectors whose evidence is the fitted data's own structure (its clusters, copies or
    neighbourhoods) cannot score other items; another number of labelled items is refused.
    """
    if inputs.labels is None or len(inputs.labels) != n_items:
        raise InputError(f"scores only the data it was fitted on{why}", detector)
    return np.asarray(scores, dtype=np.float64)


class BaseDetector(ABC):
    """Shared plumbing: validation, calibration and the score-to-flags step.

    Subclasses set the class attributes ``name``, ``threat`` and ``needs`` and implement
    :meth:`_fit` and :meth:`_score` (and optionally :meth:`_evidence`). Constructors only
    store hyperparameters (scikit-learn's rule); fitted state ends in ``_``.

    Parameters
    ----------
    fpr
        Target false-positive rate when calibrating on clean reference data.
    z
        Robust z-score cut (median + z * MAD) used when no clean reference is given.
    """

    name: ClassVar[str]
    threat: ClassVar[Threat]
    needs: ClassVar[frozenset[Need]]
    #: Whether clean reference items may set the threshold (False where it is a class-
    #: or cluster-level test that reference items' scores cannot calibrate).
    reference_calibrated: ClassVar[bool] = True

    def __init__(self, *, fpr: float = 0.01, z: float = 3.5) -> None:
        self.fpr = fpr
        self.z = z

    # -- to implement ------------------------------------------------------------------
    @abstractmethod
    def _fit(self, inputs: DetectorInput) -> None:
        """Learn whatever the detector needs from ``inputs`` (set attributes ending in _)."""

    @abstractmethod
    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        """One finite score per item, higher = more suspicious."""

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        """Detector-specific evidence for the report (JSON-ready)."""
        return {}

    # -- the contract ------------------------------------------------------------------
    def fit(self, inputs: DetectorInput) -> Self:
        """Fit on ``inputs``; returns ``self``."""
        self._check_params()
        inputs.require(self.needs, self.name)
        self._fit(inputs)
        self.fitted_ = True
        return self

    def score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        """Score items of ``inputs`` (higher = more suspicious)."""
        if not getattr(self, "fitted_", False):
            raise NotFittedError("is not fitted: call fit() first", self.name)
        inputs.require(self.needs, self.name)
        scores = np.asarray(self._score(inputs), dtype=np.float64)
        if scores.ndim != 1 or not np.all(np.isfinite(scores)):
            raise RuntimeError(f"{self.name} produced non-finite or non-1-D scores")
        return scores

    def calibrate(self, reference: DetectorInput) -> Self:
        """Set the threshold at ``fpr`` on scores of clean ``reference`` items; a
        detector whose threshold is a class- or cluster-level test
        (:attr:`reference_calibrated` False) keeps it."""
        if not self.reference_calibrated:
            return self
        ref = self.score(reference)
        self.calibration_ = Calibration(
            method="fpr",
            threshold=threshold_at_fpr(ref, self.fpr),
            target_fpr=self.fpr,
            n_reference=int(ref.size),
        )
        return self

    def calibrate_fitted(self, inputs: DetectorInput, trusted: npt.ArrayLike) -> Self:
        """Set the threshold at ``fpr`` on the scores of the **fitted** items that
        ``trusted`` (a boolean mask over ``inputs``) marks as verified clean.

        Unlike a separate clean set (:meth:`calibrate`), verified items of the scanned
        data are scored as every other item is: in the same fit, the model trained on
        them, their features in-sample. A detector whose threshold is a class- or
        cluster-level test (:attr:`reference_calibrated` False) keeps it.

        The verified items cap the false-alarm rate; they do not loosen the robust
        threshold: :meth:`detect` takes the higher of the two. At 1% per detector the
        label checks' quorum flagged 0.8% of the clean items of full MNIST with 5% label
        flips (precision 0.87), where the robust thresholds flag fewer (precision 0.98,
        the same recall); on CIFAR-10 with a 71%-accurate model the robust thresholds
        flag 7% of clean data and the verified items' cut binds (docs/benchmarks.md,
        session 16).

        Raises
        ------
        InputError
            A mask of another length than the items, or one that marks none.
        """
        if not self.reference_calibrated:
            return self
        mask = np.asarray(trusted, dtype=bool)
        scores = self.score(inputs)
        if mask.shape != scores.shape:
            raise InputError(
                f"trusted mask has {mask.size} entries for {scores.size} items", self.name
            )
        if not mask.any():
            raise InputError("trusted mask marks no item", self.name)
        ref = scores[mask]
        self.calibration_ = Calibration(
            method="fpr",
            threshold=threshold_at_fpr(ref, self.fpr),
            target_fpr=self.fpr,
            n_reference=int(ref.size),
            details={"reference": "verified items of the scanned data", "floor": "robust-z"},
        )
        return self

    def detect(self, inputs: DetectorInput) -> DetectorResult:
        """Fit (if needed), score, threshold and explain ``inputs``."""
        if not getattr(self, "fitted_", False):
            self.fit(inputs)
        scores = self.score(inputs)
        calibration: Calibration | None = getattr(self, "calibration_", None)
        if calibration is None:
            calibration = self.default_calibration(scores)
        elif calibration.details.get("floor") == "robust-z":
            # A false-alarm cap (verified items): the default threshold still applies.
            floor = self.default_calibration(scores)
            if floor.threshold > calibration.threshold:
                calibration = Calibration(
                    method=floor.method,
                    threshold=floor.threshold,
                    n_reference=floor.n_reference,
                    details={
                        **floor.details,
                        "fpr_threshold": calibration.threshold,
                        "target_fpr": calibration.target_fpr,
                        "n_verified": calibration.n_reference,
                        "binding": f"{floor.method}, above the verified items' cut",
                    },
                )
        flags = scores > calibration.threshold
        return DetectorResult(
            detector=self.name,
            threat=self.threat,
            scores=scores,
            threshold=float(calibration.threshold),
            flags=flags,
            calibration=calibration,
            evidence=self._evidence(inputs, scores, flags),
        )

    def default_calibration(self, scores: npt.NDArray[np.float64]) -> Calibration:
        """The threshold without clean reference items: the robust cut of ``scores``
        (a detector with evidence of its own, such as planted items, overrides it)."""
        return Calibration(
            method="robust-z",
            threshold=robust_threshold(scores, self.z),
            n_reference=int(scores.size),
            details={"z": self.z},
        )

    def _check_params(self) -> None:
        if not 0.0 < self.fpr < 1.0:
            raise InputError(f"fpr must lie in (0, 1), got {self.fpr}", self.name)
        if self.z <= 0:
            raise InputError(f"z must be positive, got {self.z}", self.name)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to the constructor (for reports and benchmarks)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
