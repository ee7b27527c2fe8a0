"""Detectors: one small contract (:mod:`tripwire.detectors.base`), folders by threat."""

from tripwire.detectors.base import (
    BaseDetector,
    Calibration,
    Detector,
    DetectorInput,
    DetectorResult,
    Need,
    Threat,
)
from tripwire.detectors.calibration import (
    empirical_p_values,
    robust_threshold,
    robust_z,
    threshold_at_fpr,
)
from tripwire.detectors.registry import available, get, register

__all__ = [
    "BaseDetector",
    "Calibration",
    "Detector",
    "DetectorInput",
    "DetectorResult",
    "Need",
    "Threat",
    "available",
    "empirical_p_values",
    "get",
    "register",
    "robust_threshold",
    "robust_z",
    "threshold_at_fpr",
]
