"""The ensemble's family quorums on hand-made detector results."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tripwire.detectors import Calibration, DetectorResult, Threat
from tripwire.errors import InputError
from tripwire.scan.ensemble import combine, common_scale, family_of


def confirm(candidates: np.ndarray) -> np.ndarray:
    """An input-space confirmation under which every candidate looks like another class."""
    return np.asarray(candidates, dtype=bool)


def _result(name: str, flagged: list[int], n: int = 20) -> DetectorResult:
    scores = np.linspace(0.0, 1.0, n)
    scores[flagged] = 5.0
    flags = np.zeros(n, dtype=bool)
    flags[flagged] = True
    return DetectorResult(
        detector=name,
        threat=Threat.BACKDOOR,
        scores=scores,
        threshold=2.0,
        flags=flags,
        calibration=Calibration(method="fixed", threshold=2.0),
    )


def test_families() -> None:
    assert family_of("confident-learning") == ("labels", 2)
    assert family_of("training-margin") == ("labels", 2)
    assert family_of("dual-space") == ("dual-space", 1)
    assert family_of("spectre") == ("outliers", 0)
    assert family_of("my-plugin") == ("my-plugin", 1)


def test_a_family_needs_its_quorum_and_outliers_only_rank() -> None:
    res = combine(
        {
            "confident-learning": _result("confident-learning", [1, 2, 3]),
            "knn-label": _result("knn-label", [3, 4]),
            "activation-clustering": _result("activation-clustering", [10, 11]),
            "spectral-signature": _result("spectral-signature", [11, 12]),
            "dual-space": _result("dual-space", [15]),
            "spectre": _result("spectre", [5, 6]),
            "feature-outlier": _result("feature-outlier", [5, 6]),
        },
        20,
    )
    assert np.flatnonzero(res.flags).tolist() == [3, 11, 15]
    assert res.families["outliers"]["quorum"] == "ranks only"
    assert res.families["labels"]["flagged"] == 1
    # The combined score agrees with the verdict: at least 1 exactly where flagged.
    assert np.array_equal(res.scores >= 1.0, res.flags)
    # Outlier flags and a lone label flag raise the score, below every flagged sample;
    # the outlier detectors (a family that flagged nothing) count below a lone vote in
    # a family that did.
    unflagged = res.scores[~res.flags]
    assert unflagged.max() < 1.0 and res.scores[5] > res.scores[0]
    assert res.scores[1] > res.scores[5] > res.scores[7]
    assert res.scores[12] == unflagged.max()  # the feature-cluster family's lone flag


def test_where_no_family_flags_every_family_orders_alike() -> None:
    results = {
        "confident-learning": _result("confident-learning", [1]),
        "knn-label": _result("knn-label", [2]),
        "spectre": _result("spectre", [5]),
        "feature-outlier": _result("feature-outlier", [5]),
    }
    res = combine(results, 20)
    assert not res.flags.any()
    # The outlier detectors' agreement is the strongest evidence here.
    assert res.scores[5] == res.scores.max()
    # Once the labels family flags, its own ordering leads among the rest.
    results["knn-label"] = _result("knn-label", [1, 2])
    res = combine(results, 20)
    assert res.flags[1] and res.scores[2] > res.scores[5]


def test_training_margin_is_a_third_vote_on_labels() -> None:
    """The training run's disputed labels stand where one label check agrees (flips the
    finished model memorised, which knn-label still sees); alone they are ambiguous
    items the network was slow to fit. Run on its own it keeps its flags."""
    results = {
        "confident-learning": _result("confident-learning", [1, 2]),
        "knn-label": _result("knn-label", [1, 3, 4]),
        "training-margin": _result("training-margin", [1, 4, 5]),
    }
    res = combine(results, 20)
    assert np.flatnonzero(res.flags).tolist() == [1, 4]
    assert res.families["labels"]["quorum"] == 2
    assert res.scores[5] < 1.0 <= res.scores[4]
    alone = combine({"training-margin": results["training-margin"]}, 20)
    assert np.flatnonzero(alone.flags).tolist() == [1, 4, 5]


def test_confident_learnings_flip_groups_stand_without_the_quorum() -> None:
    """A flip group (flips concentrated from one class into another, which the model
    learnt, so knn-label's feature neighbours vouch for them) stands on confident
    learning's flags alone; its other lone flags still need the quorum."""
    cl = _result("confident-learning", [1, 2, 3, 7, 8])
    cl.evidence["flip_groups"] = [
        {"given": 7, "likely": 1, "items": 4, "share_of_label": 0.4, "positions": [2, 3, 8, 9]}
    ]
    res = combine({"confident-learning": cl, "knn-label": _result("knn-label", [3, 4])}, 20)
    # 9 is in the group but not flagged by confident learning: it stays unflagged.
    assert np.flatnonzero(res.flags).tolist() == [2, 3, 8]
    assert res.families["labels"]["flip_groups"] == {"7<-1": 3}
    assert np.array_equal(res.scores >= 1.0, res.flags)
    # Without the group the quorum alone decides.
    plain = _result("confident-learning", [1, 2, 3, 7, 8])
    res = combine({"confident-learning": plain, "knn-label": _result("knn-label", [3, 4])}, 20)
    assert np.flatnonzero(res.flags).tolist() == [3]
    assert "flip_groups" not in res.families["labels"]


def test_cluster_families_leave_the_classes_of_a_flip_group_to_the_labels_family() -> None:
    """dual-space sees a flip group as a cluster that looks like another class and takes
    the source class's look-alikes with it: its flags in either class of the group are
    left to the labels family; in other classes they stand."""
    labels = np.repeat(np.arange(4), 5)  # classes 0-3, items 0-4, 5-9, 10-14, 15-19
    cl = _result("confident-learning", [11, 12, 13])
    cl.evidence["flip_groups"] = [
        {"given": 2, "likely": 1, "items": 3, "share_of_label": 0.6, "positions": [11, 12, 13]}
    ]
    dual = _result("dual-space", [5, 6, 11, 12, 13, 14, 16])
    res = combine(
        {"confident-learning": cl, "knn-label": _result("knn-label", []), "dual-space": dual},
        20,
        labels=labels,
    )
    assert np.flatnonzero(res.flags).tolist() == [11, 12, 13, 16]
    assert res.families["dual-space"]["flip_group_classes"] == {"1": 2, "2": 4}
    # Without a flip group dual-space's flags all stand.
    res = combine(
        {
            "confident-learning": _result("confident-learning", [11, 12, 13]),
            "knn-label": _result("knn-label", []),
            "dual-space": dual,
        },
        20,
        labels=labels,
    )
    assert np.flatnonzero(res.flags).tolist() == [5, 6, 11, 12, 13, 14, 16]


def test_flagged_samples_rank_by_their_family_evidence() -> None:
    strong = _result("dual-space", [2])
    strong.scores[2] = 50.0  # far beyond the threshold
    res = combine({"dual-space": strong, "duplicate-labels": _result("duplicate-labels", [4])}, 20)
    assert np.flatnonzero(res.flags).tolist() == [2, 4]
    assert res.scores[2] > res.scores[4] >= 1.0
    # A detector whose flags are gated (not every item over its threshold is flagged):
    # an unflagged item above the threshold still ranks below every flagged one.
    gated = _result("dual-space", [2])
    gated.scores[9] = 40.0
    res = combine({"dual-space": gated}, 20)
    assert res.scores[9] < 1.0 <= res.scores[2]


def test_a_detector_run_alone_keeps_its_flags() -> None:
    for name in ("spectral-signature", "spectre", "confident-learning"):
        res = combine({name: _result(name, [7])}, 20)
        assert np.flatnonzero(res.flags).tolist() == [7]


def test_scores_rank_on_a_common_scale() -> None:
    r = _result("spectral-signature", [7])
    scaled = common_scale(r)
    assert scaled[7] > 1.0
    assert np.sum(scaled > 1.0) == 1


def test_no_detectors_no_flags() -> None:
    res = combine({}, 5)
    assert res.flags.shape == (5,) and not res.flags.any()


def test_feature_cluster_flags_need_the_input_to_look_like_another_class() -> None:
    both = {
        "activation-clustering": _result("activation-clustering", [10, 11, 12]),
        "spectral-signature": _result("spectral-signature", [10, 11, 12]),
        "confident-learning": _result("confident-learning", [3]),
        "knn-label": _result("knn-label", [3]),
    }
    asked: list[list[int]] = []

    def confirm(candidates: np.ndarray) -> np.ndarray:
        asked.append(np.flatnonzero(candidates).tolist())
        out = np.zeros(20, dtype=bool)
        out[[10, 12]] = True  # item 11 looks like its own class
        return out

    res = combine(both, 20, confirm_other=confirm)
    assert asked == [[10, 11, 12]]  # asked once, about the family's own flags
    assert np.flatnonzero(res.flags).tolist() == [3, 10, 12]  # label flags need no gate
    fam = res.families["feature-clusters"]
    assert fam["flagged"] == 2 and fam["unconfirmed"] == 1
    assert res.scores[11] < 1.0 <= res.scores[10]
    # Without the check (None: the inputs do not predict labels) the flags stand.
    assert combine(both, 20).flags[11]
    # A member run alone keeps its flags.
    alone = combine(
        {"activation-clustering": both["activation-clustering"]}, 20, confirm_other=confirm
    )
    assert alone.flags[11]


def test_feature_cluster_flags_stand_only_as_a_share_of_their_class() -> None:
    """A class's own sub-mode (a few items) is held back; a cluster that makes at least
    MIN_CLASS_SHARE of its class stands. Other families are not gated."""
    from tripwire.scan.ensemble import MIN_CLASS_SHARE

    n = 400
    labels = np.repeat([0, 1], n // 2)  # 200 items per class
    big = list(range(0, 20))  # 10% of class 0
    few = list(range(200, 205))  # 2.5% of class 1
    assert len(few) < MIN_CLASS_SHARE * 200 <= len(big)
    results = {
        "activation-clustering": _result("activation-clustering", big + few, n),
        "spectral-signature": _result("spectral-signature", big + few, n),
        "confident-learning": _result("confident-learning", [300], n),
        "knn-label": _result("knn-label", [300], n),
    }
    res = combine(results, n, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == [*big, 300]
    assert res.families["feature-clusters"]["below_class_share"] == {"1": 5}
    assert res.scores[few].max() < 1.0 <= res.scores[big].min()
    # Without labels there is no class gate.
    assert combine(results, n).flags[few].all()
    with pytest.raises(InputError):
        combine(results, n, labels=labels[:-1])


def test_a_lone_members_group_stands_where_it_mostly_looks_like_another_class() -> None:
    """Activation clustering finds a warped set that spectral signatures miss: where most
    of that group looks like other classes as inputs, its confirmed items stand without
    the quorum; a lone group that mostly looks like its own class does not."""
    from tripwire.scan.ensemble import LONE_CONFIRMED_SHARE

    n = 400
    labels = np.repeat([0, 1], n // 2)
    warped = list(range(0, 40))  # 20% of class 0, found by one member only
    submode = list(range(200, 240))  # 20% of class 1, found by one member only
    looks_other = set(warped[:36]) | set(submode[:10])  # 90% and 25% of the groups
    assert 10 / 40 < LONE_CONFIRMED_SHARE <= 36 / 40
    results = {
        "activation-clustering": _result("activation-clustering", warped + submode, n),
        "spectral-signature": _result("spectral-signature", [0, 1], n),
    }
    asked: list[list[int]] = []

    def confirm(candidates: np.ndarray) -> np.ndarray:
        asked.append(np.flatnonzero(candidates).tolist())
        out = np.zeros(n, dtype=bool)
        out[sorted(looks_other)] = True
        return out & candidates

    res = combine(results, n, confirm_other=confirm, labels=labels)
    # The quorum is judged with every member's candidates left out together (the
    # union); a lone member's groups with its own flags left out.
    assert asked == [warped + submode, warped + submode]
    assert np.flatnonzero(res.flags).tolist() == warped[:36]
    fam = res.families["feature-clusters"]
    assert fam["lone_confirmed"] == {"activation-clustering:0": 34}  # 0 and 1 had quorum
    assert res.scores[warped[:36]].min() >= 1.0 > res.scores[submode].max()
    # Without labels there are no class groups: only the quorum's confirmed flags stand.
    assert np.flatnonzero(combine(results, n, confirm_other=confirm).flags).tolist() == [0, 1]


def test_lone_groups_in_many_classes_are_left_to_the_labels_family() -> None:
    """Label noise spread over the set makes confirmed lone groups in many classes; a
    backdoor's go to its target. Groups in more than MAX_LONE_CLASS_SHARE of the classes
    are held back (and reported)."""
    from tripwire.scan.ensemble import MAX_LONE_CLASS_SHARE

    n = 500
    labels = np.repeat(np.arange(5), 100)
    groups = [list(range(c * 100, c * 100 + 20)) for c in range(3)]  # 20% of 3 classes
    assert len(groups) > max(1, int(MAX_LONE_CLASS_SHARE * 5))
    flagged = [i for g in groups for i in g]
    results = {
        "activation-clustering": _result("activation-clustering", flagged, n),
        "spectral-signature": _result("spectral-signature", [], n),
    }

    res = combine(results, n, confirm_other=confirm, labels=labels)
    assert not res.flags.any()
    fam = res.families["feature-clusters"]
    assert fam["lone_held_back"] == [f"activation-clustering:{c}" for c in range(3)]
    # The same group in one class only stands.
    one = {
        "activation-clustering": _result("activation-clustering", groups[1], n),
        "spectral-signature": _result("spectral-signature", [], n),
    }
    res = combine(one, n, confirm_other=confirm, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == groups[1]


def test_one_members_false_alarms_do_not_hold_back_the_others_group() -> None:
    """The class limit is counted per member and only over sub-populations: a member's
    few confirmed items in many classes, or another member's groups in many classes,
    do not hold back a member's one group at the target (GTSRB: spectral signatures'
    top items in 14 classes, activation clustering's sub-modes in 3)."""
    from tripwire.scan.ensemble import MAX_LONE_CLASSES, MIN_CLASS_SHARE

    n_classes, per = 20, 100
    n = n_classes * per
    labels = np.repeat(np.arange(n_classes), per)
    target = list(range(0, 30))  # 30% of class 0
    few = [c * per for c in range(1, 15)]  # one item in each of 14 classes
    assert MIN_CLASS_SHARE * per > 1
    modes = range(15, 15 + MAX_LONE_CLASSES + 1)  # 20% of each of three classes
    submodes = [c * per + i for c in modes for i in range(20)]
    results = {
        "spectral-signature": _result("spectral-signature", target + few, n),
        "activation-clustering": _result("activation-clustering", submodes, n),
    }

    res = combine(results, n, confirm_other=confirm, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == target
    fam = res.families["feature-clusters"]
    assert fam["lone_confirmed"] == {"spectral-signature:0": 30}
    assert len(fam["lone_below_class_share"]) == len(few)
    assert fam["lone_held_back"] == sorted(f"activation-clustering:{c}" for c in modes)
    # The cap is absolute: many classes do not let a member's groups in three stand.
    assert not res.flags[submodes].any()


def test_held_back_lone_items_still_extend_the_quorums_group() -> None:
    """A member with lone groups in too many classes has them held back, except in a
    class where the quorum's confirmed flags already make a sub-population: there its
    lone items are the rest of that group (GTSRB 1% blend: 29 poisons beside two clean
    sub-modes). Quorum flags below the class share do not count as such a finding."""
    from tripwire.scan.ensemble import MAX_LONE_CLASSES

    n_classes, per = 20, 100
    n = n_classes * per
    labels = np.repeat(np.arange(n_classes), per)
    both = list(range(0, 20))  # the quorum's group in class 0
    extra = list(range(20, 30))  # the rest of it, activation clustering only
    modes = range(15, 15 + MAX_LONE_CLASSES)  # 20% of each of two more classes
    submodes = [c * per + i for c in modes for i in range(20)]
    stray = [5 * per + i for i in range(2)]  # quorum flags under the class share
    ac = both + extra + submodes + [5 * per + i for i in range(20)]
    results = {
        "spectral-signature": _result("spectral-signature", both + stray, n),
        "activation-clustering": _result("activation-clustering", ac, n),
    }

    res = combine(results, n, confirm_other=confirm, labels=labels)
    fam = res.families["feature-clusters"]
    assert np.flatnonzero(res.flags).tolist() == both + extra
    assert fam["lone_confirmed"] == {"activation-clustering:0": len(extra)}
    assert fam["lone_held_back"] == sorted(f"activation-clustering:{c}" for c in [5, *modes])


def test_without_input_evidence_lone_flags_extend_only_the_quorums_group() -> None:
    """Where the inputs do not predict their labels there is no look-alike test: a lone
    member's flags stand only in a class where the quorum's flags already make a
    sub-population holding a good part of that member's flags (the rest of a warped set
    that spectral signatures ranked in part); elsewhere, beside quorum flags under the
    class share, or where the quorum only grazes the member's group, they stay out."""
    from tripwire.scan.ensemble import MIN_CLASS_SHARE, MIN_EXTENDED_SHARE

    n = 600
    labels = np.repeat([0, 1, 2], 200)
    both = list(range(0, 20))  # 10% of class 0: the quorum's group
    rest = list(range(20, 45))  # the rest of it, activation clustering only
    grazed = list(range(200, 212))  # 6% of class 1, at quorum ...
    submode = list(range(212, 260))  # ... inside activation clustering's 60 there
    stray = [400, 401]  # the quorum's flags in class 2, under the class share
    near = list(range(402, 430))  # activation clustering's lone flags beside them
    assert len(stray) < MIN_CLASS_SHARE * 200 <= min(len(both), len(grazed))
    assert len(grazed) < MIN_EXTENDED_SHARE * (len(grazed) + len(submode))
    assert len(both) >= MIN_EXTENDED_SHARE * (len(both) + len(rest))
    ac = both + rest + grazed + submode + stray + near
    results = {
        "activation-clustering": _result("activation-clustering", ac, n),
        "spectral-signature": _result("spectral-signature", both + grazed + stray, n),
    }
    res = combine(results, n, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == both + rest + grazed
    fam = res.families["feature-clusters"]
    assert fam["lone_extended"] == {"activation-clustering:0": len(rest)}
    assert fam["below_class_share"] == {"2": len(stray)}
    assert res.scores[rest].min() >= 1.0 > res.scores[submode + near].max()
    # With look-alike evidence the lone flags are judged by it instead.
    none_other = combine(results, n, labels=labels, confirm_other=lambda c: np.zeros(n, bool))
    assert not none_other.flags.any()
    # Without labels there are no classes to extend.
    assert np.flatnonzero(combine(results, n).flags).tolist() == both + grazed + stray


def test_without_input_evidence_extensions_in_many_classes_are_held_back() -> None:
    """A backdoor targets one or two classes: a member that would extend standing groups
    in more classes extends none (clean sub-modes beside label noise), and lone items
    the labels family flagged are left to it."""
    from tripwire.scan.ensemble import MAX_LONE_CLASSES

    n_classes, per = 20, 100
    n = n_classes * per
    labels = np.repeat(np.arange(n_classes), per)
    classes = range(MAX_LONE_CLASSES + 1)
    quorum = [c * per + i for c in classes for i in range(10)]  # 10% of each class
    lone = [c * per + i for c in classes for i in range(10, 15)]
    results = {
        "activation-clustering": _result("activation-clustering", quorum + lone, n),
        "spectral-signature": _result("spectral-signature", quorum, n),
    }
    res = combine(results, n, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == quorum
    fam = res.families["feature-clusters"]
    assert fam["lone_extension_held_back"] == [f"activation-clustering:{c}" for c in classes]
    # In one class the same extension stands, unless the label checks flagged it.
    one = {
        k: _result(k, [i for i in r_flags if i < per], n)
        for k, r_flags in (("activation-clustering", quorum + lone), ("spectral-signature", quorum))
    }
    assert np.flatnonzero(combine(one, n, labels=labels).flags).tolist() == list(range(15))
    noisy = {
        **one,
        "confident-learning": _result("confident-learning", list(range(10, 15)), n),
        "knn-label": _result("knn-label", list(range(10, 15)), n),
    }
    res = combine(noisy, n, labels=labels)
    assert "lone_extended" not in res.families["feature-clusters"]


def test_a_lone_group_the_label_checks_flagged_is_left_to_them() -> None:
    """A lone group made mostly of items the labels family flagged is label noise: the
    labels family's verdict stands for it, and the pair's lone flags (which also take
    clean items next to the flips) are not added. A backdoor's group, which the label
    checks pass, stands."""
    from tripwire.scan.ensemble import LONE_LABEL_NOISE_SHARE

    n = 500
    labels = np.repeat(np.arange(5), 100)
    group = list(range(100, 130))  # 30% of class 1, found by one member only
    flips = group[:24]  # 80% of it flagged by both label checks
    assert len(flips) >= LONE_LABEL_NOISE_SHARE * len(group)

    def results(label_flagged: list[int]) -> dict[str, DetectorResult]:
        return {
            "activation-clustering": _result("activation-clustering", group, n),
            "spectral-signature": _result("spectral-signature", [], n),
            "confident-learning": _result("confident-learning", label_flagged, n),
            "knn-label": _result("knn-label", label_flagged, n),
        }

    res = combine(results(flips), n, confirm_other=confirm, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == flips  # the labels family's, not the group
    fam = res.families["feature-clusters"]
    assert fam["flagged"] == 0 and fam["lone_label_noise"] == ["activation-clustering:1"]
    # The label checks passed the group (a backdoor's consistent label): it stands.
    res = combine(results([]), n, confirm_other=confirm, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == group
    # One label check alone is not the labels family's verdict.
    one = results(flips)
    one["knn-label"] = _result("knn-label", [], n)
    assert (
        np.flatnonzero(combine(one, n, confirm_other=confirm, labels=labels).flags).tolist()
        == group
    )


def test_feature_cluster_flags_in_a_class_of_label_noise_are_left_to_the_labels_family() -> None:
    """The pair's quorum finds the flips of a class (they look like another class) and
    the clean look-alikes beside them. Where the labels family flagged most of that
    group, the class's feature-cluster flags are dropped and only the labels family's
    verdict stands; in a class whose group the label checks pass (a backdoor's target),
    the group stands."""
    n = 500
    labels = np.repeat(np.arange(5), 100)
    flips = list(range(0, 30))  # class 0: flips found by both label checks
    lookalikes = list(range(30, 38))  # class 0: clean, taken by the pair with the flips
    poisons = list(range(100, 130))  # class 1: a backdoor's poisons, label checks pass
    pair = flips + lookalikes + poisons

    results = {
        "activation-clustering": _result("activation-clustering", pair, n),
        "spectral-signature": _result("spectral-signature", pair, n),
        "confident-learning": _result("confident-learning", flips, n),
        "knn-label": _result("knn-label", flips, n),
    }
    res = combine(results, n, confirm_other=confirm, labels=labels)
    assert np.flatnonzero(res.flags).tolist() == flips + poisons
    fam = res.families["feature-clusters"]
    assert fam["label_noise_classes"] == {"0": 38} and fam["flagged"] == 30
    # Without the label checks there is no such evidence: the pair's flags stand.
    alone = {
        k: v for k, v in results.items() if k in ("activation-clustering", "spectral-signature")
    }
    assert (
        np.flatnonzero(combine(alone, n, confirm_other=confirm, labels=labels).flags).tolist()
        == pair
    )


def test_feature_cluster_groups_of_near_copies_are_held_back() -> None:
    """A class's flagged group that is far tighter in input space than its class (frames
    of one video track) is a clean sub-mode: held back and reported with its spread. A
    group as spread as its class stands, and so does one too small to measure (NaN)."""
    from tripwire.scan.ensemble import MIN_GROUP_SPREAD

    n = 600
    labels = np.repeat([0, 1, 2], n // 3)
    copies, poisons, unknown = list(range(0, 30)), list(range(200, 240)), list(range(400, 420))
    flagged = copies + poisons + unknown
    results = {
        "activation-clustering": _result("activation-clustering", flagged, n),
        "spectral-signature": _result("spectral-signature", flagged, n),
        "dual-space": _result("dual-space", [5], n),
    }
    asked: list[int] = []

    def spread(group: np.ndarray) -> float:
        (cls,) = np.unique(labels[group])
        asked.append(int(cls))
        return {0: 0.2, 1: 1.1, 2: float("nan")}[int(cls)]

    res = combine(results, n, labels=labels, spread=spread)
    assert sorted(asked) == [0, 1, 2]
    # Another family's flag in that class is not held back with the group.
    assert np.flatnonzero(res.flags).tolist() == sorted([5, *poisons, *unknown])
    entry = res.families["feature-clusters"]
    assert entry["near_copy_classes"] == {"0": 0.2}
    assert entry["min_group_spread"] == MIN_GROUP_SPREAD
    others = [i for i in copies if i != 5]
    assert res.scores[others].max() < 1.0 <= res.scores[poisons].min()
    # Without the check (no spread given, or no labels) the group stands.
    assert combine(results, n, labels=labels).flags[copies].all()
    assert combine(results, n, spread=spread).flags[copies].all()


def _planted(flagged: list[int], estimated: float, n: int = 20) -> DetectorResult:
    res = _result("training-margin", flagged, n)
    cal = Calibration(method="planted", threshold=2.0, details={"estimated_mislabelled": estimated})
    return replace(res, threat=Threat.POISONING, calibration=cal)


def test_a_label_quorum_beyond_the_planted_estimate_is_held_back() -> None:
    label_checks = {
        "confident-learning": _result("confident-learning", [1, 2, 3, 4, 5, 6, 7, 8]),
        "knn-label": _result("knn-label", [1, 2, 3, 4, 5, 6, 7, 8, 9]),
    }
    # The calibrators estimate 2 mislabelled items; the quorum flags 8: at most a
    # quarter of them could be flips, so training-margin's planted cut decides.
    res = combine({**label_checks, "training-margin": _planted([1, 12], 2.0)}, 20)
    assert np.flatnonzero(res.flags).tolist() == [1, 12]
    fam = res.families["labels"]
    assert fam["quorum_flagged"] == 8 and fam["quorum_held_back"] == 7
    assert fam["estimated_mislabelled"] == 2.0
    # An estimate the quorum is consistent with (8 flags, 6 estimated): the quorum
    # stands; training-margin's vote for 9 would go beyond the estimate.
    res = combine({**label_checks, "training-margin": _planted([1, 9, 12], 6.0)}, 20)
    assert np.flatnonzero(res.flags).tolist() == list(range(1, 9))
    assert "quorum_held_back" not in res.families["labels"]
    assert res.families["labels"]["vote_held_back"] == 1
    # A robust cut (no calibrators) never holds the quorum back.
    res = combine({**label_checks, "training-margin": _result("training-margin", [12])}, 20)
    assert np.flatnonzero(res.flags).tolist() == list(range(1, 9))


def test_a_quorum_the_training_run_corroborates_stands_against_a_low_estimate() -> None:
    label_checks = {
        "confident-learning": _result("confident-learning", [1, 2, 3, 4, 5, 6, 7, 8]),
        "knn-label": _result("knn-label", [1, 2, 3, 4, 5, 6, 7, 8]),
    }
    # Flips the network fits sooner than its random calibrators: the estimate reads 0
    # and the planted cut flags nothing, but the run's margins put the quorum's items
    # far out in its own tail. The estimate is what is off: the quorum stands.
    tm = _planted([], 0.0)
    tm.scores[1:10] = 9.0
    label_checks["knn-label"] = _result("knn-label", [1, 2, 3, 4, 5, 6, 7, 8, 9])
    res = combine({**label_checks, "training-margin": tm}, 20)
    # The planted cut rests on the same estimate: the run votes at its robust cut,
    # which joins knn-label on 9.
    assert np.flatnonzero(res.flags).tolist() == list(range(1, 10))
    fam = res.families["labels"]
    assert fam["estimate_overruled"] is True and fam["quorum_corroborated"] == 1.0
    assert fam["margin_robust_votes"] == 9 and "quorum_held_back" not in fam
    tm.scores[9] = 0.5
    # Only half of them in the run's tail: still corroborated; three of eight: not.
    tm.scores[5:9] = 0.5
    assert combine({**label_checks, "training-margin": tm}, 20).flags[1:9].all()
    tm.scores[4] = 0.5
    res = combine({**label_checks, "training-margin": tm}, 20)
    assert not res.flags.any() and res.families["labels"]["quorum_corroborated"] == 0.375


def test_the_margin_vote_fills_the_other_checks_agreement_up_to_the_estimate() -> None:
    label_checks = {
        "confident-learning": _result("confident-learning", [1, 2, 3, 4, 5, 6]),
        "knn-label": _result("knn-label", [1, 2, 3, 4, 7, 8]),
    }
    # The two agree on 4; training-margin votes for 5, 6, 7, 8 (its scores rank 8, 5
    # highest); the calibrators estimate 6 mislabelled: two of its votes stand.
    tm = _planted([5, 6, 7, 8], 6.0)
    tm.scores[[8, 5, 7, 6]] = [9.0, 8.0, 7.0, 6.0]
    res = combine({**label_checks, "training-margin": tm}, 20)
    assert np.flatnonzero(res.flags).tolist() == [1, 2, 3, 4, 5, 8]
    assert res.families["labels"]["vote_held_back"] == 2
    # Room for all of them: nothing is held back.
    res = combine({**label_checks, "training-margin": _planted([5, 6, 7, 8], 9.0)}, 20)
    assert np.flatnonzero(res.flags).tolist() == list(range(1, 9))
    assert "vote_held_back" not in res.families["labels"]


def test_a_standing_group_is_completed_by_the_items_like_it() -> None:
    """Once a feature-cluster group stands in a class, the items that a classifier of the
    group puts in it join (poisons left on the clean side of the split); items the labels
    family flagged stay with it, a look-alike test must pass the newcomers too, and
    groups in more classes than a backdoor targets are not completed."""
    from tripwire.scan.ensemble import MAX_LONE_CLASSES

    n = 600
    labels = np.repeat([0, 1, 2], 200)
    group = list(range(0, 30))  # 15% of class 0, both members
    like = [30, 31, 32, 33]  # what the completion says is like it
    asked: list[list[int]] = []

    def complete(g: np.ndarray) -> np.ndarray:
        asked.append(np.flatnonzero(g).tolist())
        out = np.zeros(n, dtype=bool)
        out[like] = True
        return out & (labels == labels[g][0])

    results = {
        "activation-clustering": _result("activation-clustering", group, n),
        "spectral-signature": _result("spectral-signature", group, n),
    }
    res = combine(results, n, labels=labels, complete=complete)
    assert asked == [group]
    assert np.flatnonzero(res.flags).tolist() == group + like
    assert res.families["feature-clusters"]["completed"] == {"0": len(like)}
    assert res.scores[like].min() >= 1.0  # flagged items outrank the rest
    # Items the label checks flagged are theirs.
    noisy = {
        **results,
        "confident-learning": _result("confident-learning", like[:2], n),
        "knn-label": _result("knn-label", like[:2], n),
    }
    res = combine(noisy, n, labels=labels, complete=complete)
    assert res.families["feature-clusters"]["completed"] == {"0": 2}
    # Where inputs can be compared, the newcomers must look like another class too.
    only_group = lambda c: np.asarray(c, dtype=bool) & (np.arange(n) < 30)  # noqa: E731
    res = combine(results, n, labels=labels, confirm_other=only_group, complete=complete)
    assert np.flatnonzero(res.flags).tolist() == group
    assert "completed" not in res.families["feature-clusters"]
    # Groups in more classes than a backdoor targets: none is completed.
    classes = range(MAX_LONE_CLASSES + 1)
    many = [c * 200 + i for c in classes for i in range(30)]
    wide = {k: _result(k, many, n) for k in ("activation-clustering", "spectral-signature")}
    res = combine(wide, n, labels=labels, complete=complete)
    assert np.flatnonzero(res.flags).tolist() == many
    assert res.families["feature-clusters"]["completion_held_back"] == [str(c) for c in classes]


def test_a_behaviour_group_names_the_poisons_side_of_its_class() -> None:
    """Where the behaviour family flags part of a class, the class's items on the
    group's side of the split join it, and the feature-cluster flags on the other side
    (the clean remainder, where poisons are most of the class) are dropped; below the
    class share, or in more classes than a backdoor targets, nothing happens."""
    from tripwire.scan.ensemble import MAX_LONE_CLASSES

    n = 600
    labels = np.repeat([0, 1, 2], 200)
    poisons = list(range(0, 150))  # 75% of class 0
    seen = poisons[:60]  # what the behavioural test caught
    clean_side = list(range(150, 200))  # what the feature split's smaller side holds
    asked: list[list[int]] = []

    def side(g: np.ndarray) -> np.ndarray:
        asked.append(np.flatnonzero(g).tolist())
        out = np.zeros(n, dtype=bool)
        c = labels[g][0]
        if c == 0:
            out[poisons] = True
        else:  # the other classes' poisons side: their first 150 items
            out[c * 200 : c * 200 + 150] = True
        return out & ~g

    results = {
        "activation-clustering": _result("activation-clustering", clean_side, n),
        "spectral-signature": _result("spectral-signature", clean_side, n),
        "perturbation-consistency": _result("perturbation-consistency", seen, n),
    }
    without = combine(results, n, labels=labels)
    assert np.flatnonzero(without.flags).tolist() == seen + clean_side
    res = combine(results, n, labels=labels, side=side)
    assert asked == [seen]
    assert np.flatnonzero(res.flags).tolist() == poisons
    assert res.families["behaviour"]["anchored_sides"] == {"0": 90}
    assert res.families["feature-clusters"]["off_anchored_side"] == {"0": 50}
    assert res.scores[poisons].min() >= 1.0 > res.scores[clean_side].max()
    # Items the labels family flagged are theirs.
    noisy = {
        **results,
        "confident-learning": _result("confident-learning", [100, 101], n),
        "knn-label": _result("knn-label", [100, 101], n),
    }
    res = combine(noisy, n, labels=labels, side=side)
    assert res.families["behaviour"]["anchored_sides"] == {"0": 88}
    # A behaviour group under the class share names no side.
    few = {**results, "perturbation-consistency": _result("perturbation-consistency", [0, 1], n)}
    res = combine(few, n, labels=labels, side=side)
    assert "anchored_sides" not in res.families["behaviour"]
    # Groups in more classes than a backdoor targets: none names a side.
    many = [c * 200 + i for c in range(MAX_LONE_CLASSES + 1) for i in range(60)]
    wide = {**results, "perturbation-consistency": _result("perturbation-consistency", many, n)}
    res = combine(wide, n, labels=labels, side=side)
    assert res.families["behaviour"]["anchored_sides_held_back"] == ["0", "1", "2"]
    assert np.flatnonzero(res.flags & (labels == 0)).tolist() == seen + clean_side
