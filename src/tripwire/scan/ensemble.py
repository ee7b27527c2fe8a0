"""One verdict per sample from many detectors, without being told the poison rate.

A union of flags adds up every detector's false alarms: on clean MNIST activations the
robust thresholds of the single-item outlier detectors (spectre, feature-outlier) flag
10-20% of the data, and two of them agree on the same clean outliers, so "any two
detectors agree" still flagged 10% of clean data (docs/benchmarks.md). The ensemble
instead groups detectors into **families** of complementary methods for one threat and
asks each family for a quorum:

========================  ==========================================  ======
family                    members                                     quorum
========================  ==========================================  ======
``labels``                confident-learning, knn-label               2
``feature-clusters``      activation-clustering, spectral-signature   2
``dual-space``            dual-space                                  1
``duplicates``            duplicate-labels                            1
``outliers``              spectre, feature-outlier                    rank
========================  ==========================================  ======

- within ``labels`` and ``feature-clusters`` the two members look at the same threat
  through different statistics (out-of-sample probabilities vs neighbours; a 2-means
  split vs the top singular direction), so their agreement is evidence and their lone
  flags are mostly each method's own false alarms;
- ``dual-space`` and ``duplicate-labels`` flag only after a class-level test or a fact
  (a cluster whose inputs look like other classes; a copy under another label);
- ``outliers`` only rank (they raise the combined score) unless they are all that ran;
- a detector the table does not know (a plug-in) is a family of its own, quorum 1;
- where fewer members of a family ran than its quorum (``--detectors`` chose them),
  the quorum is the number that ran: a user who runs one detector gets its flags.

The combined score (for ranking and PR curves) is each detector's score on a common
scale, ``(score - median) / (threshold - median)`` so that 1.0 is "at that detector's
threshold", maximised over detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors import DetectorResult

#: family -> (quorum, members); quorum 0 means "ranks only".
FAMILIES: dict[str, tuple[int, frozenset[str]]] = {
    "labels": (2, frozenset({"confident-learning", "knn-label"})),
    "feature-clusters": (2, frozenset({"activation-clustering", "spectral-signature"})),
    "dual-space": (1, frozenset({"dual-space"})),
    "duplicates": (1, frozenset({"duplicate-labels"})),
    # Its own confirmation (input-space neighbours) gates its flags.
    "behaviour": (1, frozenset({"perturbation-consistency"})),
    "outliers": (0, frozenset({"spectre", "feature-outlier"})),
}


def family_of(detector: str) -> tuple[str, int]:
    """The family a detector belongs to and that family's quorum."""
    for name, (quorum, members) in FAMILIES.items():
        if detector in members:
            return name, quorum
    return detector, 1


@dataclass
class EnsembleResult:
    """The ensemble's verdict; ``families`` says how each family voted."""

    scores: npt.NDArray[np.float64]
    flags: npt.NDArray[np.bool_]
    votes: npt.NDArray[np.int64]
    families: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "flagged when any family reaches its quorum of member detectors",
            "families": self.families,
        }


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
    grouped: dict[str, list[str]] = {}
    quorums: dict[str, int] = {}
    for name in sorted(results):
        fam, quorum = family_of(name)
        grouped.setdefault(fam, []).append(name)
        quorums[fam] = quorum
    ranking_only = {f for f, q in quorums.items() if q == 0}
    flags = np.zeros(n, dtype=bool)
    report: dict[str, dict[str, Any]] = {}
    for fam, members in grouped.items():
        quorum = min(quorums[fam], len(members))
        if fam in ranking_only and len(ranking_only) == len(grouped):
            quorum = 1  # only ranking detectors ran: the user asked for their flags
        fam_votes = np.sum([np.asarray(results[m].flags, np.int64) for m in members], axis=0)
        fam_flags = fam_votes >= quorum if quorum else np.zeros(n, dtype=bool)
        flags |= fam_flags
        report[fam] = {
            "members": members,
            "quorum": quorum if quorum else "ranks only",
            "flagged": int(fam_flags.sum()),
        }
    return EnsembleResult(
        scores=scores, flags=flags, votes=np.asarray(votes, np.int64), families=report
    )
