"""spectre (robust whitening + quantum entropy scores) on generated backdoor poisons,
side by side with spectral-signature where their behaviour differs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.detectors.generators import backdoor_data
from tripwire.detectors import (
    BaseDetector,
    DetectorInput,
    DetectorResult,
    Need,
    Threat,
    get,
)
from tripwire.detectors.poisoning.robust_covariance import (
    null_z,
    que_null,
    que_values,
    que_weights,
    skew_filter,
    whitening,
)
from tripwire.errors import InputError


def detect(name: str, x: np.ndarray, y: np.ndarray, **kw: Any) -> DetectorResult:
    return get(name)(**kw).detect(DetectorInput(features=x, labels=y))


def auroc(truth: np.ndarray, res: DetectorResult) -> float:
    return float(roc_auc_score(truth, res.scores))


@pytest.fixture(scope="module")
def fitted_10() -> tuple[BaseDetector, np.ndarray, np.ndarray, np.ndarray]:
    """The detector fitted on 10% poisons (fpr=0.05 for the calibration test)."""
    x, y, truth = backdoor_data(0.10)
    return get("spectre")(fpr=0.05).fit(DetectorInput(features=x, labels=y)), x, y, truth


def test_registered_with_its_needs() -> None:
    cls = get("spectre")
    assert cls.threat == Threat.POISONING
    assert cls.needs == frozenset({Need.FEATURES, Need.LABELS})


@pytest.mark.parametrize("frac", [0.05, 0.10])
def test_finds_poisons_without_a_contamination_rate(
    frac: float, fitted_10: tuple[BaseDetector, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    if frac == 0.10:
        det, x, y, truth = fitted_10
        res = det.detect(DetectorInput(features=x, labels=y))
    else:
        x, y, truth = backdoor_data(frac)
        res = detect("spectre", x, y)
    assert auroc(truth, res) > 0.99
    assert res.flags[truth].mean() >= 0.9
    assert res.flags[~truth].mean() <= 0.01
    ev = res.evidence["per_class"]
    # The filter removed the poisons from the target class's estimate, nothing else.
    assert ev[0]["filtered_when_fitting"] >= round(frac * 300)
    assert ev[0]["top_excess_variance"] > 2.0
    assert all(ev[c]["filtered_when_fitting"] == 0 for c in (1, 2))


def test_clean_data_scores_like_standard_normal() -> None:
    x, y, _ = backdoor_data(0.0)
    res = detect("spectre", x, y)
    assert res.flags.mean() < 0.02
    for c in range(3):
        s = res.scores[y == c]
        assert abs(float(np.median(s))) < 0.2
        assert 0.7 < float(np.subtract(*np.percentile(s, [75, 25]))) / 1.349 < 1.3
    assert all(v["filtered_when_fitting"] == 0 for v in res.evidence["per_class"].values())


def test_beats_spectral_signatures_when_the_class_hides_the_poisons() -> None:
    # A smaller shift: the clean class's own top variance hides the poisons from the
    # raw top direction, not from the robustly whitened one.
    x, y, truth = backdoor_data(0.05, shift=6.0)
    spectre = detect("spectre", x, y)
    spectral = detect("spectral-signature", x, y)
    assert auroc(truth, spectre) > 0.99 and spectre.flags[truth].mean() >= 0.9
    assert auroc(truth, spectral) < auroc(truth, spectre)
    assert spectral.flags[truth].mean() < 0.1


def test_one_percent_far_poisons() -> None:
    x, y, truth = backdoor_data(0.01, seed=1)
    spectre = detect("spectre", x, y)
    spectral = detect("spectral-signature", x, y)
    assert auroc(truth, spectre) > 0.99
    assert auroc(truth, spectral) < 0.5


def test_a_quarter_of_the_class_is_still_a_minority() -> None:
    x, y, truth = backdoor_data(1 / 3, shift=8.0)  # 100 poisons, 300 clean items
    res = detect("spectre", x, y)
    assert auroc(truth, res) > 0.99 and res.flags[truth].mean() >= 0.95
    assert res.flags[~truth].mean() <= 0.01


def test_known_weakness_poisons_as_half_of_the_class() -> None:
    # Neither a clean majority nor an asymmetry: SPECTRE is no more robust here than
    # spectral signatures; both rank the poisons below the clean items.
    x, y, truth = backdoor_data(1.0)
    spectre = detect("spectre", x, y)
    spectral = detect("spectral-signature", x, y)
    assert auroc(truth, spectre) < 0.5 and auroc(truth, spectral) < 0.5
    assert spectre.flags[truth].sum() == 0


def test_calibrated_on_clean_reference(
    fitted_10: tuple[BaseDetector, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    det, x, y, truth = fitted_10
    det = copy.deepcopy(det)  # the fixture's detector stays uncalibrated
    rx, ry, _ = backdoor_data(0.0, noise_seed=7)
    det.calibrate(DetectorInput(features=rx, labels=ry))
    res = det.detect(DetectorInput(features=x, labels=y))
    assert res.calibration.method == "fpr"
    assert res.flags[truth].mean() >= 0.95
    fx, fy, _ = backdoor_data(0.0, noise_seed=8)  # fresh clean items
    assert det.detect(DetectorInput(features=fx, labels=fy)).flags.mean() == pytest.approx(
        0.05, abs=0.03
    )
    # The fitted items sit closer to their own estimates than fresh ones do, so the
    # rate among the fitted clean items is lower than the target (conservative).
    assert res.flags[~truth].mean() <= 0.05


def test_building_blocks() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    mean, w = whitening(g)
    np.testing.assert_allclose(np.cov((g - mean) @ w, rowvar=False), np.eye(5), atol=1e-8)
    # Without excess variance QUE weighs all directions alike (Mahalanobis distance).
    white = (g - mean) @ w
    _, weights, top = que_weights(white, alpha=4.0)
    assert np.allclose(weights, 0.2) and top <= 1.0 + 1e-9
    # The null z-scores of whitened Gaussian items are about N(0, 1).
    vecs, weights, _ = que_weights(rng.normal(size=(2000, 5)) * [2, 1, 1, 1, 1], 4.0)
    c, nu = que_null(weights)
    z = null_z(que_values(rng.normal(size=(20000, 5)), vecs, weights), c, nu)
    assert abs(float(np.median(z))) < 0.1 and np.all(np.isfinite(z))
    assert abs(float(np.mean(z > 2.0)) - 0.0228) < 0.01
    # The filter keeps a clean Gaussian whole.
    keep, rounds = skew_filter(rng.normal(size=(400, 8)), rng=rng)
    assert keep.all() and rounds == 0


def test_small_classes_determinism_and_validation() -> None:
    x, y, _ = backdoor_data(0.1, n=100, k=2)
    xs = np.vstack([x, np.ones((5, x.shape[1]))])
    ys = np.r_[y, np.full(5, 9)]
    det = get("spectre")(random_state=3).fit(DetectorInput(features=xs, labels=ys))
    res = det.detect(DetectorInput(features=xs, labels=ys))
    again = get("spectre")(random_state=3).detect(DetectorInput(features=xs, labels=ys))
    np.testing.assert_array_equal(res.scores, again.scores)  # deterministic
    assert res.evidence["skipped_classes"] == [9]
    assert np.all(res.scores[ys == 9] == -10.0)  # the lowest score there is
    assert res.flags[ys == 9].sum() == 0
    with pytest.raises(InputError, match="not fitted on"):
        det.score(DetectorInput(features=x[:3], labels=np.full(3, 8)))
    with pytest.raises(InputError, match="no class has"):
        detect("spectre", xs[ys == 9], ys[ys == 9])
    with pytest.raises(InputError, match="needs features"):
        get("spectre")().fit(DetectorInput(labels=y))
    bad_params = (
        {"alpha": -1.0},
        {"z_cut": 0.0},
        {"null_draws": 1},
        {"n_components": 0},
        {"max_filter_items": 319},  # fewer than ten per component (32)
    )
    for bad in (*bad_params, {"n_jobs": 0}):
        with pytest.raises(InputError):
            detect("spectre", x, y, **bad)


def test_workers_do_not_change_the_scores() -> None:
    # Classes of unequal sizes: each draws its own null, in class order, whichever
    # worker then counts it.
    x, y, _ = backdoor_data(0.1, n=300, k=4)
    keep = np.r_[np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:180]]
    inputs = DetectorInput(features=x[keep], labels=y[keep])
    one = get("spectre")(n_jobs=1).detect(inputs)
    many = get("spectre")(n_jobs=3).detect(inputs)
    np.testing.assert_array_equal(one.scores, many.scores)
    assert one.evidence == many.evidence


def test_the_filter_reads_a_sample_of_large_classes() -> None:
    # Classes of 1,500 items, the filter capped at 600: the poisons (10% of class 0)
    # are still filtered out of the sample and every item is scored; classes under
    # the cap are fitted exactly as without one.
    x, y, truth = backdoor_data(0.10, n=1500, k=3)
    inputs = DetectorInput(features=x, labels=y)
    capped = get("spectre")(max_filter_items=600).detect(inputs)
    assert auroc(truth, capped) > 0.99
    assert capped.flags[truth].mean() >= 0.9 and capped.flags[~truth].mean() <= 0.01
    ev = capped.evidence["per_class"]
    assert all(ev[c]["filter_items"] == 600 for c in range(3))
    assert 0.10 * 600 * 0.8 <= ev[0]["filtered_when_fitting"] < 300
    whole = get("spectre")(max_filter_items=None).detect(inputs)
    assert all(whole.evidence["per_class"][c]["filter_items"] == ev[c]["items"] for c in ev)
    small_x, small_y, _ = backdoor_data(0.10)
    a = get("spectre")().detect(DetectorInput(features=small_x, labels=small_y))
    b = get("spectre")(max_filter_items=None).detect(
        DetectorInput(features=small_x, labels=small_y)
    )
    np.testing.assert_array_equal(a.scores, b.scores)


def test_stacked_ascents_cut_what_each_sample_cuts_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The filter runs the classes' ascents as stacks (zero rows below the shorter
    samples, spare start columns); each sample's cut is the one it gets alone, and the
    stack's width groups and chunks change nothing."""
    from tripwire.detectors.poisoning import robust_covariance as rc

    rng = np.random.default_rng(4)
    samples = []
    for n, k, shift in [(400, 8, 3.0), (250, 8, 0.0), (333, 8, 4.0), (300, 5, 3.5), (90, 5, 0.0)]:
        g = rng.normal(size=(n, k))
        g[: n // 8, 0] += shift  # a skewed minority along the first axis
        mean, w = whitening(g)
        samples.append((g - mean) @ w)
    alone = [rc.cuts_along_skew([s], 3.5)[0] for s in samples]
    together = rc.cuts_along_skew(samples, 3.5)
    monkeypatch.setattr(rc, "BATCH_ROWS", 700)  # stacks of one or two samples
    assert rc._stacks([0, 1, 2], [400, 333, 250]) == [[0], [1, 2]]
    in_pairs = rc.cuts_along_skew(samples, 3.5)
    for a, b, c in zip(alone, together, in_pairs, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert sum(int(c.sum()) for c in alone) > 0  # some sample had something to cut
    # The one-sample directions climb: each end point's third moment is at least its
    # start's.
    y = samples[0]
    ends = rc.skew_directions(y)
    starts = rc._starts(y, 3)
    assert np.all(rc._third_moment(y @ ends) >= rc._third_moment(y @ starts) - 1e-12)
    np.testing.assert_allclose(np.linalg.norm(ends, axis=0), 1.0)
