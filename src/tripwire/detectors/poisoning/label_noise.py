"""Label problems: items whose label disagrees with the data.

Two detectors of flipped or wrong labels, random or adversarial:

- ``confident-learning`` reads out-of-sample class probabilities. Per-class thresholds
  (the mean probability a model gives a class on the items labelled with it) decide
  which class an item *confidently* belongs to; the items confidently in a class other
  than their label fill the off-diagonal cells of the *confident joint*, which,
  calibrated to the label counts, says how many items of each label are likely of each
  other class (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty
  in Dataset Labels", JAIR 2021). That many items are the label issues: those most
  likely mislabelled under the noise the same joint describes (Bayes' rule with the
  joint's transition probabilities), where Northcutt et al. take each cell's count by
  margin (*pruning by noise rate*, as cleanlab does). Two departures for a model that
  memorised the flips: items whose label is decisively less probable than their most
  probable class are counted even below every threshold where they outnumber the
  calibration's estimate (:func:`calibrated_joint`), and the count is rounded as a
  whole, not cell by cell (with many classes the cells of random flips hold about one
  item each, and per-cell rounding drops the calibration's share).
- ``knn-label`` reads features: an item whose nearest neighbours carry other labels is
  suspect (a k-nearest-neighbour label-disagreement filter, in the spirit of Wilson's
  edited nearest neighbours and of Paudice et al., "Label Sanitization against Label
  Flipping Poisoning Attacks", 2018).

Both need the inputs to reflect the data, not the labels: probabilities must come from
models that did not train on the item (cross-validation), features from an embedding
trained without the labels or robust to their noise.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors.base import BaseDetector, DetectorInput, Need, Threat
from tripwire.detectors.input_space import without_self
from tripwire.detectors.neighbours import nearest_neighbours
from tripwire.detectors.poisoning.spectral import features_and_labels, integer_labels
from tripwire.detectors.projection import principal_subspace
from tripwire.detectors.registry import register
from tripwire.errors import InputError

#: Extra score of a label issue (see :func:`noise_rate_issues`).
OFF_DIAGONAL_OFFSET = 2.0

#: How far probability rows may be from summing to one before they are refused.
_ROW_SUM_TOLERANCE = 1e-3


def probs_and_labels(
    inputs: DetectorInput, detector: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``(N, C)`` row-normalised probabilities and ``(N,)`` labels in ``[0, C)``.

    Raises
    ------
    InputError
        Missing inputs, probabilities that are not 2-D, negative or do not sum to one
        (within 1e-3; smaller deviations are normalised away), fewer than two classes,
        or labels outside the probability columns.
    """
    if inputs.probs is None or inputs.labels is None:
        raise InputError("needs probs and labels", detector)
    p = np.asarray(inputs.probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"probs must be (N, C) with C >= 2, got shape {p.shape}", detector)
    if np.any(p < 0.0):
        raise InputError("probs must be non-negative", detector)
    sums = p.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE):
        raise InputError("probs rows must sum to 1 (pass probabilities, not logits)", detector)
    y = integer_labels(inputs.labels, detector)
    if y.size and (int(y.min()) < 0 or int(y.max()) >= p.shape[1]):
        raise InputError(f"labels must lie in [0, {p.shape[1]}) to index probs", detector)
    return p / sums[:, None], y


def per_class_thresholds(
    probs: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """``t_j``: mean predicted probability of class ``j`` over items labelled ``j``;
    ``inf`` (never confident) for classes no item is labelled with."""
    n_cls = probs.shape[1]
    counts = np.bincount(labels, minlength=n_cls).astype(np.float64)
    sums = np.zeros(n_cls)
    np.add.at(sums, labels, probs[np.arange(labels.size), labels])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.inf)


#: An item whose probability reaches no class's threshold is still counted against its
#: label where its most probable class is at least this many times as probable as the
#: label: a likelihood ratio of 100, "decisive" on Jeffreys' scale (see
#: :func:`confident_classes`).
DECISIVE_RATIO = 100.0


def confident_classes(
    probs: npt.NDArray[np.float64],
    thresholds: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """For each item, the most probable class among those whose probability reaches
    their threshold; -1 when no class does.

    With ``labels``, an item that reaches no threshold but whose most probable class
    is at least :data:`DECISIVE_RATIO` times as probable as its label is counted in
    that class. A model that memorised a flipped label pulls the item's probability of
    its true class below that class's average confidence (the threshold) while the
    label stays all but ruled out: on the GTSRB subset with 5% random flips, 44% of the
    flips reached no threshold against 18% of the clean items, and the calibrated joint
    counted 438 of 616; the clean items that reach none are mostly ambiguous between
    classes, their likelihood ratios small (see :func:`calibrated_joint`).
    """
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -1.0)
    best = np.argmax(masked, axis=1).astype(np.int64)
    out = np.where(above.any(axis=1), best, -1)
    if labels is not None:
        decisive = _decisive_classes(probs, labels, out)
        out = np.where(decisive >= 0, decisive, out)
    return np.asarray(out, dtype=np.int64)


def _decisive_classes(
    probs: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], confident: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Each item's most probable class where it reaches no threshold (``confident`` is
    -1) and its label is at least :data:`DECISIVE_RATIO` times less probable; -1
    elsewhere."""
    rows = np.arange(labels.size)
    top = np.argmax(probs, axis=1).astype(np.int64)
    hit = (
        (confident < 0)
        & (top != labels)
        & (probs[rows, top] >= DECISIVE_RATIO * probs[rows, labels])
    )
    return np.asarray(np.where(hit, top, -1), dtype=np.int64)


def confident_joint(
    labels: npt.NDArray[np.int64], confident: npt.NDArray[np.int64], n_classes: int
) -> npt.NDArray[np.int64]:
    """``C[i, j]``: items labelled ``i`` that are confidently of class ``j``."""
    ok = confident >= 0
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[ok], confident[ok]), 1)
    return joint


def calibrated_joint(
    probs: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    thresholds: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The confident joint with each row rescaled to the number of items with that label:
    ``Q[i, j]`` estimates how many items labelled ``i`` are of class ``j``.

    The raw joint undercounts (an item whose probability reaches no threshold is in no
    cell); the calibrated one does not (Northcutt et al., section 2.2): the items of a
    label that reach no threshold are shared out as its confident items are. Where a
    label's items below every threshold hold more items whose label is decisively
    contradicted (:func:`confident_classes` with labels) than that share-out puts off
    the diagonal, those items are counted instead, one each, in their cells, and the
    rest of the label's items on its diagonal: a model that memorised flipped labels
    keeps the flips below their classes' thresholds more often than the clean items
    (the GTSRB subset: 44% against 18%), so the share-out of the confident items'
    mix undercounts them (438 of 616). Elsewhere the share-out stands (full MNIST: it
    already counts as many as there are).
    """
    n_cls = probs.shape[1]
    confident = confident_classes(probs, thresholds)
    decisive_to = _decisive_classes(probs, labels, confident)
    decisive = decisive_to >= 0
    joint = confident_joint(labels, confident, n_cls).astype(np.float64)
    labelled = np.bincount(labels, minlength=n_cls).astype(np.float64)
    rows = joint.sum(axis=1)
    below = labelled - rows  # items that reach no threshold, decisive ones included
    share = joint / np.where(rows > 0, rows, 1.0)[:, None]
    shared = joint + share * below[:, None]
    counted = joint + confident_joint(labels[decisive], decisive_to[decisive], n_cls)
    diag = np.arange(n_cls)
    counted[diag, diag] += labelled - counted.sum(axis=1)
    off_shared = shared.sum(axis=1) - np.diag(shared)
    off_counted = counted.sum(axis=1) - np.diag(counted)
    out = np.where((off_counted > off_shared)[:, None], counted, shared)
    return np.asarray(np.where(rows[:, None] > 0, out, 0.0), dtype=np.float64)


def label_error_posterior(
    probs: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], joint: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``P(true class != given label | x, given)`` under the noise that ``joint`` (a
    calibrated joint of given x true counts) estimates, in [0, 1].

    With ``T[i, j] = P(given i | true j)`` (``joint``'s columns normalised) and the
    out-of-sample probabilities standing in for ``P(true j | x)``, Bayes' rule gives
    ``P(true = y | x, given y) = p_y T[y, y] / sum_j p_j T[y, j]``. Where the noise is
    diffuse (random flips) ``T`` is near the identity and this orders items by their
    own probability ``p_y``; where it is structured (flips from one class to one
    other) ``T[y, j]`` is large for the few source classes, and the items that look
    like a source of their label come first: the clean items of the source class, whose
    ``p_y`` is as low (the proxy learnt the flips too), do not.
    """
    cols = joint.sum(axis=0, keepdims=True)
    transition = np.where(cols > 0, joint / np.where(cols > 0, cols, 1.0), 0.0)
    rows = np.arange(labels.size)
    weighted = probs * transition[labels, :]
    total = weighted.sum(axis=1)
    own = weighted[rows, labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(total > 0, 1.0 - own / np.where(total > 0, total, 1.0), 0.0)
    return np.asarray(np.clip(err, 0.0, 1.0), dtype=np.float64)


def noise_rate_issues(
    probs: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    thresholds: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The label issues and the number estimated per (given, likely) cell.

    The calibrated confident joint's off-diagonal cells say how many items labelled
    ``i`` are likely of class ``j`` (Northcutt et al.'s count; returned rounded per
    cell). Their sum, rounded, is the number of issues: those most likely mislabelled by
    :func:`label_error_posterior` under the noise the same joint describes, at most all
    but one of each label. Northcutt et al. (and cleanlab's ``find_label_issues``)
    instead take each cell's count by margin inside the cell; with diffuse noise most
    cells hold an item or two, whose rounding errors add up (docs/benchmarks.md,
    session 14: the label family's errors against cleanlab's on the same
    probabilities).
    """
    joint = calibrated_joint(probs, labels, thresholds)
    prune = np.rint(joint).astype(np.int64)
    np.fill_diagonal(prune, 0)
    issues = np.zeros(labels.size, dtype=bool)
    # The total is rounded, not each cell: with many classes most cells of diffuse
    # noise hold one item scaled up by the calibration (GTSRB's 43 classes, 5% random
    # flips: median 1.26), and rounding each drops that share (438 estimated, 362
    # after rounding each cell).
    total = int(np.rint(joint.sum() - np.trace(joint)))
    if total == 0:
        return issues, prune
    # At least one item keeps each label: a class is never pruned away.
    budget = np.maximum(np.bincount(labels, minlength=probs.shape[1]) - 1, 0)
    order = np.argsort(-label_error_posterior(probs, labels, joint), kind="stable")
    given = labels[order]
    # Each item's place among the items of its label, in that order.
    by_label = np.argsort(given, kind="stable")
    place = np.empty_like(by_label)
    place[by_label] = np.arange(by_label.size) - np.searchsorted(given[by_label], given[by_label])
    issues[order[place < budget[given]][:total]] = True
    return issues, prune


#: A (given, likely) cell of the calibrated joint with fewer estimated items is
#: diffuse noise, left to the count; from this many on, :func:`flip_groups` measures
#: its group (clean bundled MNIST: at most 2 per cell).
MIN_GROUP_CELL = 5
#: ... and the group found stands where it is at least this share of its given label
#: (the ensemble's sub-population share).
MIN_GROUP_SHARE = 0.05
#: A flip group's members look at least as much like their source class as this share
#: of the source's own items do (:func:`group_share`).
SOURCE_QUANTILE = 0.9
#: ... and the share estimated on the narrower sets that these shares of the source's
#: items pass is at least :data:`CORE_AGREEMENT` of it (mixture proportion estimation's
#: own check, Blanchard et al.: the share of a true component is the same on every
#: set inside the source's support; on a weak proxy's overlapping classes it falls to
#: 0 at the source's core).
CORE_QUANTILES = (0.3, 0.5, 0.7)
CORE_AGREEMENT = 0.5
#: ... and a group replaces its cell's count only where it exceeds it by more than this
#: many standard errors of its size (3: one-sided, with the many cells of a scan tested
#: at once; on a weak proxy's overlapping classes a false group of 28 exceeded the
#: count by 2.0 errors, the 30-45% flips of bundled MNIST by 3.3-6.6).
GROUP_EXCESS_SE = 3.0


def group_share(
    given_stat: npt.NDArray[np.float64],
    source_stat: npt.NDArray[np.float64],
    quantile: float = SOURCE_QUANTILE,
) -> float:
    """Estimated share of a label's items that are a source class's items, in [0, 1].

    ``given_stat`` is a statistic of the items labelled ``g`` that is large where an
    item looks like class ``s`` (the log-ratio ``log p_s - log p_g`` of out-of-sample
    probabilities), ``source_stat`` the same statistic of class ``s``'s own items.
    The items labelled ``g`` are a mixture of their own class and a share ``pi`` of
    source items; above a cut that ``quantile`` of the source's items pass and the
    own items do not, the share passing is ``pi * quantile``. This is mixture
    proportion estimation on an upper set (Blanchard, Lee and Scott, "Semi-supervised
    novelty detection", JMLR 2010), at one set rather than their infimum over all:
    flipped items drift towards their new class (the model and proxy learnt them), so
    the narrow sets near the source's mode undercount them.

    Why a separate estimate: flips concentrated in one class (up to half of it
    relabelled to one other) teach every model and proxy that the source's region
    carries both labels, so the flipped items get a middling probability of their true
    class, as do the source's unflipped items; per-class confidence thresholds then
    count about half of them (Northcutt et al.'s joint assumes the true class stays
    confident).
    """
    g = np.asarray(given_stat, dtype=np.float64)
    ref = np.asarray(source_stat, dtype=np.float64)
    if g.size == 0 or ref.size == 0:
        return 0.0
    if not 0.0 < quantile <= 1.0:
        raise InputError(f"quantile must lie in (0, 1], got {quantile}", "confident-learning")
    cut = float(np.quantile(ref, 1.0 - quantile))
    return min(1.0, float((g >= cut).mean()) / quantile)


def _source_likeness(
    probs: npt.NDArray[np.float64], given: int, source: int
) -> npt.NDArray[np.float64]:
    """``log p_source - log p_given`` per row: how much an item of ``given`` looks like
    ``source``."""
    logp = np.log(np.clip(probs[:, [source, given]], 1e-12, None))
    return np.asarray(logp[:, 0] - logp[:, 1], dtype=np.float64)


def flip_groups(
    probs: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    issues: npt.NDArray[np.bool_],
    counts: npt.NDArray[np.int64],
) -> dict[tuple[int, int], npt.NDArray[np.int64]]:
    """Groups of flips from one class to another: ``{(given, source): positions}``.

    ``issues`` and ``counts`` are :func:`noise_rate_issues`'s. Each cell estimated at
    :data:`MIN_GROUP_CELL` items or more, largest first, gets :func:`group_share` of
    ``log p_source - log p_given``: the source's reference is its items that are
    neither label issues nor in a group found before (a class that lost items to
    another also holds that other's flipped items, which look like the other), and
    the group is that share of the given label, most source-like first. It stands
    where the share holds on narrower sets (:data:`CORE_QUANTILES`), where it holds at
    least :data:`MIN_GROUP_SHARE` of the label and not all of it, and where it exceeds
    the cell's count by more than :data:`GROUP_EXCESS_SE` standard errors.
    """
    taken = np.asarray(issues, dtype=bool).copy()
    out: dict[tuple[int, int], npt.NDArray[np.int64]] = {}
    cells = sorted(
        zip(*np.nonzero(counts >= MIN_GROUP_CELL), strict=True),
        key=lambda cell: (-int(counts[cell]), int(cell[0]), int(cell[1])),
    )
    for given, source in cells:
        members = np.flatnonzero(labels == given)
        reference = np.flatnonzero((labels == source) & ~taken)
        if reference.size < MIN_GROUP_CELL:
            continue
        stat = _source_likeness(probs[members], given, source)
        ref_stat = _source_likeness(probs[reference], given, source)
        share = group_share(stat, ref_stat)
        # A group of the source's items holds its share on narrower sets, up to the
        # source's core; a label whose own items merely reach into the source's
        # fringe (a weak proxy's overlapping classes) does not.
        core = min(group_share(stat, ref_stat, q) for q in CORE_QUANTILES)
        if core < CORE_AGREEMENT * share:
            continue
        size = round(share * members.size)
        if not max(1, MIN_GROUP_SHARE * members.size) <= size < members.size:
            continue
        # Where the count already holds the group (flips spread over the class, each
        # confidently of its source), it stands as counted: the group only replaces a
        # count it exceeds by more than GROUP_EXCESS_SE of its own sampling error (the
        # share passing the cut is binomial).
        passing = min(share * SOURCE_QUANTILE, 1.0)
        error = np.sqrt(members.size * passing * (1.0 - passing)) / SOURCE_QUANTILE
        if size - int(counts[given, source]) <= GROUP_EXCESS_SE * error:
            continue
        group = np.sort(members[np.argsort(-stat, kind="stable")[:size]])
        out[(int(given), int(source))] = group
        taken[group] = True
    return out


def reference_rank(
    values: npt.NDArray[np.float64],
    sorted_reference: npt.NDArray[np.float64],
    rng: np.random.Generator | None = None,
) -> npt.NDArray[np.float64]:
    """Empirical CDF of ``values`` among ``sorted_reference``, in [0, 1].

    With ``rng``, ties are broken at random within their range (the randomised
    probability integral transform): saturated probabilities make many margins equal,
    and tied ranks would put most items on one value, where a robust-z threshold
    degenerates. The reference items' own ranks are then exactly uniform.
    """
    n = max(sorted_reference.size, 1)
    lo = np.searchsorted(sorted_reference, values, side="left")
    hi = np.searchsorted(sorted_reference, values, side="right")
    spread = hi - lo
    jitter = np.full(values.shape, 0.5) if rng is None else rng.random(values.shape)
    pos = lo + jitter * spread
    return np.asarray(pos / n, dtype=np.float64)


@register
class ConfidentLearningDetector(BaseDetector):
    """Find label issues with confident learning on out-of-sample probabilities.

    Needs ``probs`` (out-of-sample, e.g. cross-validated, class probabilities) and
    ``labels``. Fitting sets the per-class thresholds ``t_j``; an item also counts
    against its label where its label is decisively less probable than its most
    probable class (:data:`DECISIVE_RATIO`, :func:`confident_classes`).

    Score of item ``i`` with label ``y``: ``2 * [i is a label issue] + rank(e_i)``, with
    ``e_i`` the probability that its label is wrong under the noise the fitted items'
    calibrated confident joint describes (:func:`label_error_posterior`) and ``rank``
    its empirical CDF among the fitted items' ``e``, in [0, 1] (ties broken at random,
    seeded by ``random_state``). The issues are those of :func:`noise_rate_issues` (as
    many as the calibrated joint's off-diagonal count, the largest ``e``) and the items
    of :func:`flip_groups` (flips concentrated from one class into another, which that
    count undercounts; reported as ``flip_groups``); they thus rank first, then every
    other item by ``e``. The ranks are uniform, so the robust-z threshold (about 1.8 on
    them) flags the issues and no other while they are a minority. Items other than
    the fitted ones (a trusted set that calibrates the threshold) are issues where
    ``e`` reaches the least ``e`` of the fitted issues with their label, or where they
    look at least as much like a group's source as its least such member: the count
    and the groups are estimated on the fitted items alone.

    Parameters
    ----------
    random_state
        Seed of the tie-breaking.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "confident-learning"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.PROBS, Need.LABELS})

    def __init__(self, *, random_state: int | None = 0, fpr: float = 0.01, z: float = 3.5) -> None:
        super().__init__(fpr=fpr, z=z)
        self.random_state = random_state

    def _fit(self, inputs: DetectorInput) -> None:
        p, y = probs_and_labels(inputs, self.name)
        if y.size == 0:
            raise InputError("needs at least one item", self.name)
        self.thresholds_ = per_class_thresholds(p, y)
        self.joint_ = calibrated_joint(p, y, self.thresholds_)
        error = label_error_posterior(p, y, self.joint_)
        self.sorted_errors_ = np.sort(error)
        self.n_classes_ = int(p.shape[1])
        self.probs_, self.labels_ = p, y
        issues, counts = noise_rate_issues(p, y, self.thresholds_)
        # Per label, the least error posterior among the fitted items' issues (inf where
        # that label has none): other items (a trusted set) are issues above it.
        cut = np.full(self.n_classes_, np.inf)
        np.minimum.at(cut, y[issues], error[issues])
        self.issue_cutoffs_ = cut
        self.flip_groups_ = flip_groups(p, y, issues, counts)
        self.issues_ = issues.copy()
        # Per group, the least source-likeness of its members: other items of its given
        # label are in the group from there on.
        self.group_cutoffs_: dict[tuple[int, int], float] = {}
        for (given, source), members in self.flip_groups_.items():
            self.issues_[members] = True
            self.group_cutoffs_[(given, source)] = float(
                _source_likeness(p[members], given, source).min()
            )

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        p, y = probs_and_labels(inputs, self.name)
        if p.shape[1] != self.n_classes_:
            raise InputError(
                f"probs have {p.shape[1]} classes, the detector was fitted on {self.n_classes_}",
                self.name,
            )
        error = label_error_posterior(p, y, self.joint_)
        if self._fitted_items(p, y):
            issues = self.issues_
        else:
            # Items the budget was not counted on are held to the fitted items' cuts.
            issues = error >= self.issue_cutoffs_[y]
            for (given, source), cut in self.group_cutoffs_.items():
                mine = y == given
                issues[mine] |= _source_likeness(p[mine], given, source) >= cut
        rng = np.random.default_rng(self.random_state)
        rank = reference_rank(error, self.sorted_errors_, rng)
        return np.asarray(OFF_DIAGONAL_OFFSET * issues + rank, dtype=np.float64)

    def _fitted_items(self, p: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> bool:
        return (
            p.shape == self.probs_.shape
            and bool(np.array_equal(p, self.probs_))
            and bool(np.array_equal(y, self.labels_))
        )

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        p, y = probs_and_labels(inputs, self.name)
        groups = self.flip_groups_ if self._fitted_items(p, y) else {}
        confident = confident_classes(p, self.thresholds_, y)
        joint = confident_joint(y, confident, self.n_classes_)
        labelled = np.bincount(y, minlength=self.n_classes_)
        off = joint.sum(axis=1) - np.diag(joint)
        _, pruned = noise_rate_issues(p, y, self.thresholds_)
        return {
            "thresholds": [float(t) if np.isfinite(t) else None for t in self.thresholds_],
            "confident_joint": joint.tolist(),
            "off_diagonal": int(off.sum()),
            # Items labelled i that are likely of class j (the calibrated joint, rounded).
            "estimated_issues": pruned.tolist(),
            # Share of each given label that is confidently another class.
            "issue_rate_by_label": {
                int(c): round(float(off[c] / labelled[c]), 4)
                for c in range(self.n_classes_)
                if labelled[c] > 0
            },
            "no_confident_class": int((confident < 0).sum()),
            # Flips concentrated from one class into another (flip_groups): the items
            # of each group are issues whatever the count says.
            "flip_groups": [
                {
                    "given": given,
                    "likely": source,
                    "items": int(members.size),
                    "share_of_label": round(float(members.size / labelled[given]), 4),
                    "positions": [int(i) for i in members],
                }
                for (given, source), members in sorted(groups.items())
            ],
        }


def neighbour_disagreement(
    dist: npt.NDArray[np.float64],
    neighbour_labels: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distance-weighted share of each item's neighbours with another label, and the
    continuous margin ``d_same / (d_same + d_other)``.

    ``dist`` and ``neighbour_labels`` are ``(N, k)``, nearest first, the item itself
    not among them; ``labels`` is ``(N,)``. Weights are ``1 / (d + mean d)`` over an
    item's ``k`` distances: a neighbour at distance 0 weighs ``1 + d / mean d`` times
    one at distance ``d``, about twice a typical neighbour, so one near duplicate
    cannot outvote the rest. ``d_same`` (``d_other``) is the distance to the nearest
    neighbour with the same (another) label, the ``k``-th distance when none of the
    ``k`` has one.
    """
    differs = neighbour_labels != labels[:, None]
    w = 1.0 / (dist + dist.mean(axis=1, keepdims=True) + 1e-12)
    share = (w * differs).sum(axis=1) / w.sum(axis=1)
    far = dist[:, -1]
    d_same = np.where((~differs).any(axis=1), np.where(~differs, dist, np.inf).min(1), far)
    d_other = np.where(differs.any(axis=1), np.where(differs, dist, np.inf).min(1), far)
    total = d_same + d_other
    margin = np.where(total > 0, d_same / np.where(total > 0, total, 1.0), 0.5)
    return np.asarray(share, dtype=np.float64), np.asarray(margin, dtype=np.float64)


def knn_disagreement(
    query: npt.NDArray[np.float64],
    query_labels: npt.NDArray[np.int64],
    index: NearestNeighbors,
    index_labels: npt.NDArray[np.int64],
    *,
    k: int,
    batch_size: int = 2048,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`neighbour_disagreement` of items outside the index: each ``query`` row's
    ``k`` nearest indexed items, queried in batches of ``batch_size`` (results
    ``batch_size * k``, on top of scikit-learn's own chunked search); no ``N x N``
    matrix is formed."""
    n = len(query)
    share = np.empty(n)
    margin = np.empty(n)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        dist, idx = index.kneighbors(query[start:stop], n_neighbors=k)
        share[start:stop], margin[start:stop] = neighbour_disagreement(
            dist, index_labels[idx], query_labels[start:stop]
        )
    return share, margin


@register
class KnnLabelDetector(BaseDetector):
    """Flag items whose nearest neighbours in feature space carry other labels.

    Needs ``features`` and ``labels``. Fitting finds every item's neighbours among the
    others at once (:func:`~tripwire.detectors.neighbours.nearest_neighbours`: exact,
    searched by cells) and indexes the items for later lookups; scoring the fitted
    items reads those neighbours, scoring other items (a clean reference) looks them up
    among the fitted ones. Distances are taken in the items' principal subspace that
    holds ``variance`` of their spread: a network's penultimate features spread over
    far fewer directions than they have columns (full MNIST's 128 columns: 99% of the
    variance in 67-79 directions), and the search costs in proportion to the columns
    (the GTSRB and CIFAR-10 subsets' search halves; full MNIST's cell search gains
    less), with the same verdict of the labels family on full MNIST and GTSRB
    (docs/benchmarks.md, session 21).

    The statistic of an item is its distance-weighted share of the ``k`` nearest
    neighbours whose label differs, ``D`` in [0, 1], plus ``tie_weight`` times the
    margin ``d_same / (d_same + d_other)`` (distances to the nearest same-label and
    other-label neighbour), which orders items with equal shares. The score is
    ``2 * [D >= majority] + rank``, ``rank`` being the statistic's empirical CDF among
    the fitted items, in [0, 1]: items that the weighted majority of their neighbours
    contradict rank first (the edited-nearest-neighbour rule), then all others by the
    statistic. Most clean items have ``D = 0``; on that point mass a robust-z threshold
    would flag every item with a single disagreeing neighbour, on the ranks it does not.

    Parameters
    ----------
    k
        Neighbours consulted (at most the number of fitted items minus one).
    majority
        Weighted share of disagreeing neighbours that sets an item apart.
    tie_weight
        Weight of the continuous margin in the statistic; small, so that it only
        breaks ties between equal shares.
    batch_size
        Items queried at once when scoring items other than the fitted ones.
    variance
        Share of the fitted items' variance that the principal directions in which
        distances are taken hold (1.0: all columns as they are).
    random_state
        Seed of the neighbour search's cells (:func:`~tripwire.detectors.neighbours.
        nearest_neighbours`); the neighbours found do not depend on it.
    fpr, z
        See :class:`~tripwire.detectors.base.BaseDetector`.
    """

    name: ClassVar[str] = "knn-label"
    threat: ClassVar[Threat] = Threat.POISONING
    needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES, Need.LABELS})

    def __init__(
        self,
        *,
        k: int = 10,
        majority: float = 0.5,
        tie_weight: float = 0.1,
        batch_size: int = 2048,
        variance: float = 0.99,
        random_state: int = 0,
        fpr: float = 0.01,
        z: float = 3.5,
    ) -> None:
        super().__init__(fpr=fpr, z=z)
        self.k = k
        self.majority = majority
        self.tie_weight = tie_weight
        self.batch_size = batch_size
        self.variance = variance
        self.random_state = random_state

    def _fit(self, inputs: DetectorInput) -> None:
        if self.k < 1:
            raise InputError(f"k must be at least 1, got {self.k}", self.name)
        if not 0.0 < self.majority <= 1.0:
            raise InputError(f"majority must lie in (0, 1], got {self.majority}", self.name)
        if self.tie_weight < 0.0:
            raise InputError("tie_weight must be non-negative", self.name)
        if self.batch_size < 1:
            raise InputError("batch_size must be at least 1", self.name)
        if not 0.0 < self.variance <= 1.0:
            raise InputError(f"variance must lie in (0, 1], got {self.variance}", self.name)
        x, y = features_and_labels(inputs, self.name)
        if len(x) < 2:
            raise InputError("needs at least 2 items to find neighbours", self.name)
        self.k_ = min(self.k, len(x) - 1)
        self.features_ = x
        self.labels_ = y
        self.centre_ = x.mean(axis=0)
        xc = x - self.centre_
        self.components_ = principal_subspace(xc, self.variance)
        z = xc @ self.components_.T
        self.index_ = NearestNeighbors(n_neighbors=self.k_ + 1).fit(z)
        # The all-items search by cells (exact, a tenth of the pairs on a network's
        # features); each item is then left out of its own neighbours.
        dist, idx = nearest_neighbours(z, self.k_ + 1, random_state=self.random_state)
        self.neighbour_dist_, self.neighbours_ = without_self(dist, idx, 0, self.k_)
        share, stat = self._statistics(y)
        self.fit_share_ = share
        self.fit_stat_ = stat
        self.sorted_stat_ = np.sort(stat)

    def _project(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Coordinates of ``x`` in the fitted principal subspace."""
        return np.asarray((x - self.centre_) @ self.components_.T, dtype=np.float64)

    def _statistics(
        self, y: npt.NDArray[np.int64], x: npt.NDArray[np.float64] | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Share and statistic of the fitted items under labels ``y`` (``x`` None), or
        of other items ``x`` looked up among the fitted ones."""
        if x is None:
            share, margin = neighbour_disagreement(
                self.neighbour_dist_, self.labels_[self.neighbours_], y
            )
        else:
            share, margin = knn_disagreement(
                self._project(x),
                y,
                self.index_,
                self.labels_,
                k=self.k_,
                batch_size=self.batch_size,
            )
        return share, share + self.tie_weight * margin

    def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
        x, y = features_and_labels(inputs, self.name)
        if x.shape[1] != self.features_.shape[1]:
            raise InputError(
                f"features have {x.shape[1]} columns, the detector was fitted on "
                f"{self.features_.shape[1]}",
                self.name,
            )
        fitted_items = x.shape == self.features_.shape and bool(np.array_equal(x, self.features_))
        if fitted_items and np.array_equal(y, self.labels_):
            share, stat = self.fit_share_, self.fit_stat_
        else:
            # The fitted items under other labels still leave themselves out.
            share, stat = self._statistics(y, None if fitted_items else x)
        rank = reference_rank(stat, self.sorted_stat_)
        return np.asarray(2.0 * (share >= self.majority) + rank, dtype=np.float64)

    def _evidence(
        self, inputs: DetectorInput, scores: npt.NDArray[np.float64], flags: npt.NDArray[np.bool_]
    ) -> dict[str, Any]:
        y = integer_labels(inputs.labels if inputs.labels is not None else [], self.name)
        per_class = {
            int(c): {
                "items": int((y == c).sum()),
                "flagged": int(flags[y == c].sum()),
                "contradicted_by_majority": int((scores[y == c] >= 2.0).sum()),
            }
            for c in np.unique(y)
        }
        return {"k": int(self.k_), "per_class": per_class}
