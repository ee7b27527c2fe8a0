"""One verdict per sample from many detectors, without being told the poison rate.

A union of flags adds up every detector's false alarms: on clean MNIST activations the
robust thresholds of the single-item outlier detectors (spectre, feature-outlier) flag
10-20% of the data (docs/benchmarks.md), so the union is useless to a reviewer. The
ensemble therefore weighs *how* each detector reached its flags:

- **self-gated** detectors (``self_gated = True`` on the class: activation clustering,
  dual-space) only flag items after a class-level test has fired (a well-separated small
  cluster; a cluster whose inputs look like other classes). Their flags stand alone;
- every other detector's flags stand only where a **second detector** flags the same
  item. Independent evidence rarely errs on the same clean item, and a real poison or a
  real label error usually trips more than one view (label detectors corroborate each
  other on flips, the feature-space detectors on backdoor poisons).

The combined score (for ranking and PR curves) is each detector's score on a common
scale, ``(score - median) / (threshold - median)`` so that 1.0 is "at that detector's
threshold", maximised over detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors import DetectorResult, get
from tripwire.errors import TripwireError

#: Detectors that must agree before an item flagged by a non-gated detector is kept.
MIN_VOTES = 2


@dataclass
class EnsembleResult:
    """The ensemble's verdict; ``rule`` says in words how flags were decided."""

    scores: npt.NDArray[np.float64]
    flags: npt.NDArray[np.bool_]
    votes: npt.NDArray[np.int64]
    gated: list[str] = field(default_factory=list)
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "self_gated": self.gated, "min_votes": MIN_VOTES}


def is_self_gated(name: str) -> bool:
    """Whether the registered detector ``name`` gates its flags by a class-level test."""
    try:
        return bool(getattr(get(name), "self_gated", False))
    except TripwireError:
        return False


def common_scale(result: DetectorResult) -> npt.NDArray[np.float64]:
    """Scores shifted by their median and divided by the distance to the threshold."""
    scores = np.asarray(result.scores, dtype=np.float64)
    med = float(np.median(scores))
    span = result.threshold - med
    return (scores - med) / span if span > 0 else np.zeros_like(scores)


def combine(results: dict[str, DetectorResult], n: int) -> EnsembleResult:
    """Combine detector results over ``n`` items (see the module docstring)."""
    if not results:
        return EnsembleResult(
            scores=np.zeros(n), flags=np.zeros(n, dtype=bool), votes=np.zeros(n, np.int64)
        )
    scores = np.max(np.vstack([common_scale(r) for r in results.values()]), axis=0)
    votes = np.sum([np.asarray(r.flags, dtype=np.int64) for r in results.values()], axis=0)
    gated = sorted(name for name in results if is_self_gated(name))
    flags = votes >= MIN_VOTES
    for name in gated:
        flags |= np.asarray(results[name].flags, dtype=bool)
    rule = (
        f"flagged by a self-gated detector ({', '.join(gated) or 'none ran'}) or by at "
        f"least {MIN_VOTES} detectors"
    )
    return EnsembleResult(
        scores=scores, flags=flags, votes=np.asarray(votes, np.int64), gated=gated, rule=rule
    )
