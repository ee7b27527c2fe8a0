"""confident-learning and knn-label on generated classes with flipped labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tripwire.detectors import DetectorInput, DetectorResult, Need, Threat, get
from tripwire.errors import InputError


def label_data(
    flip: float,
    *,
    sep: float = 1.2,
    seed: int = 0,
    noise_seed: int | None = None,
    n: int = 300,
    k: int = 4,
    dim: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, out-of-sample probabilities, observed labels and the flipped mask.

    ``k`` unit-variance Gaussian classes of ``n`` items in ``dim`` dimensions; a share
    ``flip`` of all labels is replaced by another class, uniformly. The probabilities
    are the Bayes posteriors under the true class means: what a well-specified model
    that never saw the noisy labels would predict (no training needed).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, dim)) * sep
    noise = np.random.default_rng(seed + 1000 if noise_seed is None else noise_seed)
    y_true = np.repeat(np.arange(k), n)
    x = means[y_true] + noise.normal(size=(k * n, dim))
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=2)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y = y_true.copy()
    m = round(flip * y.size)
    idx = noise.choice(y.size, m, replace=False)
    y[idx] = (y[idx] + noise.integers(1, k, m)) % k
    return x, probs, y, y != y_true


def detect(name: str, x: np.ndarray, p: np.ndarray, y: np.ndarray, **kw: Any) -> DetectorResult:
    return get(name)(**kw).detect(DetectorInput(features=x, probs=p, labels=y))


def quality(truth: np.ndarray, res: DetectorResult) -> tuple[float, float, float]:
    """AUROC, recall and precision of the flags."""
    precision = float(truth[res.flags].mean()) if res.flags.any() else 0.0
    return float(roc_auc_score(truth, res.scores)), float(res.flags[truth].mean()), precision


def test_registered_with_their_needs() -> None:
    assert get("confident-learning").needs == frozenset({Need.PROBS, Need.LABELS})
    assert get("knn-label").needs == frozenset({Need.FEATURES, Need.LABELS})
    assert get("confident-learning").threat == get("knn-label").threat == Threat.POISONING


# -- confident learning ----------------------------------------------------------------


@pytest.mark.parametrize("flip", [0.05, 0.10, 0.20])
def test_confident_learning_finds_flips(flip: float) -> None:
    x, p, y, truth = label_data(flip)
    res = detect("confident-learning", x, p, y)
    auroc, recall, precision = quality(truth, res)
    assert auroc > 0.99 and recall >= 0.9 and precision >= 0.9
    assert res.calibration.method == "robust-z"
    ev = res.evidence
    joint = np.array(ev["confident_joint"])
    assert joint.sum() + ev["no_confident_class"] == y.size
    assert ev["off_diagonal"] == pytest.approx(truth.sum(), rel=0.15)
    assert all(0.0 < t < 1.0 for t in ev["thresholds"])
    # Flags are the calibrated joint's estimated issues, ranked first.
    assert res.flags.sum() == pytest.approx(np.array(ev["estimated_issues"]).sum(), abs=3)


def test_pruning_by_noise_rate_counts_flips_that_reach_no_threshold() -> None:
    from tripwire.detectors.poisoning.label_noise import noise_rate_issues, per_class_thresholds

    # Three classes of 300; 30 items of each are labelled the next class. A third of all
    # items, flipped or not, only lean to their class (none reaches its threshold): the
    # raw joint's off-diagonal cells hold two thirds of the flips, the calibrated joint
    # (rows rescaled to the label counts) all of them.
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(3), 300)
    y = y_true.copy()
    flipped = np.zeros(900, bool)
    for c in range(3):
        idx = rng.choice(np.flatnonzero(y_true == c), 30, replace=False)
        y[idx] = (c + 1) % 3
        flipped[idx] = True
    p = np.full((900, 3), 0.05)
    p[np.arange(900), y_true] = 0.9
    lean = np.zeros(900, bool)
    for c in range(3):
        for group in (flipped, ~flipped):
            members = np.flatnonzero(group & (y == c))
            lean[members[: len(members) // 3]] = True
    for i in np.flatnonzero(lean):
        other = (y_true[i] + 1) % 3 if not flipped[i] else y[i]
        p[i] = 0.1
        p[i, y_true[i]] = 0.6
        p[i, other] = 0.3
    issues, pruned = noise_rate_issues(p, y, per_class_thresholds(p, y))
    assert pruned.sum() == pytest.approx(90, abs=3)
    assert (issues & flipped).sum() >= 87 and (issues & ~flipped).sum() <= 3
    res = detect("confident-learning", np.zeros((900, 2)), p, y)
    assert res.evidence["off_diagonal"] == 60  # what the raw joint alone would flag
    assert res.flags[flipped].mean() >= 0.95 and res.flags[~flipped].sum() <= 3


def _many_classes_flipped(
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forty classes of 100; 5% of all labels flipped to a random other class, so that
    nearly every cell of the joint holds at most one flip. What a proxy on the features
    of a model that memorised the flips gives: each flip's probability of its true class
    pulled below that class's usual confidence (0.7 against 0.95) while its label is
    ruled out (0.001). Also 80 clean items torn between their class and one other
    (0.45 / 0.5): the label doubted, not ruled out. Returns probabilities, labels, the
    flipped and the torn masks."""
    rng = np.random.default_rng(seed)
    k, n = 40, 100
    y_true = np.repeat(np.arange(k), n)
    y = y_true.copy()
    flipped = np.zeros(k * n, bool)
    idx = rng.choice(k * n, k * n // 20, replace=False)
    y[idx] = (y[idx] + rng.integers(1, k, idx.size)) % k
    flipped[idx] = True
    p = np.full((k * n, k), 0.05 / (k - 1))
    p[np.arange(k * n), y_true] = 0.95
    torn = np.zeros(k * n, bool)
    torn[rng.choice(np.flatnonzero(~flipped), 80, replace=False)] = True
    for i in np.flatnonzero(flipped):
        p[i] = 0.299 / (k - 2)
        p[i, y_true[i]], p[i, y[i]] = 0.7, 0.001
    for i in np.flatnonzero(torn):
        p[i] = 0.05 / (k - 2)
        p[i, y_true[i]], p[i, (y_true[i] + 1) % k] = 0.45, 0.5
    p = 0.99 * p + 0.01 * rng.dirichlet(np.ones(k), k * n)
    return p, y, flipped, torn


def test_decisively_contradicted_labels_count_without_a_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tripwire.detectors.poisoning import label_noise as ln

    p, y, flipped, torn = _many_classes_flipped()
    issues, _ = ln.noise_rate_issues(p, y, ln.per_class_thresholds(p, y))
    # The torn items are not counted (their likelihood ratio is about 1): the count
    # stays near the number of flips, not 80 above it.
    assert (issues & flipped).sum() >= 0.95 * flipped.sum()
    assert issues.sum() <= flipped.sum() + 10 and (issues & torn).sum() <= 5
    # Without the likelihood-ratio rule no flip reaches its class's threshold: the
    # calibrated joint holds none of them.
    monkeypatch.setattr(ln, "DECISIVE_RATIO", np.inf)
    issues, _ = ln.noise_rate_issues(p, y, ln.per_class_thresholds(p, y))
    assert (issues & flipped).sum() <= 0.2 * flipped.sum()


def test_the_count_rounds_its_total_not_each_cell() -> None:
    from tripwire.detectors.poisoning.label_noise import noise_rate_issues, per_class_thresholds

    # Ten classes of 100. In each label's 70 confident items, 4 flips from four other
    # classes (one per cell); its other 30 items lean to their class (0.5), 2 of them
    # flips from the first two of those classes. Each of the 40 cells with a flip is
    # rescaled to 100 / 70 = 1.43 items: rounded cell by cell that is 40 issues for 60
    # flips, rounded in total 57.
    k = 10
    rows: list[np.ndarray] = []
    labels: list[int] = []
    flipped: list[bool] = []

    def item(true: int, given: int, p_true: float, p_given: float) -> None:
        row = np.full(k, (1.0 - p_true - p_given) / (k - 2))
        row[true], row[given] = p_true, p_given
        rows.append(row)
        labels.append(given)
        flipped.append(true != given)

    def clean(c: int, p_own: float) -> None:
        rows.append(np.full(k, (1.0 - p_own) / (k - 1)))
        rows[-1][c] = p_own
        labels.append(c)
        flipped.append(False)

    for c in range(k):
        for _ in range(66):
            clean(c, 0.95)
        for d in range(1, 5):
            item((c + d) % k, c, 0.95, 0.005)
        for _ in range(28):
            clean(c, 0.5)
        for d in (1, 2):
            item((c + d) % k, c, 0.5, 0.1)
    p, y, truth = np.array(rows), np.array(labels), np.array(flipped)
    issues, pruned = noise_rate_issues(p, y, per_class_thresholds(p, y))
    assert pruned.sum() == 40
    assert issues.sum() == 57 and (issues & truth).sum() == 57


def _pair_flipped(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of a proxy that learnt pair flips: three classes of 300, 40% of
    class 0 labelled 1; half of class 2 is hard (no class above 0.4), correctly
    labelled. Items that look like a 0 get ``p_1 = 0.4`` (what a proxy trained on these
    labels predicts); a little noise so that nothing ties."""
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(3), 300)
    y = y_true.copy()
    flipped = np.zeros(900, bool)
    idx = rng.choice(300, 120, replace=False)
    y[idx], flipped[idx] = 1, True
    p = np.zeros((900, 3))
    p[y_true == 0] = [0.6, 0.4, 0.0]
    p[y_true == 1] = [0.0, 1.0, 0.0]
    p[y_true == 2] = [0.0, 0.0, 1.0]
    p[600:750] = [0.36, 0.34, 0.30]
    p = 0.95 * p + 0.05 * rng.dirichlet(np.ones(3), 900)
    return p, y, flipped


def test_label_error_posterior_reads_structured_noise() -> None:
    """Where flips go from one class to one other, a hard but correctly labelled item
    has a lower own probability than a flipped one; the posterior under the estimated
    noise (no flips into class 2) trusts it, and the issues are the flips."""
    from tripwire.detectors.poisoning.label_noise import (
        calibrated_joint,
        label_error_posterior,
        noise_rate_issues,
        per_class_thresholds,
    )

    p, y, flipped = _pair_flipped()
    rows = np.arange(y.size)

    def precision_of_top(score: np.ndarray) -> float:
        return float(flipped[np.argsort(-score, kind="stable")[: flipped.sum()]].mean())

    # The given label's own probability puts the hard 2s before the flips ...
    assert precision_of_top(1 - p[rows, y]) < 0.2
    thresholds = per_class_thresholds(p, y)
    err = label_error_posterior(p, y, calibrated_joint(p, y, thresholds))
    # ... the posterior does not, and the issues (as many as the calibrated joint
    # counts; about half the flips reach class 0's threshold here) are flips.
    assert precision_of_top(err) > 0.95
    issues, pruned = noise_rate_issues(p, y, thresholds)
    assert issues.sum() == pruned.sum() >= 40
    assert (issues & ~flipped).sum() <= 2


def test_label_error_posterior_is_own_probability_under_diffuse_noise() -> None:
    """With no noise estimated (the identity), the posterior orders items by their given
    label's probability alone."""
    from tripwire.detectors.poisoning.label_noise import label_error_posterior

    _, p, y, _ = label_data(0.0)
    err = label_error_posterior(p, y, np.diag(np.bincount(y).astype(float)))
    rows = np.arange(y.size)
    assert np.allclose(err, 0.0)
    # Diffuse noise, the same everywhere: the order is the own probability's.
    joint = np.full((4, 4), 10.0) + np.diag(np.full(4, 260.0))
    err = label_error_posterior(p, y, joint)
    assert (np.diff(err[np.argsort(-p[rows, y])]) >= -1e-12).all()


def test_group_share_estimates_the_source_share() -> None:
    """Items of a label: 60% its own (statistic near -4), 40% a source class's items
    (near 0, as the source's own items are): the estimated share is 0.4; with no
    source items in the label, about 0."""
    from tripwire.detectors.poisoning.label_noise import group_share

    rng = np.random.default_rng(0)
    own = rng.normal(-4.0, 0.7, 600)
    source = rng.normal(0.0, 0.6, 500)
    mixed = np.concatenate([own, rng.normal(0.0, 0.6, 400)])
    assert group_share(mixed, source) == pytest.approx(0.4, abs=0.03)
    assert group_share(own, source) < 0.01
    # Flipped items that drifted towards their new label are still counted.
    drifted = np.concatenate([own, rng.normal(-0.25, 0.6, 400)])
    assert group_share(drifted, source) >= 0.32
    assert group_share(np.array([]), source) == 0.0
    with pytest.raises(InputError, match="quantile"):
        group_share(mixed, source, quantile=0.0)


def test_confident_learning_finds_a_flip_group_the_count_misses() -> None:
    """Concentrated flips (40% of class 0 labelled 1, a proxy that learnt them): the
    calibrated joint counts about half of them; the flip group holds the rest, and the
    detector flags them all and reports the group."""
    from tripwire.detectors.poisoning.label_noise import (
        flip_groups,
        noise_rate_issues,
        per_class_thresholds,
    )

    p, y, flipped = _pair_flipped()
    issues, counts = noise_rate_issues(p, y, per_class_thresholds(p, y))
    assert (issues & flipped).sum() < 0.8 * flipped.sum()
    groups = flip_groups(p, y, issues, counts)
    assert list(groups) == [(1, 0)]
    members = np.zeros(y.size, bool)
    members[groups[(1, 0)]] = True
    # The group's size is an estimate (binomial error about sqrt(120) = 11 items).
    assert members[flipped].mean() >= 0.95 and (members & ~flipped).sum() <= 11
    res = detect("confident-learning", np.zeros((y.size, 2)), p, y)
    assert res.flags[flipped].mean() >= 0.95 and (res.flags & ~flipped).sum() <= 11
    (group,) = res.evidence["flip_groups"]
    assert (group["given"], group["likely"]) == (1, 0)
    assert group["items"] == len(group["positions"]) == members.sum()
    assert group["share_of_label"] == pytest.approx(members.sum() / (y == 1).sum(), abs=1e-4)
    # Other items (here a part of the fitted ones) join the group by its members' least
    # source-likeness: each keeps its verdict.
    det = get("confident-learning")().fit(DetectorInput(probs=p, labels=y))
    part = np.arange(0, y.size, 3)
    scores = det.score(DetectorInput(probs=p[part], labels=y[part]))
    np.testing.assert_array_equal(scores >= 2.0, res.scores[part] >= 2.0)


@pytest.mark.parametrize(
    ("flip", "sep"), [(0.0, 1.2), (0.05, 1.2), (0.2, 1.2), (0.0, 0.35), (0.1, 0.5)]
)
def test_confident_learning_flip_groups_add_no_false_flags_in_diffuse_noise(
    flip: float, sep: float
) -> None:
    """Random flips spread over every pair of classes, on well separated classes and on
    a weak proxy's overlapping ones (whose items reach into each other's fringe): no
    group replaces the count, and the flags are the count's."""
    from tripwire.detectors.poisoning.label_noise import noise_rate_issues, per_class_thresholds

    x, p, y, _ = label_data(flip, sep=sep, n=500)
    res = detect("confident-learning", x, p, y)
    assert res.evidence["flip_groups"] == []
    issues, _ = noise_rate_issues(p, y, per_class_thresholds(p, y))
    np.testing.assert_array_equal(res.flags, issues)


@pytest.mark.parametrize("flip", [0.05, 0.10])
def test_confident_learning_level_with_or_better_than_cleanlab(flip: float) -> None:
    """On random flips, where cleanlab's per-cell pruning spreads the count over many
    cells of an item or two, the issues make no more errors than cleanlab's on the
    same probabilities (several noise draws, so that one lucky draw cannot pass it)."""
    filt = pytest.importorskip("cleanlab.filter")
    ours, theirs = [], []
    for seed in range(4):
        x, p, y, truth = label_data(flip, sep=0.9, seed=seed)
        res = detect("confident-learning", x, p, y)
        for flags, out in ((res.flags, ours), (filt.find_label_issues(y, p), theirs)):
            tp = int((flags & truth).sum())
            out.append(1 - 2 * tp / (int(flags.sum()) + int(truth.sum())))
    assert np.mean(ours) <= np.mean(theirs)


def test_confident_learning_clean_data() -> None:
    x, p, y, _ = label_data(0.0)
    res = detect("confident-learning", x, p, y)
    assert res.flags.mean() < 0.02


def test_confident_learning_saturated_probabilities() -> None:
    # A perfect, overconfident model: one-hot probabilities, all margins tie at -1.
    x, p, y, _ = label_data(0.10)
    y_true = np.argmax(p, axis=1)
    onehot = np.eye(4)[y_true]
    res = detect("confident-learning", x, onehot, y)
    mistaken = y != y_true
    assert res.flags.tolist() == mistaken.tolist()
    clean = detect("confident-learning", x, onehot, y_true)
    assert clean.flags.sum() == 0  # ties broken at random: no degenerate threshold


def test_confident_learning_calibrated_on_clean_reference() -> None:
    _, p, y, truth = label_data(0.10)
    det = get("confident-learning")(fpr=0.05).fit(DetectorInput(probs=p, labels=y))
    _, rp, ry, _ = label_data(0.0, noise_seed=7)
    det.calibrate(DetectorInput(probs=rp, labels=ry))
    res = det.detect(DetectorInput(probs=p, labels=y))
    assert res.calibration.method == "fpr"
    assert res.flags[truth].mean() >= 0.95
    assert res.flags[~truth].mean() <= 0.08


def test_confident_learning_reference_holds_a_weak_proxy_to_its_false_alarm_rate() -> None:
    # Overlapping classes, no flips: the out-of-sample model errs on a third of the
    # items, and confident learning takes its errors for label issues (as on CIFAR-10
    # with a 71%-accurate model). A clean reference of the same kind, held to the
    # fitted items' issue count, brings the flags down to the target rate.
    _, p, y, truth = label_data(0.0, sep=0.35, n=500)
    assert not truth.any()
    alone = detect("confident-learning", np.zeros((len(y), 1)), p, y)
    assert alone.flags.mean() > 0.1
    det = get("confident-learning")(fpr=0.01).fit(DetectorInput(probs=p, labels=y))
    _, rp, ry, _ = label_data(0.0, sep=0.35, n=500, noise_seed=7)
    det.calibrate(DetectorInput(probs=rp, labels=ry))
    res = det.detect(DetectorInput(probs=p, labels=y))
    assert res.flags.mean() <= 0.02
    # Other items are issues by the fitted items' cut, not by a count of their own: a
    # part of the fitted items scored again keeps each item's verdict.
    part = DetectorInput(probs=p[:300], labels=y[:300])
    np.testing.assert_array_equal(det.score(part) >= 2.0, alone.scores[:300] >= 2.0)


def test_confident_learning_validation() -> None:
    x, p, y, _ = label_data(0.10, n=20)
    det = get("confident-learning")()
    with pytest.raises(InputError, match="needs probs"):
        det.fit(DetectorInput(features=x, labels=y))
    with pytest.raises(InputError, match="sum to 1"):
        det.fit(DetectorInput(probs=2.0 * p, labels=y))
    with pytest.raises(InputError, match="non-negative"):
        det.fit(DetectorInput(probs=p - 0.5, labels=y))
    with pytest.raises(InputError, match=r"lie in \[0, 4\)"):
        det.fit(DetectorInput(probs=p, labels=y + 4))
    with pytest.raises(InputError, match="C >= 2"):
        det.fit(DetectorInput(probs=p[:, 0], labels=y))
    det.fit(DetectorInput(probs=p, labels=y))
    with pytest.raises(InputError, match="fitted on 4"):
        det.score(DetectorInput(probs=np.full((3, 3), 1 / 3), labels=np.zeros(3, np.int64)))
    # A class that no item is labelled with has no threshold (never confident).
    res = get("confident-learning")().detect(DetectorInput(probs=p, labels=y % 3))
    assert res.evidence["thresholds"][3] is None


# -- k-nearest-neighbour label disagreement ----------------------------------------------


@pytest.mark.parametrize("flip", [0.05, 0.10, 0.20])
def test_knn_label_finds_flips(flip: float) -> None:
    x, p, y, truth = label_data(flip, sep=1.5)
    res = detect("knn-label", x, p, y)
    auroc, recall, precision = quality(truth, res)
    assert auroc > 0.99 and recall >= 0.95 and precision >= 0.9
    assert res.evidence["k"] == 10


def test_knn_label_clean_data() -> None:
    x, p, y, _ = label_data(0.0, sep=1.5)
    res = detect("knn-label", x, p, y)
    assert res.flags.mean() < 0.02
    # Most items have no disagreeing neighbour; the scores still spread (ranks).
    assert np.unique(res.scores).size == res.scores.size


def test_knn_label_reference_queries_and_batches() -> None:
    x, _, y, truth = label_data(0.10, sep=1.5)
    det = get("knn-label")(fpr=0.05).fit(DetectorInput(features=x, labels=y))
    small = get("knn-label")(batch_size=100).fit(DetectorInput(features=x, labels=y))
    np.testing.assert_array_equal(
        det.score(DetectorInput(features=x, labels=y)),
        small.score(DetectorInput(features=x, labels=y)),
    )
    rx, _, ry, _ = label_data(0.0, sep=1.5, noise_seed=7)
    det.calibrate(DetectorInput(features=rx, labels=ry))  # looked up among fitted items
    res = det.detect(DetectorInput(features=x, labels=y))
    assert res.calibration.method == "fpr"
    assert res.flags[truth].mean() >= 0.95
    fx, _, fy, _ = label_data(0.0, sep=1.5, noise_seed=8)  # fresh clean items
    fresh = det.detect(DetectorInput(features=fx, labels=fy))
    assert fresh.flags.mean() == pytest.approx(0.05, abs=0.03)


def test_knn_label_searches_the_principal_subspace() -> None:
    # Features that spread over 4 of their 40 columns (the rest a whisper of noise),
    # rotated: the neighbours come from the 4-direction subspace, and lookups of other
    # items are projected the same way.
    rot = np.linalg.qr(np.random.default_rng(5).normal(size=(40, 40)))[0]

    def widen(x: np.ndarray, seed: int) -> np.ndarray:
        whisper = 1e-4 * np.random.default_rng(seed).normal(size=(len(x), 36))
        return np.hstack([x, whisper]) @ rot

    x, _, y, truth = label_data(0.10, sep=3.0, dim=4)
    inputs = DetectorInput(features=widen(x, 1), labels=y)
    sub = get("knn-label")().fit(inputs)
    full = get("knn-label")(variance=1.0).fit(inputs)
    assert sub.components_.shape == (4, 40) and full.components_.shape == (40, 40)
    found = sub.detect(inputs)
    assert found.flags[truth].mean() >= 0.9
    assert (found.flags == full.detect(inputs).flags).mean() >= 0.99
    rx, _, ry, _ = label_data(0.0, sep=3.0, dim=4, noise_seed=7)
    ref = DetectorInput(features=widen(rx, 2), labels=ry)
    assert np.corrcoef(sub.score(ref), full.score(ref))[0, 1] > 0.99


def test_knn_label_leaves_only_itself_out() -> None:
    # Items 0 and 1 are exact duplicates with different labels: each one's nearest
    # neighbour is the other, which must not be dropped along with the item itself.
    x = np.array([[0.0], [0.0], [10.0], [10.1], [10.2]])
    y = np.array([0, 1, 1, 1, 1])
    res = get("knn-label")(k=1).detect(DetectorInput(features=x, labels=y))
    assert (res.scores[:2] >= 2.0).all() and (res.scores[2:] < 2.0).all()
    assert get("knn-label")(k=10).fit(DetectorInput(features=x, labels=y)).k_ == 4


def test_knn_label_validation() -> None:
    x, p, y, _ = label_data(0.10, n=20)
    with pytest.raises(InputError, match="needs features"):
        get("knn-label")().fit(DetectorInput(probs=p, labels=y))
    bad_params = (
        {"k": 0},
        {"majority": 0.0},
        {"batch_size": 0},
        {"tie_weight": -1.0},
        {"variance": 0.0},
        {"variance": 1.5},
    )
    for bad in bad_params:
        with pytest.raises(InputError):
            detect("knn-label", x, p, y, **bad)
    with pytest.raises(InputError, match="at least 2 items"):
        detect("knn-label", x[:1], p[:1], y[:1])
    det = get("knn-label")().fit(DetectorInput(features=x, labels=y))
    with pytest.raises(InputError, match="columns"):
        det.score(DetectorInput(features=x[:, :3], labels=y))
