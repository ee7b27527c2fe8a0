"""The run-time trigger check: a per-request hook that flags backdoor-triggered inputs.

The gateway knows only this small protocol; the detector itself lives in
``tripwire.detectors.backdoor.input_trigger``. Any object with a calibrated
``threshold`` and ``score_outputs(logits, features)`` fits: scores above the threshold
flag the input, and each request with flagged inputs raises its own alert.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError
from tripwire.reports import Rule, Severity, register_rule

#: Detector name and ATLAS technique of the alerts the trigger check raises.
TRIGGER_DETECTOR = "input-trigger"
TRIGGER_RULE = "TW250"
TRIGGER_ATLAS = ("AML.T0043.004",)

register_rule(
    Rule(
        id=TRIGGER_RULE,
        name="triggered-input",
        short_description="A served input carries what looks like a backdoor trigger",
        help=(
            "Scan the model (tripwire scan-model) and repair it (tripwire repair); "
            "review the client's requests in the query log."
        ),
        default_severity=Severity.MEDIUM,
        atlas=TRIGGER_ATLAS,
    )
)


class ReferenceTriggerCheck:
    """Tier 1 of :class:`~tripwire.detectors.backdoor.input_trigger.TriggeredInputDetector`
    as a gateway hook, fitted on the gateway's own model and ``--reference`` data.

    Only the cheap tier runs per request (it reuses the serving pass's logits and
    features); its threshold is the detector's, calibrated to ``frr`` on held-out clean
    reference inputs.
    """

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.threshold = float(detector.feature_calibration_.threshold)

    @classmethod
    def fit(
        cls, model: Any, x: npt.NDArray[np.float32], frr: float = 0.01
    ) -> ReferenceTriggerCheck:
        from tripwire.detectors.backdoor.input_trigger import TriggeredInputDetector

        return cls(TriggeredInputDetector(frr=frr).fit(model, x))

    def score_outputs(
        self, logits: npt.NDArray[np.float32], features: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float64]:
        feats = logits if features is None else features
        return np.asarray(self.detector.score_outputs(logits, feats), dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        # Handed to the gateway's monitor process without the model: the tier run here
        # scores the serving pass's outputs and never calls the model (STRIP would).
        detector = copy.copy(self.detector)
        detector.model_ = None
        return {"detector": detector, "threshold": self.threshold}


@runtime_checkable
class TriggerCheck(Protocol):
    """Scores one batch from the model's outputs; higher = more likely triggered.

    ``threshold`` was calibrated on clean inputs (a false-positive rate), never guessed.
    ``features`` is ``None`` where the backend has none (an upstream server).
    """

    threshold: float

    def score_outputs(
        self, logits: npt.NDArray[np.float32], features: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float64]: ...


def flagged(
    check: TriggerCheck, logits: npt.NDArray[np.float32], features: npt.NDArray[np.float32] | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Scores and flags of one batch.

    Raises
    ------
    ValueError
        The check returned scores of the wrong shape.
    """
    scores = np.asarray(check.score_outputs(logits, features), dtype=np.float64).reshape(-1)
    if scores.shape[0] != logits.shape[0]:
        raise ValueError(
            f"the trigger check returned {scores.shape[0]} scores for {logits.shape[0]} inputs"
        )
    return scores, scores > float(check.threshold)


def load_trigger_check(spec: str, **kwargs: Any) -> TriggerCheck:
    """A trigger check from ``module:factory`` (called with ``kwargs``), or from a saved
    detector file read by ``tripwire.detectors.backdoor.input_trigger.load``.

    Raises
    ------
    InputError
        Nothing at ``spec``, or an object that does not follow :class:`TriggerCheck`.
    """
    if ":" in spec and not spec.startswith(("/", ".")) and "/" not in spec.split(":", 1)[0]:
        mod_name, attr = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"cannot import the trigger check ({exc})", spec) from None
        obj = factory(**kwargs)
    else:
        try:
            mod = importlib.import_module("tripwire.detectors.backdoor.input_trigger")
            load = mod.load
        except (ImportError, AttributeError):
            raise InputError(
                "the run-time trigger detector (tripwire.detectors.backdoor.input_trigger) "
                "is not available in this version; pass module:factory instead",
                spec,
            ) from None
        obj = load(spec, **kwargs)
    if not isinstance(obj, TriggerCheck):
        raise InputError("is not a trigger check (needs threshold and score_outputs)", spec)
    return obj


__all__ = [
    "TRIGGER_ATLAS",
    "TRIGGER_DETECTOR",
    "TRIGGER_RULE",
    "ReferenceTriggerCheck",
    "TriggerCheck",
    "flagged",
    "load_trigger_check",
]
