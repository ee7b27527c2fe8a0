"""The streaming contract between the serving gateway and the extraction detectors.

The gateway (``tripwire.gateway``) knows nothing about how extraction is detected; it
hands each answered request of a client to an :class:`ExtractionMonitor` together with
that client's :class:`ClientState`, stores the state again, and turns the returned
:class:`Observation` objects into alerts (severity low or above) or timeline entries
(severity ``None``). The detectors know nothing about HTTP, storage or clients' identity.

Why this split: per-client state must survive restarts and be shared by several gateway
replicas (SQLite or Redis), so it is plain bytes at the boundary, with a fixed size
budget, never a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tripwire.reports.findings import Severity

#: Default size budget of one client's serialised state (bytes).
DEFAULT_STATE_BUDGET = 64 * 1024


@dataclass(frozen=True)
class Reference:
    """What the detectors may know of the model and its training distribution.

    Attributes
    ----------
    x
        A sample of the training distribution, float32 ``(N, ...)`` in [0, 1]; may be
        ``None`` when the gateway was started without ``--reference``.
    probs
        The model's class probabilities on ``x``, ``(N, C)``; ``None`` with ``x``.
    n_classes
        Number of classes the model predicts.
    input_shape
        Shape of one input, without the batch axis.
    """

    x: npt.NDArray[np.float32] | None
    probs: npt.NDArray[np.float32] | None
    n_classes: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class QueryBatch:
    """One answered request of one client.

    Attributes
    ----------
    x
        The request's inputs, float32 ``(n, ...)``; counting is per sample.
    probs
        The probabilities the model returned (before any degradation), ``(n, C)``.
    t
        Arrival time, seconds since the epoch.
    """

    x: npt.NDArray[np.float32]
    probs: npt.NDArray[np.float32]
    t: float


@dataclass(frozen=True)
class Observation:
    """Something a detector noticed about one client (or a group of clients).

    ``severity`` ``None`` means a weak observation for the client's timeline only; low or
    above becomes an alert. ``score`` follows the house convention: higher = more
    suspicious, in [0, 1] where the detector can say so.
    """

    detector: str
    rule_id: str
    score: float
    severity: Severity | None
    atlas: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    clients: tuple[str, ...] = ()  # set by cross-client detectors; empty = the client observed

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "rule_id": self.rule_id,
            "score": float(self.score),
            "severity": None if self.severity is None else str(self.severity),
            "atlas": list(self.atlas),
            "evidence": self.evidence,
            "clients": list(self.clients),
        }


@runtime_checkable
class ClientState(Protocol):
    """A client's detector state: opaque to the gateway, bounded, serialisable."""

    @property
    def query_count(self) -> int:
        """Cumulative number of samples this client queried."""
        ...


@runtime_checkable
class ExtractionMonitor(Protocol):
    """The one object the gateway drives. Implementations: ``tripwire.detectors.extraction``.

    Rules: ``fit`` returns self and is the only place that looks at the reference;
    ``observe`` mutates the state it is given and must be fast (it runs after the
    response, but on the serving process); ``dumps`` output never exceeds
    ``state_budget`` bytes, and ``loads(dumps(s))`` behaves exactly as ``s``.
    """

    state_budget: int

    def fit(self, reference: Reference) -> ExtractionMonitor: ...

    def new_state(self) -> ClientState: ...

    def observe(self, state: ClientState, batch: QueryBatch) -> list[Observation]: ...

    def dumps(self, state: ClientState) -> bytes: ...

    def loads(self, data: bytes) -> ClientState: ...

    def correlate(self, states: dict[str, ClientState]) -> list[Observation]:
        """Cross-client observations (split budgets), over the active clients' states."""
        ...

    def drift(self, states: dict[str, ClientState]) -> dict[str, Any]:
        """Population drift of all traffic against the reference, as a JSON-able report."""
        ...
