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
``labels``                confident-learning, knn-label,              2
                          training-margin (where tripwire trained)
``feature-clusters``      activation-clustering, spectral-signature   2
``dual-space``            dual-space                                  1
``duplicates``            duplicate-labels                            1
``behaviour``             perturbation-consistency                    1
``input-pattern``         input-pattern                               1
``outliers``              spectre, feature-outlier                    rank
========================  ==========================================  ======

- within ``labels`` and ``feature-clusters`` the two members look at the same threat
  through different statistics (out-of-sample probabilities vs neighbours; a 2-means
  split vs the top singular direction), so their agreement is evidence and their lone
  flags are mostly each method's own false alarms;
- ``training-margin`` (labels the network disputed through a training run on the data,
  where ``scan-data --dynamics`` recorded it) is a third vote in ``labels``, not a
  family of its own: its flags stand where confident learning or ``knn-label`` agrees.
  Alone (quorum 1) it cost precision where the label checks already found the flips:
  full MNIST, 5% flips, four epochs leave ambiguous digits disputed as long as the
  flips, and 199 of its 226 flags beyond the quorum were clean (F1 0.984 -> 0.957);
  as a vote, 101 of them stand (0.972). Where the finished model memorised the flips
  (GTSRB subset, 5% label and pair flips) ``knn-label`` agrees on 114 and 140 of the
  118 and 144 flips the quorum missed and on 3 and 2 of the 27 and 16 clean items (F1
  0.894 / 0.865 for the quorum, 0.979 / 0.985 with the margins as a family of their
  own, 0.994 / 0.993 as a vote; docs/benchmarks.md, session 24). Where its run planted
  calibrators (``scan-data --dynamics``), they estimate how many labels are wrong; a
  quorum of more than twice that many flags is a weak model's own disputes, and
  ``training-margin``'s planted cut then decides alone (:func:`_label_quorum`);
- ``confident-learning``'s flags in a **flip group** (flips concentrated from one class
  into another, a class-level finding of its own:
  :func:`~tripwire.detectors.poisoning.label_noise.flip_groups`) stand without
  ``knn-label``: the model trained on such flips learns them as a sub-mode of their
  new class, so their neighbours in its features vouch for them (see
  :func:`_flip_group_flags`); and the cluster families (``dual-space``,
  ``feature-clusters``) leave both classes of a flip group to the labels family
  (:data:`FLIP_GROUP_GATED`);
- ``feature-clusters`` flags stand only where the item also **looks like another class
  as an input** (most of its input-space neighbours among the unflagged items carry
  another label; see :func:`~tripwire.detectors.input_space.other_class_confirmation`),
  where the caller passes that check (``scan-data`` does). Both members read the
  features alone, and real classes have sub-modes (a crossed 7, a serif 1) that a
  2-means split and a top direction agree on. On clean bundled MNIST the whole scan
  flagged 34 / 11 (``cnn-small``) and 45 / 79 (``resnet-mini``) of 4,000 samples
  without the confirmation, 26 / 8 and 13 / 23 with it; on 5% BadNets precision rose
  from 0.81-0.93 to 0.91-0.96 at the same recall (docs/benchmarks.md, session 10).
  The price: a clean-label poison (true label, looks like its class) can no longer be
  flagged by this family alone (none was in those runs), and where the pair finds only
  part of a warped (WaNet) set, the rest vouch for it (resnet-mini: recall 0.13-0.20
  -> 0.02-0.03, at precision 0.44-0.54 before). Where the inputs do not predict their
  labels (natural colour images in pooled pixels) there is no such evidence and the
  flags stand unconfirmed. Every member's candidates are left out of that reference
  together, so that poisons one member missed cannot vouch for those it found (a warp
  or blend makes poisons each other's nearest inputs);
- a **lone** member's flags in a class also stand where at least
  :data:`LONE_CONFIRMED_SHARE` of them look like another class as inputs (that
  member's flags left out of the reference), where that member has such groups (each
  at least :data:`MIN_CLASS_SHARE` of its class) in at most
  :data:`MAX_LONE_CLASS_SHARE` of the classes and at most :data:`MAX_LONE_CLASSES`:
  a group of other classes' images sent to one target, which the other member's
  statistic missed. On full MNIST with a 5% WaNet backdoor (poisons a third of
  their target class, where spectral signatures are known to fail) activation
  clustering found the poisons at precision 0.97 and spectral signatures 22 of 3,000,
  so the quorum flagged none; 97% of the lone group looks like other digits, and the
  family now flags 2,977 at precision 0.99. On bundled MNIST (``cnn-small``, 2 seeds)
  the lone groups of clean classes (a third of a class) reach 0.34-0.48; those of 20%
  label flips reach 0.83-1.0 but in 5-9 classes at once, where they are held back for
  the labels family (taken, they cost 0.07 of precision). On the GTSRB subset (43
  classes, 1% backdoors making 37% of the target class, beyond activation
  clustering's share rule) spectral signatures' lone group held the poisons (BadNets
  123 of 123, WaNet 110 of 111) while its few top items in 14 other classes and
  activation clustering's sub-modes in 3-4 classes held it back when the classes were
  counted over both members together; counted per member and over sub-populations
  only, BadNets 1% went from precision 0.739 recall 0.415 to 0.872 / 1.000 and WaNet
  1% from 0 / 0 to 0.788 / 0.878, at the price of one clean sub-mode (30 items, 0.24%)
  on the clean GTSRB cell (docs/benchmarks.md, session 17). A lone group that the labels
  family flagged for the most part (:data:`LONE_LABEL_NOISE_SHARE`) is label noise and
  left to that family too: a backdoor's poisons carry their target's label
  consistently and pass the label checks;
- for the same reason, ``feature-clusters`` flags in a class of which the labels family
  flagged at least half are dropped (the report's ``label_noise_classes``): flipped
  items look like another class as inputs, and so do the clean look-alikes the
  pair's split took with them; the labels family judges those items one by one;
- where there is no such look-alike evidence (``confirm_other`` is None: the inputs do
  not predict their labels), a lone member's flags in a class where the quorum's flags
  stand (after the gates below) **extend that group** (:func:`_extended_groups`),
  where the group holds a third of them, they are not label noise, and that member
  extends groups in no more classes than a backdoor targets; a lone member's flags
  elsewhere stay out. On the CIFAR-10 subset with 5% WaNet
  spectral signatures reach only part of the warped set (385 and 177 of 500) and
  activation clustering nearly all of it (451 and 434, at precision 1.00 and 0.96;
  ``cnn-compact`` and ``resnet-mini``), so the family's recall rises from 0.77 / 0.35
  to 0.90 / 0.83 (docs/benchmarks.md, session 24);
- ``feature-clusters`` flags in a class also stand only as a **sub-population**: at
  least :data:`MIN_CLASS_SHARE` (5%) of the class, where ``labels`` are given
  (``scan-data`` gives them). The confirmed sub-modes of clean classes held at most
  3.2% of a class on clean bundled MNIST, and held back they take the clean flag
  count from 26 / 8 and 13 / 23 to 7 / 5 and 6 / 4 of 4,000 (``cnn-small`` /
  ``resnet-mini``, 2 seeds); on 1% BadNets (40 poisons, of which the pair found 8)
  precision rose from 0.59 to 0.88 and recall fell from 0.60 to 0.53 (session 11,
  docs/benchmarks.md). A dirty-label backdoor at 1% of a balanced 10-class set makes
  9% of its target class; one below 5% of its class is left to the other families;
- ``feature-clusters`` flags in a class also stand only where the group is **not a set
  of near-copies**: its median distance to its nearest fellow member in input space at
  least :data:`MIN_GROUP_SPREAD` of the same for random draws of as many items of its
  class (:func:`~tripwire.detectors.input_space.group_spread`), where the caller passes
  that measure (``scan-data`` does). GTSRB is cut from video tracks (about 30 frames of
  one physical sign): a track is a sub-mode that both members find and that looks like
  another class once it is left out of the reference, because its only look-alikes are
  its own frames. Such clean groups measured 0.04-0.48 of their draws (other clean
  sub-modes 0.51-1.21, kept); a backdoor's poisons, drawn from many source images,
  0.85-2.20 (BadNets and blend at 1% on the GTSRB subset, at 5% on bundled MNIST),
  and no group on bundled MNIST (``cnn-small``) came under 0.70. On the GTSRB subset
  with 1% BadNets precision rose from 0.719 to 0.820 at recall 1.000
  (docs/benchmarks.md, session 18).
  A blend pulls its poisons together by its alpha (0.3: a group measures about 0.65 of
  its draws; 0.5: about 0.48), so a blend at alpha 0.5 or more found by this family
  alone would be held back; ``input-pattern`` and ``behaviour`` do not read this;
- a ``feature-clusters`` group that stands after all of the above is **completed**
  where the caller gives the scan's features (``complete``; :func:`_completed_groups`):
  the items of its class that a cross-validated logistic regression of the group
  against the rest of the class puts in it (out-of-fold probability above 0.5) join
  it, unless the labels family flagged them or, where there is a look-alike test, they
  fail it, and not where groups stand in more classes than a backdoor targets. The
  split leaves a few poisons whose trigger the network represents only in part on the
  clean side; the classifier asks which items are like the group, not whether there is
  one. On the CIFAR-10 subset with 5% WaNet 11 items joined, 7 of them poisons (recall
  0.936 -> 0.950, precision 0.925 -> 0.919 with ``--dynamics``), on the GTSRB
  subset with a 1% blend 3 poisons (0.951 -> 0.976); where the split already holds
  every poison (CIFAR-10 BadNets and blend) 0-1 clean items join. A clean sub-mode
  that passed the gates grows too (clean GTSRB: 15 -> 20 flags, 0.16%)
  (docs/benchmarks.md, session 34);
- where the ``behaviour`` family (``perturbation-consistency``: a label that survives
  superimposition) flags at least :data:`MIN_CLASS_SHARE` of a class, its group
  **names the poisons' side** of the class's feature split where the caller gives the
  scan's features (``side``; :func:`_anchored_sides`): the class's items on the
  group's side join the family's flags (not those the labels family flagged), and the
  ``feature-clusters`` flags on the other side are dropped; not where such groups
  stand in more classes than a backdoor targets. Where a dirty-label backdoor's
  poisons are most of their target class (the GTSRB subset at 5%: 616 of 826) the
  feature split's smaller side is the clean remainder, which activation clustering and
  spectral signatures flag instead of the poisons, while the behavioural test sees a
  part of the poisons wherever they are;
- ``dual-space``, ``duplicate-labels``, ``perturbation-consistency`` and
  ``input-pattern`` flag only after a class-level test, a fact or their own
  confirmation (a cluster whose inputs look like other classes; a copy under another
  label; a label that survives superimposition, confirmed by input-space neighbours; a
  share of one class, and of no other, carrying one added pattern). ``input-pattern``
  is the family that sees clean-label poisons (SIG, label-consistent): they keep
  their true labels and look like their class, so no other family's evidence applies;
  it also flags a dirty-label set that carries one pattern where the set passes this
  family table's gates on feature-cluster groups (class share, look-alike share,
  spread), applied inside the detector;
- ``outliers`` only rank (they raise the combined score) unless they are all that ran;
- a detector the table does not know (a plug-in) is a family of its own, quorum 1;
- where fewer members of a family ran than its quorum (``--detectors`` chose them),
  the quorum is the number that ran: a user who runs one detector gets its flags.

The combined score (for ranking and PR curves) agrees with the verdict: **a sample
scores at least 1.0 exactly when it is flagged**, so every flagged sample ranks above
every unflagged one. Each detector's score is first put on a common scale,
``s = (score - median) / (threshold - median)`` (1.0 is "at that detector's threshold");
then, per family,

- flagged by the family (its quorum of members flagged it): the quorum-th largest of
  its members' ``max(s, 1)`` among those that flagged (at least 1.0); a lone member's
  confirmed flag takes that member's ``max(s, 1)``, an item that joined a completed
  group without any member's flag 1.0;
- otherwise: the mean of the members' top-quorum ``s / (1 + |s|)`` (below 1.0): the
  evidence short of a verdict, squashed so that no unflagged sample outranks a flagged
  one; ranking-only families (``outliers``) always take this branch;

and the sample's score is the largest family score, except that where some families
flagged items and others none, an unflagged sample's score is
``(a + w * b) / (1 + w)``, ``a`` the largest score among the families that flagged,
``b`` among the silent ones, ``w`` = :data:`SILENT_FAMILY_WEIGHT`: a family that
reached a verdict orders the samples short of it, and the silent families' evidence
counts at a fifth. Taken as equals, they let CIFAR-10's label flips be outranked by
clean items that the feature-space detectors find merely unusual
(docs/benchmarks.md, session 33). A plain maximum of scaled scores,
the rule before, let the ranking-only outlier detectors (whose own thresholds sit inside
the clean bulk) outrank the families' flags: on bundled MNIST it ranked 5% BadNets
poisons at AUROC 0.87-0.89 where the family rule gives 0.999, and 5-20% label flips
at 0.88-0.94 where it gives 0.989-0.998 (``cnn-small``; docs/benchmarks.md, session 10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors import DetectorResult
from tripwire.detectors.calibration import robust_threshold
from tripwire.detectors.input_space import (
    MIN_GROUP_LOOKS_OTHER,
    MIN_GROUP_SHARE,
    MIN_GROUP_SPREAD,
)
from tripwire.errors import InputError

#: family -> (quorum, members); quorum 0 means "ranks only".
FAMILIES: dict[str, tuple[int, frozenset[str]]] = {
    # training-margin votes here where tripwire trained on the data (scan-data --dynamics).
    "labels": (2, frozenset({"confident-learning", "knn-label", "training-margin"})),
    "feature-clusters": (2, frozenset({"activation-clustering", "spectral-signature"})),
    "dual-space": (1, frozenset({"dual-space"})),
    "duplicates": (1, frozenset({"duplicate-labels"})),
    # Its own confirmation (input-space neighbours) gates its flags.
    "behaviour": (1, frozenset({"perturbation-consistency"})),
    # Clean-label poisons: a class-level test on the inputs' high-pass residuals.
    "input-pattern": (1, frozenset({"input-pattern"})),
    "outliers": (0, frozenset({"spectre", "feature-outlier"})),
}


#: Weight of the families that flagged nothing in the score of an unflagged sample,
#: where others flagged (see the module docstring).
SILENT_FAMILY_WEIGHT = 0.2

#: The labels family's quorum stands only where at least this share of its flags could
#: be flips by the count ``training-margin``'s calibrators estimate (see
#: :func:`_label_quorum`).
MIN_LABEL_QUORUM_PRECISION = 0.5
#: ... unless at least this share of the quorum's flags stand out on
#: ``training-margin``'s own robust scale (its default cut, median + 3.5 MAD): the run
#: itself then corroborates them, and the estimate is what is off (flips that the
#: network fits sooner than the calibrators' random ones, such as pair flips between
#: look-alike classes). Measured: 0-7% on the CIFAR-10 subset's cells, whose quorum is
#: a weak model's own disputes, 98-100% on GTSRB's and MNIST's flips
#: (docs/benchmarks.md, session 33).
MIN_CORROBORATED_SHARE = 0.5


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
    #: Each family's own flags (the report's findings name the label family's apart).
    family_flags: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

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


#: Families whose flags need the item to look like another class as an input.
INPUT_CONFIRMED = frozenset({"feature-clusters"})
#: Families whose flags in a class stand only as a sub-population: at least this share of
#: the class. A per-class 2-means split and top direction always find a class's own
#: sub-modes; on clean bundled MNIST (cnn-small and resnet-mini, 2 seeds each) the
#: confirmed ones held at most 13 of a class's ~400 items (3.2%). A dirty-label
#: backdoor at 1% of a balanced 10-class set already makes 9% of its target class.
CLASS_SHARE_GATED = frozenset({"feature-clusters"})
MIN_CLASS_SHARE = MIN_GROUP_SHARE
#: A lone member's flags in a class stand where at least this share of them look like
#: another class as inputs (see :func:`_confirmed_flags`).
LONE_CONFIRMED_SHARE = MIN_GROUP_LOOKS_OTHER
#: ... in at most this share of the classes (at least one), and at most
#: :data:`MAX_LONE_CLASSES`, counted per member: a backdoor's target. The cap is
#: absolute because a member's clean sub-modes grow with the number of classes while a
#: backdoor's targets do not (the GTSRB figures are in the module docstring).
MAX_LONE_CLASS_SHARE = 0.2
MAX_LONE_CLASSES = 2
#: ... and where the labels family flagged less than this share of them; the same
#: share drops all of the family's flags in a class (:func:`_label_noise_gate`). A
#: backdoor's poisons carry their target's label consistently and the label checks pass
#: them (0.0 of the lone groups of BadNets 1% and WaNet 5% on full MNIST), while a group
#: of label flips is label noise the labels family has already judged (0.74-1.0 of the
#: lone groups of 5-20% flips on bundled MNIST), and the clean look-alikes the pair's
#: group also took cost precision (full MNIST, 5% flips: precision 0.90 -> 0.98;
#: docs/benchmarks.md, session 14).
LONE_LABEL_NOISE_SHARE = 0.5
#: Without look-alike evidence a lone member's flags extend the quorum's group in a
#: class only where that group is at least this share of the member's flags there (see
#: :func:`_extended_groups`). On the CIFAR-10 subset (``cnn-compact`` and
#: ``resnet-mini``, session 24) the quorum held 0.41-0.85 of activation clustering's
#: cluster of warped or blended poisons, and 0.09-0.17 of its one clean sub-mode (282
#: birds, with 26-47 of spectral signatures' top items).
MIN_EXTENDED_SHARE = 1 / 3
# ``feature-clusters`` flags in a class stand only where the flagged group is at least
# ``MIN_GROUP_SPREAD`` (imported above, beside group_spread) spread out in input space
# against the rest of its class (1.0: as spread as a random draw of the class). See the
# module docstring for the figures.
#: Families whose flags in either class of a flip group (``confident-learning``'s
#: finding that one class's items were relabelled into another) are left to the
#: labels family: they see the group, or the source class's remaining items whose
#: region now holds items of another label, as a cluster that looks like another
#: class (bundled MNIST, 45% of the ones labelled 7, ``resnet-mini`` seed 0:
#: ``dual-space`` flagged 347, of which 175 flips and 172 clean ones; docs/benchmarks.md,
#: session 19). A backdoor's poisons carry their target's label consistently and form
#: no flip group.
FLIP_GROUP_GATED = frozenset({"dual-space", "feature-clusters"})
#: Families whose group in a class names the side of the class's feature split that
#: holds the poisons (see :func:`_anchored_sides`).
SIDE_ANCHORS = frozenset({"behaviour"})


def combine(
    results: dict[str, DetectorResult],
    n: int,
    *,
    confirm_other: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
    labels: npt.ArrayLike | None = None,
    spread: Callable[[npt.NDArray[np.bool_]], float] | None = None,
    complete: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
    side: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
) -> EnsembleResult:
    """Combine detector results over ``n`` items (see the module docstring).

    ``confirm_other`` takes a family's flags and returns those that look like another
    class as inputs (:func:`~tripwire.detectors.input_space.other_class_confirmation`);
    None: no such evidence, and no family is confirmed by it. ``labels`` (one per item)
    lets the families of :data:`CLASS_SHARE_GATED` flag a class's items only where they
    make at least :data:`MIN_CLASS_SHARE` of it; None: no class gate. ``spread`` (with
    ``labels``) takes one class's flagged group and returns how spread out it is in
    input space against its class (:func:`~tripwire.detectors.input_space.group_spread`);
    the same families' groups under :data:`MIN_GROUP_SPREAD` (near-copies) are held
    back. None: no such check. ``complete`` (with ``labels``) takes one class's
    standing group of the same families and returns the class's other items that are
    like it (:func:`~tripwire.detectors.poisoning.group_completion.group_completion`);
    they join the group (see :func:`_completed_groups`). None: groups stay as found.
    ``side`` (with ``labels``) takes one class's group of a family of
    :data:`SIDE_ANCHORS` and returns the class's other items on its side of the class's
    feature split (:func:`~tripwire.detectors.poisoning.group_completion.group_side`);
    they join that family's flags and the feature-cluster flags on the other side are
    dropped (see :func:`_anchored_sides`). None: no such step.
    """
    y = None if labels is None else np.asarray(labels)
    if y is not None and y.shape != (n,):
        raise InputError(f"needs one label per item ({y.shape} for {n})", "ensemble")
    if not results:
        return EnsembleResult(
            scores=np.zeros(n), flags=np.zeros(n, dtype=bool), votes=np.zeros(n, np.int64)
        )
    scaled = {name: common_scale(r) for name, r in results.items()}
    votes = np.sum([np.asarray(r.flags, dtype=np.int64) for r in results.values()], axis=0)
    grouped: dict[str, list[str]] = {}
    quorums: dict[str, int] = {}
    for name in sorted(results):
        fam, quorum = family_of(name)
        grouped.setdefault(fam, []).append(name)
        quorums[fam] = quorum
    ranking_only = {f for f, q in quorums.items() if q == 0}
    labels_family = grouped.get("labels", [])
    flip_groups, flip_entry, flip_classes = _flip_group_flags(results, n)
    label_quorum, planted_entry = (
        _label_quorum(results, labels_family, quorums["labels"])
        if labels_family
        else (np.zeros(n, dtype=bool), {})
    )
    label_issues = label_quorum | flip_groups if labels_family else None
    anchors = [m for f in SIDE_ANCHORS for m in grouped.get(f, [])]
    sides, held_sides = (
        _anchored_sides(results, anchors, y, side, label_issues)
        if side is not None and y is not None and anchors
        else ({}, [])
    )
    flags = np.zeros(n, dtype=bool)
    fam_scores: list[npt.NDArray[np.float64]] = []
    fam_flag_sets: dict[str, npt.NDArray[np.bool_]] = {}
    report: dict[str, dict[str, Any]] = {}
    for fam, members in grouped.items():
        quorum = min(quorums[fam], len(members))
        if fam in ranking_only and len(ranking_only) == len(grouped):
            quorum = 1  # only ranking detectors ran: the user asked for their flags
        fam_flags = np.zeros(n, dtype=bool)
        entry: dict[str, Any] = {}
        if fam == "labels":
            fam_flags = label_quorum.copy()
            entry.update(planted_entry)
        elif quorum:
            fam_flags = _family_flags(results, members, quorum)
        if fam == "labels" and flip_entry:
            fam_flags |= flip_groups
            entry["flip_groups"] = flip_entry
        min_share = MIN_CLASS_SHARE if fam in CLASS_SHARE_GATED else 0.0
        if fam in INPUT_CONFIRMED and confirm_other is not None and len(members) > 1:
            fam_flags, entry = _confirmed_flags(
                results, members, fam_flags, confirm_other, y, label_issues, min_share=min_share
            )
        if fam in CLASS_SHARE_GATED and y is not None and len(members) > 1:
            fam_flags, small = _class_share_gate(fam_flags, y)
            if small:
                entry["below_class_share"] = small
                entry["class_share"] = MIN_CLASS_SHARE
            if label_issues is not None:
                fam_flags, noisy = _label_noise_gate(fam_flags, y, label_issues)
                if noisy:
                    entry["label_noise_classes"] = noisy
            if spread is not None:
                fam_flags, copies = _near_copy_gate(fam_flags, y, spread)
                if copies:
                    entry["near_copy_classes"] = copies
                    entry["min_group_spread"] = MIN_GROUP_SPREAD
        if fam in INPUT_CONFIRMED and confirm_other is None and y is not None and len(members) > 1:
            # After the gates: only a group that stands is extended.
            fam_flags, extended, held_ext = _extended_groups(
                results, members, fam_flags, y, label_issues
            )
            if extended:
                entry["lone_extended"] = extended
            if held_ext:
                entry["lone_extension_held_back"] = held_ext
        if fam in FLIP_GROUP_GATED and y is not None and flip_classes:
            fam_flags, held = _drop_classes(
                fam_flags, y, lambda _, members: _holds_flip_group(y, members, flip_classes)
            )
            if held:
                entry["flip_group_classes"] = held
        if fam in INPUT_CONFIRMED and sides and y is not None:
            fam_flags, off = _off_side(fam_flags, y, sides)
            if off:
                entry["off_anchored_side"] = off
        if fam in SIDE_ANCHORS and sides:
            fam_flags, joined = _on_sides(fam_flags, sides)
            if joined:
                entry["anchored_sides"] = joined
        if fam in SIDE_ANCHORS and held_sides:
            entry["anchored_sides_held_back"] = held_sides
        if fam in INPUT_CONFIRMED and complete is not None and y is not None and len(members) > 1:
            fam_flags, completed, held_c = _completed_groups(
                fam_flags, y, complete, label_issues, confirm_other
            )
            if completed:
                entry["completed"] = completed
            if held_c:
                entry["completion_held_back"] = held_c
        flags |= fam_flags
        fam_flag_sets[fam] = fam_flags
        fam_scores.append(_family_score(results, scaled, members, max(quorum, 1), fam_flags))
        report[fam] = {
            "members": members,
            "quorum": quorum if quorum else "ranks only",
            "flagged": int(fam_flags.sum()),
            **entry,
        }
    return EnsembleResult(
        scores=_combined_score(fam_scores, [fam_flag_sets[f] for f in grouped]),
        flags=flags,
        votes=np.asarray(votes, np.int64),
        families=report,
        family_flags=fam_flag_sets,
    )


def _family_flags(
    results: dict[str, DetectorResult], members: list[str], quorum: int
) -> npt.NDArray[np.bool_]:
    """The items that at least ``quorum`` of ``members`` flagged (all of them, where
    fewer ran)."""
    votes = np.sum([np.asarray(results[m].flags, np.int64) for m in members], axis=0)
    return np.asarray(votes >= max(1, min(quorum, len(members))), dtype=bool)


def _label_quorum(
    results: dict[str, DetectorResult], members: list[str], quorum: int
) -> tuple[npt.NDArray[np.bool_], dict[str, Any]]:
    """The labels family's quorum, held back where the planted calibrators of
    ``training-margin`` show that it cannot be right.

    The calibrators estimate how many items are mislabelled; where the label checks'
    quorum flags more than :data:`MIN_LABEL_QUORUM_PRECISION` of that count allows
    (at most that share of its flags could be flips), its flags are a weak model's own
    disputes, and ``training-margin``'s planted cut decides alone, unless the run
    corroborates most of them (:data:`MIN_CORROBORATED_SHARE`): then the quorum
    stands, ``training-margin`` voting at its robust cut (the planted one rests on the
    same estimate). Otherwise its vote admits items beyond the other two checks'
    agreement only up to that count. On the CIFAR-10 subset (a 71%-accurate
    ``cnn-compact``) the quorum flagged 726 clean items (7.3%) and, under 5% label
    flips, 1,270 items at precision 0.28 (docs/benchmarks.md, sessions 16 and 23).
    """
    flags = _family_flags(results, members, quorum)
    tm = results.get("training-margin")
    if tm is None or tm.calibration.method != "planted":
        return flags, {}
    expected = float(tm.calibration.details.get("estimated_mislabelled", 0.0))
    entry: dict[str, Any] = {"estimated_mislabelled": expected}
    if flags.sum() * MIN_LABEL_QUORUM_PRECISION > expected:
        tm_scores = np.asarray(tm.scores, dtype=np.float64)
        robust = tm_scores > robust_threshold(tm_scores)
        corroborated = float(np.mean(robust[flags]))
        entry["quorum_corroborated"] = round(corroborated, 4)
        if corroborated >= MIN_CORROBORATED_SHARE:
            # The planted cut rests on the same estimate: the run votes at its robust
            # cut instead (GTSRB pair flips: the cut flagged none of 616).
            entry["estimate_overruled"] = True
            entry["margin_robust_votes"] = int(robust.sum())
            at_robust = {**results, tm.detector: replace(tm, flags=robust)}
            return _family_flags(at_robust, members, quorum), entry
        planted = np.asarray(tm.flags, dtype=bool)
        entry["quorum_held_back"] = int((flags & ~planted).sum())
        entry["quorum_flagged"] = int(flags.sum())
        return planted.copy(), entry
    others = [m for m in members if m != tm.detector]
    if len(others) < 2:
        return flags, entry
    # training-margin's vote fills the other two checks' agreement up to the estimate,
    # most disputed first: beyond it, the items it admits are mostly clean ones that
    # both the run and one other check found ambiguous (full MNIST, 5% flips;
    # docs/benchmarks.md, session 32).
    agreed = _family_flags(results, others, 2)
    added = np.flatnonzero(flags & ~agreed)
    room = max(0, round(expected) - int(agreed.sum()))
    if added.size > room:
        scores = np.asarray(tm.scores, dtype=np.float64)[added]
        dropped = added[np.argsort(-scores, kind="stable")[room:]]
        flags = flags.copy()
        flags[dropped] = False
        entry["vote_held_back"] = int(dropped.size)
    return flags, entry


def _holds_flip_group(
    labels: npt.NDArray[Any], members: npt.NDArray[np.bool_], classes: set[int]
) -> bool:
    """Whether the class of ``members`` is one of the flip groups' ``classes``."""
    first = labels[members][0]
    return bool(np.issubdtype(np.asarray(first).dtype, np.integer) and int(first) in classes)


def _flip_group_flags(
    results: dict[str, DetectorResult], n: int
) -> tuple[npt.NDArray[np.bool_], dict[str, int], set[int]]:
    """Confident learning's flags in its flip groups (the labels family's flags without
    the quorum), per group ``"given<-likely"`` how many, and both classes of every
    group (the one given another class's items, and that class, whose remaining items
    now share their region with items labelled otherwise).

    A group of flips from one class into another is a class-level finding of its own
    (:func:`~tripwire.detectors.poisoning.label_noise.flip_groups`), and ``knn-label``
    is blind to it: the model trained on the flips learnt them as a sub-mode of their
    new class, so their neighbours in its features vouch for them (45% of the ones
    labelled 7 on bundled MNIST: ``knn-label`` recall 0.54-0.67, docs/benchmarks.md,
    session 19).
    """
    out = np.zeros(n, dtype=bool)
    entry: dict[str, int] = {}
    classes: set[int] = set()
    result = results.get("confident-learning")
    if result is None:
        return out, entry, classes
    flags = np.asarray(result.flags, dtype=bool)
    for group in result.evidence.get("flip_groups", []):
        pos = np.asarray(group["positions"], dtype=np.int64)
        pos = pos[(pos >= 0) & (pos < n)]
        mine = np.zeros(n, dtype=bool)
        mine[pos] = True
        mine &= flags
        if mine.any():
            out |= mine
            entry[f"{group['given']}<-{group['likely']}"] = int(mine.sum())
            classes |= {int(group["given"]), int(group["likely"])}
    return out, entry, classes


def _confirmed_flags(
    results: dict[str, DetectorResult],
    members: list[str],
    at_quorum: npt.NDArray[np.bool_],
    confirm_other: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]],
    labels: npt.NDArray[Any] | None,
    label_issues: npt.NDArray[np.bool_] | None = None,
    *,
    min_share: float = 0.0,
) -> tuple[npt.NDArray[np.bool_], dict[str, Any]]:
    """The flags of an :data:`INPUT_CONFIRMED` family that look like another class as
    inputs, and the report's entry on them.

    The quorum's flags stand where confirmed with every member's candidates left out of
    the input-space reference together: a warped or blended trigger makes its poisons
    each other's nearest neighbours, so the poisons that one member missed would vouch
    for those it found. A lone member's flags in a class (``labels`` given) stand where
    at least :data:`LONE_CONFIRMED_SHARE` of them are confirmed with that member's own
    flags left out: a group of other classes' images under one label, which the other
    member's statistic missed. Its own flags only, because leaving out a large clean
    group found by the other member (a third of a class of 7s) takes the class's own
    look-alikes out of the reference and lets a clean sub-mode pass. A lone group of
    which the labels family (``label_issues``) flagged at least
    :data:`LONE_LABEL_NOISE_SHARE` is label noise, left to that family. A lone group
    below ``min_share`` of its class is no sub-population (the class gate drops it) and
    does not count towards a member's classes: a member's few confirmed items in many
    classes (spectral signatures' top items, 1-19 per class on GTSRB) must not hold back
    its one real group. A member's lone groups in more classes than
    :data:`MAX_LONE_CLASSES` are held back, except in a class where the quorum's own
    confirmed flags stand as a sub-population (at least ``min_share`` of the class, and
    at least one item): there they extend a finding instead of claiming a target.
    """
    flags = {m: np.asarray(results[m].flags, dtype=bool) for m in members}
    candidates = np.logical_or.reduce(list(flags.values()))
    confirmed = np.asarray(confirm_other(candidates), dtype=bool) & candidates
    out = at_quorum & confirmed
    quorum_found = out.copy()
    lone: dict[str, int] = {}
    held: list[str] = []
    noise: list[str] = []
    small: list[str] = []
    if labels is not None:
        limit = _lone_class_limit(labels)
        for member, mine in flags.items():
            alone = mine & ~at_quorum
            if not alone.any():
                continue
            own = np.asarray(confirm_other(mine), dtype=bool) & mine
            groups: dict[Any, npt.NDArray[np.bool_]] = {}
            for c in np.unique(labels[alone]):
                in_class = labels == c
                group = mine & in_class
                ok = group & own
                if int(ok.sum()) < LONE_CONFIRMED_SHARE * int(group.sum()):
                    continue
                if _below_share(ok, in_class, min_share):
                    small.append(f"{member}:{c}")
                    continue
                if label_issues is not None and _mostly_label_noise(ok, label_issues):
                    noise.append(f"{member}:{c}")
                    continue
                groups[c] = ok
            # A backdoor sends its poisons to its target: one member's lone groups in
            # many classes at once are label noise spread over the set (which the labels
            # family judges) or that member's own false alarms. They are held back, but
            # for a class where the quorum's confirmed flags already stand: there the
            # lone items are the part of that finding the other member missed (the
            # GTSRB subset's 1% blend: 29 of the target's poisons, beside two clean
            # sub-modes that held them back).
            if len(groups) > limit:
                new = [c for c in groups if not _quorum_group(quorum_found, labels == c, min_share)]
                held += [f"{member}:{c}" for c in new]
                groups = {c: g for c, g in groups.items() if c not in new}
            for c, ok in groups.items():
                added = ok & ~out
                if added.any():
                    lone[f"{member}:{c}"] = int(added.sum())
                out |= ok
    entry: dict[str, Any] = {
        "unconfirmed": int((at_quorum & ~confirmed).sum()),
        "confirmed_by": "input-space neighbours (unflagged items) mostly of another label",
    }
    if lone:
        entry["lone_confirmed"] = lone
        entry["lone_confirmed_share"] = LONE_CONFIRMED_SHARE
    if held:
        entry["lone_held_back"] = sorted(held)
    if noise:
        entry["lone_label_noise"] = sorted(noise)
    if small:
        entry["lone_below_class_share"] = sorted(small)
    return out, entry


def _lone_class_limit(labels: npt.NDArray[Any]) -> int:
    """How many classes one member's lone groups may claim: :data:`MAX_LONE_CLASSES`,
    at most :data:`MAX_LONE_CLASS_SHARE` of the classes, at least one."""
    return max(1, min(MAX_LONE_CLASSES, int(MAX_LONE_CLASS_SHARE * np.unique(labels).size)))


def _extended_groups(
    results: dict[str, DetectorResult],
    members: list[str],
    standing: npt.NDArray[np.bool_],
    labels: npt.NDArray[Any],
    label_issues: npt.NDArray[np.bool_] | None,
) -> tuple[npt.NDArray[np.bool_], dict[str, int], list[str]]:
    """Without input-space evidence: a member's lone flags in a class where the family's
    flags ``standing`` (the quorum's, after the class-share, label-noise and near-copy
    gates) hold at least :data:`MIN_EXTENDED_SHARE` of that member's flags there.

    There the quorum has found a group and the lone items are the part of it that the
    other member's statistic missed: where poisons make a large share of their class,
    spectral signatures' cut takes only the top of them while activation clustering's
    split holds nearly all (CIFAR-10 subset, 5% WaNet: the quorum 385 and 177 poisons,
    activation clustering 451 and 434 at precision 1.00 and 0.96 on ``cnn-compact``
    and ``resnet-mini``; docs/benchmarks.md, session 24). Lone items that the labels
    family mostly flagged are label noise and left to it; a member that would extend
    groups in more classes than a backdoor targets (:data:`MAX_LONE_CLASSES`, and
    :data:`MAX_LONE_CLASS_SHARE` of the classes) extends none: on the GTSRB subset with
    5% label flips (no look-alike test there either) an extension before the gates and
    without this limit took 47 clean items in nine classes (precision 0.914 -> 0.852;
    with the gates first and this limit, 0.912). Returns the
    flags, per ``"member:class"`` how many were added, and the members' classes held
    back. Lone flags in a class without a standing group stay out: with no look-alike
    test there is nothing to tell a group of other classes' images from a clean
    sub-mode.
    """
    out = standing.copy()
    limit = _lone_class_limit(labels)
    added: dict[str, int] = {}
    held: list[str] = []
    for member in members:
        flags = np.asarray(results[member].flags, dtype=bool)
        extend: dict[Any, npt.NDArray[np.bool_]] = {}
        for c in np.unique(labels[standing]):
            in_class = labels == c
            mine = flags & in_class
            new = mine & ~standing
            if not new.any() or int((standing & in_class).sum()) < MIN_EXTENDED_SHARE * int(
                mine.sum()
            ):
                continue
            if label_issues is not None and _mostly_label_noise(new, label_issues):
                continue
            extend[c] = new
        if len(extend) > limit:
            held += [f"{member}:{c}" for c in extend]
            continue
        for c, new in extend.items():
            added[f"{member}:{c}"] = int((new & ~out).sum())
            out |= new
    return out, {k: v for k, v in added.items() if v}, sorted(held)


def _anchored_sides(
    results: dict[str, DetectorResult],
    anchors: list[str],
    labels: npt.NDArray[Any],
    side: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]],
    label_issues: npt.NDArray[np.bool_] | None,
) -> tuple[dict[Any, npt.NDArray[np.bool_]], list[str]]:
    """Per class where the ``anchors`` (the members of :data:`SIDE_ANCHORS` families)
    flag at least :data:`MIN_CLASS_SHARE` of the class: the class's items on the
    flagged group's side of the class's feature split (``side``), without those the
    labels family flagged. Returns the sides by class, and the classes held back where
    there are more than a backdoor targets (:func:`_lone_class_limit`).

    A behavioural test sees part of a backdoor's poisons whatever their share of the
    class; the feature split sees all of them as one side but cannot tell which side
    once they are most of the class (GTSRB subset, 5% BadNets: the behaviour family
    flagged 248 of 616 poisons and activation clustering's smaller cluster, 210 of 211,
    was the clean remainder; docs/benchmarks.md, session 35).
    """
    found = _family_flags(results, anchors, 1)
    out: dict[Any, npt.NDArray[np.bool_]] = {}
    for c in np.unique(labels[found]):
        members = labels == c
        group = found & members
        if _below_share(group, members, MIN_CLASS_SHARE):
            continue
        mine = np.asarray(side(group), dtype=bool) & members
        if label_issues is not None:
            mine &= ~label_issues
        if mine.any():
            out[c] = mine | group
    if len(out) > _lone_class_limit(labels):
        return {}, sorted(str(c) for c in out)
    return out, []


def _on_sides(
    flags: npt.NDArray[np.bool_], sides: dict[Any, npt.NDArray[np.bool_]]
) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """``flags`` with every anchored side joined (:func:`_anchored_sides`); returns them
    and, per class, how many items joined."""
    out = flags.copy()
    joined: dict[str, int] = {}
    for c, mine in sides.items():
        new = mine & ~out
        if new.any():
            joined[str(c)] = int(new.sum())
            out |= new
    return out, joined


def _off_side(
    flags: npt.NDArray[np.bool_], labels: npt.NDArray[Any], sides: dict[Any, npt.NDArray[np.bool_]]
) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """``flags`` without the items of an anchored class that lie off its anchored side
    (:func:`_anchored_sides`): there the split's other side is the class's clean items.
    Returns the kept flags and, per class, how many were dropped."""
    kept = flags.copy()
    dropped: dict[str, int] = {}
    for c, mine in sides.items():
        off = kept & (labels == c) & ~mine
        if off.any():
            kept &= ~off
            dropped[str(c)] = int(off.sum())
    return kept, dropped


def _completed_groups(
    standing: npt.NDArray[np.bool_],
    labels: npt.NDArray[Any],
    complete: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]],
    label_issues: npt.NDArray[np.bool_] | None,
    confirm_other: Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
) -> tuple[npt.NDArray[np.bool_], dict[str, int], list[str]]:
    """Each class's standing group (after every gate) grown by ``complete``: the
    class's items a classifier of the group puts in it, which the unsupervised split
    left on the clean side (CIFAR-10 subset, 5% WaNet: 32 of 500 poisons;
    docs/benchmarks.md, session 34). Items the labels family flagged stay with it;
    where there is a look-alike test (``confirm_other``) the joining items must pass
    it too, as the group's own did. Where groups stand in more classes than a backdoor
    targets (the limit of :func:`_extended_groups`), none is completed: growing several
    classes' groups at once would grow clean sub-modes that passed the gates. Returns
    the flags, per class how many joined, and the classes held back.
    """
    classes = np.unique(labels[standing])
    if classes.size > _lone_class_limit(labels):
        return standing, {}, sorted(str(c) for c in classes)
    out = standing.copy()
    added: dict[str, int] = {}
    for c in classes:
        new = np.asarray(complete(standing & (labels == c)), dtype=bool) & ~standing
        if label_issues is not None:
            new &= ~label_issues
        if confirm_other is not None and new.any():
            new &= np.asarray(confirm_other(out | new), dtype=bool)
        if new.any():
            added[str(c)] = int(new.sum())
            out |= new
    return out, added, []


def _drop_classes(
    flags: npt.NDArray[np.bool_],
    labels: npt.NDArray[Any],
    drop: Callable[[npt.NDArray[np.bool_], npt.NDArray[np.bool_]], bool],
) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """``flags`` without the classes for which ``drop(class flags, class members)``
    holds; returns the kept flags and, per class dropped, how many flags it had."""
    kept = flags.copy()
    dropped: dict[str, int] = {}
    for c in np.unique(labels[flags]):
        members = labels == c
        mine = flags & members
        if drop(mine, members):
            kept &= ~members
            dropped[str(c)] = int(mine.sum())
    return kept, dropped


def _class_share_gate(
    flags: npt.NDArray[np.bool_], labels: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """Keep the flags of the classes where they make at least :data:`MIN_CLASS_SHARE` of
    the class; returns the kept flags and, per class held back, how many it had."""
    return _drop_classes(
        flags, labels, lambda mine, members: _below_share(mine, members, MIN_CLASS_SHARE)
    )


def _below_share(
    group: npt.NDArray[np.bool_], members: npt.NDArray[np.bool_], share: float
) -> bool:
    """Whether ``group`` holds less than ``share`` of the class ``members``."""
    return int(group.sum()) < share * int(members.sum())


def _quorum_group(
    found: npt.NDArray[np.bool_], members: npt.NDArray[np.bool_], share: float
) -> bool:
    """Whether the quorum's confirmed flags ``found`` make a sub-population of the class
    ``members``: at least one item and at least ``share`` of the class."""
    group = found & members
    return bool(group.any()) and not _below_share(group, members, share)


def _mostly_label_noise(group: npt.NDArray[np.bool_], label_issues: npt.NDArray[np.bool_]) -> bool:
    """Whether the labels family flagged at least :data:`LONE_LABEL_NOISE_SHARE` of
    ``group``."""
    return int((group & label_issues).sum()) >= LONE_LABEL_NOISE_SHARE * int(group.sum())


def _label_noise_gate(
    flags: npt.NDArray[np.bool_], labels: npt.NDArray[Any], label_issues: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """Drop a class's flags where they are mostly label noise (:func:`_mostly_label_noise`),
    which the labels family judges item by item (the group also took the class's clean
    look-alikes). Returns the kept flags and, per class dropped, how many it had."""
    return _drop_classes(flags, labels, lambda mine, _: _mostly_label_noise(mine, label_issues))


def _near_copy_gate(
    flags: npt.NDArray[np.bool_],
    labels: npt.NDArray[Any],
    spread: Callable[[npt.NDArray[np.bool_]], float],
) -> tuple[npt.NDArray[np.bool_], dict[str, float]]:
    """Drop a class's flags where they are a group of near-copies (its ``spread`` under
    :data:`MIN_GROUP_SPREAD`). Returns the kept flags and, per class dropped, its group's
    spread."""
    spreads: dict[str, float] = {}

    def near_copies(mine: npt.NDArray[np.bool_], members: npt.NDArray[np.bool_]) -> bool:
        value = spread(mine)
        if value < MIN_GROUP_SPREAD:  # NaN (too few items to tell) is kept
            spreads[str(labels[members][0])] = round(value, 3)
            return True
        return False

    kept, _ = _drop_classes(flags, labels, near_copies)
    return kept, spreads


def _combined_score(
    fam_scores: list[npt.NDArray[np.float64]], fam_flags: list[npt.NDArray[np.bool_]]
) -> npt.NDArray[np.float64]:
    """The sample's score from its families' (see the module docstring): flagged
    samples keep the largest (at least 1.0); the others mix the families that flagged
    with the silent ones at :data:`SILENT_FAMILY_WEIGHT` (below 1.0, as both are)."""
    stacked = np.vstack(fam_scores)
    top = np.max(stacked, axis=0)
    spoke = np.array([f.any() for f in fam_flags])
    if spoke.all() or not spoke.any():
        return np.asarray(top, dtype=np.float64)
    a = np.max(stacked[spoke], axis=0)
    b = np.max(stacked[~spoke], axis=0)
    mixed = (a + SILENT_FAMILY_WEIGHT * b) / (1.0 + SILENT_FAMILY_WEIGHT)
    return np.asarray(np.where(top >= 1.0, top, mixed), dtype=np.float64)


def _squash(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Monotone map of the real line onto (-1, 1)."""
    return np.asarray(s / (1.0 + np.abs(s)), dtype=np.float64)


def _family_score(
    results: dict[str, DetectorResult],
    scaled: dict[str, npt.NDArray[np.float64]],
    members: list[str],
    quorum: int,
    fam_flags: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """One family's score per sample (see the module docstring): at least 1.0 where the
    family flagged, below 1.0 elsewhere."""
    q = min(quorum, len(members))
    # Flagged members at max(s, 1); the others below 1 (their flags do not count here).
    voted = np.vstack(
        [
            np.where(np.asarray(results[m].flags, bool), np.maximum(scaled[m], 1.0), -np.inf)
            for m in members
        ]
    )
    ranked = -np.sort(-voted, axis=0)
    # A lone member's confirmed flags (see _confirmed_flags) stand below the quorum:
    # they take that member's own scaled score.
    at_quorum = np.where(np.isfinite(ranked[q - 1]), ranked[q - 1], ranked[0])
    # An item that joined a completed group (see _completed_groups) without any member's
    # flag takes the lowest flagged score.
    at_quorum = np.where(np.isfinite(at_quorum), at_quorum, 1.0)
    short = -np.sort(-np.vstack([_squash(scaled[m]) for m in members]), axis=0)[:q].mean(axis=0)
    return np.asarray(np.where(fam_flags, at_quorum, short), dtype=np.float64)
