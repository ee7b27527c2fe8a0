"""Test doubles for the gateway: a small extraction monitor and a trigger check.

The monitor flags a client when most of its queries sit far from the reference data (an
out-of-distribution rate with a threshold calibrated at 1% FPR on the reference), which
catches uniform-noise extraction and leaves in-distribution clients alone. It follows the
``ExtractionMonitor`` contract, so the gateway cannot tell it from the real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors.calibration import threshold_at_fpr
from tripwire.detectors.extraction.base import (
    ClientState,
    Observation,
    QueryBatch,
    Reference,
)
from tripwire.reports.findings import Severity


@dataclass
class FakeState:
    query_count: int = 0
    n_far: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"query_count": self.query_count, "n_far": self.n_far}


class OODRateMonitor:
    """Alert (high) once a client's share of far-from-reference queries exceeds 50%."""

    state_budget = 256

    def __init__(self, min_queries: int = 50, severity: Severity = Severity.HIGH) -> None:
        self.min_queries = min_queries
        self.severity = severity

    def _dist(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        flat = x.reshape(len(x), -1).astype(np.float64)
        return np.asarray(np.linalg.norm(flat - self.mean_, axis=1))

    def fit(self, reference: Reference) -> OODRateMonitor:
        assert reference.x is not None
        self.mean_ = reference.x.reshape(len(reference.x), -1).astype(np.float64).mean(0)
        self.threshold_ = threshold_at_fpr(self._dist(reference.x), 0.01)
        return self

    def new_state(self) -> FakeState:
        return FakeState()

    def observe(self, state: ClientState, batch: QueryBatch) -> list[Observation]:
        assert isinstance(state, FakeState)
        state.query_count += len(batch.x)
        state.n_far += int((self._dist(batch.x) > self.threshold_).sum())
        rate = state.n_far / state.query_count
        alert = state.query_count >= self.min_queries and rate > 0.5
        return [
            Observation(
                detector="fake-ood",
                rule_id="TW399",
                score=rate,
                severity=self.severity if alert else None,
                atlas=("AML.T0024.002",),
                evidence={"far_rate": round(rate, 4), "threshold": self.threshold_},
            )
        ]

    def dumps(self, state: ClientState) -> bytes:
        assert isinstance(state, FakeState)
        return json.dumps(state.to_dict()).encode()

    def loads(self, data: bytes) -> FakeState:
        return FakeState(**json.loads(data))

    def correlate(self, states: dict[str, ClientState]) -> list[Observation]:
        # Split budgets: several ids, each below the query minimum, mostly far queries.
        far = {
            c: s
            for c, s in states.items()
            if isinstance(s, FakeState)
            and 0 < s.query_count < self.min_queries
            and s.n_far > s.query_count / 2
        }
        total = sum(s.n_far for s in far.values())
        if len(far) >= 3 and total >= 2 * self.min_queries:
            return [
                Observation(
                    detector="fake-correlation",
                    rule_id="TW398",
                    score=1.0,
                    severity=Severity.MEDIUM,
                    atlas=("AML.T0024.002",),
                    evidence={"n_far_total": total},
                    clients=tuple(sorted(far)),
                )
            ]
        return []

    def drift(self, states: dict[str, ClientState]) -> dict[str, Any]:
        n = sum(s.query_count for s in states.values() if isinstance(s, FakeState))
        far = sum(s.n_far for s in states.values() if isinstance(s, FakeState))
        return {"queries": n, "far_rate": far / n if n else 0.0}


class LogitTrigger:
    """Flags inputs whose class-0 logit is above its clean 95th percentile."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def score_outputs(
        self, logits: npt.NDArray[np.float32], features: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float64]:
        return np.asarray(logits[:, 0], dtype=np.float64)
