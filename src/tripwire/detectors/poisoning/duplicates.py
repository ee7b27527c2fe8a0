"""Ingestion screen: the same (or nearly the same) input delivered under different labels.

A relabelled copy of a clean sample is the cheapest poison there is, and a merge of two
vendors' deliveries often repeats samples. Exact copies are found by hashing the bytes
of each stored sample; near copies (re-encoded, resized by a pixel, lightly noised) by
nearest neighbours in a small input embedding, where a near copy sits much closer than
the sample's ordinary neighbours.

Score of an item: the share of its copies (exact or near) that carry a *different*
label, plus 1 when it has any such copy, so that every conflicting item scores above 1
and the fixed threshold 1 needs no tuning; items without a conflicting copy score 0
(copies that agree are counted in the evidence, not flagged). Its flags stand alone in
the ensemble: a conflict between two copies is a fact, not a statistical guess.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tripwire.detectors.base import (
    BaseDetector,
    Calibration,
    DetectorInput,
    Need,
    Threat,
    fitted_scores,
)
from tripwire.detectors.input_space import InputSpace
from tripwire.detectors.poisoning.spectral import integer_labels
from tripwire.detectors.registry import register
from tripwire.errors import InputError


def exact_groups(x: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Group id per item: equal ids for byte-identical samples."""
    arr = np.ascontiguousarray(x)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in arr]
    _, inverse = np.unique(np.array(digests, dtype=object).astype("S16"), return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).ravel()


def near_pairs(
    space: InputSpace, ratio: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs ``(i, j)`` whose distance in input space is below ``ratio`` times the median
    distance of items to their nearest neighbour (a near copy sits far closer than
    ordinary neighbours); each item's five nearest others are examined."""
    n = len(space)
    if n < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dist, idx = space.neighbours(6)
    typical = float(np.median(dist[:, 1]))
    if typical <= 0:
        typical = float(np.mean(dist[:, 1])) or 1.0
    close = (dist[:, 1:] < ratio * typical) & (dist[:, 1:] > 0)
    rows, cols = np.nonzero(close)
    return rows.astype(np.int64), idx[:, 1:][rows, cols].astype(np.int64)


@register
class DuplicateLabelDetector(BaseDetector):
    """Flag items that have an exact or near copy under another label.

    Needs ``labels`` and ``data`` (the raw samples as stored).

    Parameters
    ----------
    near_ratio
        A pair is a near copy when closer than this share of the median
        nearest-neighbour distance; 0 turns the near-copy search off.
    """

    name: ClassVar[str] = "duplicate-labels"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.LABELS, Need.DATA})
    #: A label conflict needs no calibration: the fixed threshold stands.
    reference_calibrated: ClassVar[bool] = False

    def __init__(self, *, near_ratio: float = 0.1, fpr: float = 0.01, z: float = 3.5) -> None:
        super().__init__(fpr=fpr, z=z)
        self.near_ratio = near_ratio

    def _check_params(self) -> None:
        super()._check_params()
        if not 0.0 <= self.near_ratio < 1.0:
            raise InputError("near_ratio must lie in [0, 1)", self.name)

    def _fit(self, inputs: DetectorInput) -> None:
        if inputs.labels is None or inputs.data is None:
            raise InputError("needs labels and data", self.name)
        y = integer_labels(inputs.labels, self.name)
        if len(inputs.data) != y.shape[0]:
            raise InputError("needs the raw data, one item per label", self.name)
        n = y.shape[0]
        groups = exact_groups(inputs.data.x)
        conflicts = np.zeros(n, dtype=np.float64)
        copies = np.zeros(n, dtype=np.float64)
        # Exact copies: per group, how many members carry another label.
        order = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.diff(groups[order])) + 1
        for members in np.split(order, bounds):
            if members.size < 2:
                continue
            labels = y[members]
            for m, lab in zip(members, labels, strict=True):
                copies[m] += members.size - 1
                conflicts[m] += float(np.sum(labels != lab))
        n_near = 0
        if self.near_ratio > 0:
            rows, cols = near_pairs(inputs.space(), self.near_ratio)
            distinct = groups[rows] != groups[cols]  # exact copies are counted above
            rows, cols = rows[distinct], cols[distinct]
            n_near = int(rows.size)
            np.add.at(copies, rows, 1.0)
            np.add.at(conflicts, rows, (y[rows] != y[cols]).astype(np.float64))
        share = np.divide(conflicts, copies, out=np.zeros(n), where=copies > 0)
        self.scores_ = share + (conflicts > 0)
        self.n_copies_ = copies
        self.n_exact_groups_ = int(np.sum(np.bincount(groups) > 1))
        self.n_near_pairs_ = n_near
        self.calibration_ = Calibration(
            method="fixed",
            threshold=1.0,
            n_reference=n,
            details={"why": "an item scores above 1 exactly when a copy has another label"},
        )

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        return fitted_scores(inputs, self.scores_, self.scores_.shape[0], self.name)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        return {
            "exact_duplicate_groups": self.n_exact_groups_,
            "near_duplicate_pairs": self.n_near_pairs_,
            "items_with_copies": int(np.sum(self.n_copies_ > 0)),
            "items_with_conflicting_copies": int(flags.sum()),
        }
