"""Per-client streaming detectors of model extraction.

The gateway drives an :class:`~tripwire.detectors.extraction.base.ExtractionMonitor`;
:func:`default_monitor` builds the one tripwire ships (PRADA, query-distribution
detectors and the learned stream classifier), :func:`prada_monitor` plain PRADA (the
baseline). See :mod:`tripwire.detectors.extraction.monitor`.
"""

from __future__ import annotations

from typing import Any

from tripwire.detectors.extraction.base import (
    DEFAULT_STATE_BUDGET,
    ClientState,
    ExtractionMonitor,
    Observation,
    QueryBatch,
    Reference,
)
from tripwire.detectors.extraction.classifier import FEATURES, StreamClassifier
from tripwire.detectors.extraction.monitor import StreamMonitor
from tripwire.detectors.extraction.state import StreamState


def default_monitor(**options: Any) -> StreamMonitor:
    """The shipped monitor, unfitted (call ``fit(reference)``); options: :class:`StreamMonitor`."""
    return StreamMonitor(**options)


def prada_monitor(**options: Any) -> StreamMonitor:
    """Plain PRADA (Juuti et al., 2019) as an alerting monitor: the baseline."""
    options.setdefault("classifier", None)
    options.setdefault("prada_alerts", True)
    return StreamMonitor(**options)


__all__ = [
    "DEFAULT_STATE_BUDGET",
    "FEATURES",
    "ClientState",
    "ExtractionMonitor",
    "Observation",
    "QueryBatch",
    "Reference",
    "StreamClassifier",
    "StreamMonitor",
    "StreamState",
    "default_monitor",
    "prada_monitor",
]
