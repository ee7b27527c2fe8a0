"""training-margin (area under the margin) on a real training run with flipped labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tripwire.detectors import DetectorInput, Need, Threat, get
from tripwire.detectors.calibration import planted_fdr_threshold
from tripwire.detectors.poisoning.dynamics import (
    MIN_PLANTED_COUNT,
    Dynamics,
    area_under_margin,
    plant_calibrators,
)
from tripwire.errors import InputError


def test_registered_with_its_needs() -> None:
    cls = get("training-margin")
    assert cls.needs == frozenset({Need.LABELS, Need.DYNAMICS})
    assert cls.threat == Threat.POISONING


def test_area_is_the_mean_over_the_epochs_an_item_was_seen() -> None:
    m = np.array([[1.0, -2.0, np.nan], [3.0, -4.0, 5.0]])
    assert area_under_margin(m).tolist() == [2.0, -3.0, 5.0]


@pytest.mark.parametrize(
    ("margins", "needle"),
    [
        (np.zeros(5), "(epochs, N)"),
        (np.zeros((1, 5)), "at least 2 epochs"),
        (np.array([[0.0, np.nan], [1.0, np.nan]]), "1 items have no recorded margin"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "infinite"),
    ],
)
def test_bad_margins_are_refused(margins: np.ndarray, needle: str) -> None:
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        area_under_margin(margins)


def test_margins_of_another_length_than_the_labels_are_refused() -> None:
    with pytest.raises(InputError, match="margins cover 3 items, the labels 4"):
        get("training-margin")().fit(
            DetectorInput(labels=np.zeros(4, np.int64), margins=np.zeros((2, 3)))
        )


@pytest.fixture(scope="module")
def flipped_run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, recorded margins and the flipped mask of one real training run: the
    digits with 10% of the labels flipped, the reference CNN trained for 12 epochs."""
    pytest.importorskip("torch")
    from tripwire.attacks.base import poison_dataset
    from tripwire.detectors.poisoning.dynamics import record_dynamics
    from tripwire.io import load_dataset

    ds = poison_dataset(load_dataset("bundled:digits"), "label-flip", rate=0.1, seed=0)
    dyn = record_dynamics(ds, epochs=12, seed=0, calibrators=0.0, show_progress=False)
    assert ds.poisoned is not None and dyn.calibrators.size == 0
    return ds.y, dyn.margins, ds.poisoned


def test_flipped_labels_rank_first_and_the_robust_cut_flags_only_flips(
    flipped_run: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, margins, truth = flipped_run
    assert margins.shape == (12, len(y)) and np.isfinite(margins).all()
    res = get("training-margin")().detect(DetectorInput(labels=y, margins=margins))
    assert roc_auc_score(truth, res.scores) > 0.99
    assert res.calibration.method == "robust-z"
    assert res.flags.sum() >= 0.5 * truth.sum()
    assert truth[res.flags].mean() >= 0.95
    assert res.evidence["epochs"] == 12
    assert sum(v["flagged"] for v in res.evidence["per_class"].values()) == res.flags.sum()


def test_a_clean_set_without_margins_keeps_the_robust_cut_and_verified_items_calibrate(
    flipped_run: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, margins, truth = flipped_run
    inputs = DetectorInput(labels=y, margins=margins)
    det = get("training-margin")(fpr=0.05).fit(inputs)
    det.calibrate(DetectorInput(labels=y[:50], features=np.zeros((50, 2))))
    assert det.detect(inputs).calibration.method == "robust-z"
    verified = ~truth & (np.arange(len(y)) % 3 == 0)
    res = (
        get("training-margin")(fpr=0.05)
        .fit(inputs)
        .calibrate_fitted(inputs, verified)
        .detect(inputs)
    )
    cal = res.calibration  # the verified items set the cut, or the robust floor binds
    n_verified = int(verified.sum())
    assert (cal.method == "fpr" and cal.n_reference == n_verified) or (
        cal.details.get("n_verified") == n_verified
    )


def test_calibrators_are_a_seeded_share_relabelled_to_another_class() -> None:
    y = np.repeat(np.arange(10), 1000)
    new, pos = plant_calibrators(y, 10, 0.01, seed=3)
    assert pos.size == 100 and np.array_equal(pos, np.sort(pos))
    assert (new[pos] != y[pos]).all() and np.array_equal(np.delete(new, pos), np.delete(y, pos))
    assert set(new[pos].tolist()) > {0, 1}  # drawn over the classes, not one
    again, pos2 = plant_calibrators(y, 10, 0.01, seed=3)
    assert np.array_equal(pos, pos2) and np.array_equal(new, again)
    assert not np.array_equal(pos, plant_calibrators(y, 10, 0.01, seed=4)[1])
    # A small set still gets enough of them; never more than a tenth; none when off.
    assert plant_calibrators(y[:2000], 10, 0.01)[1].size == MIN_PLANTED_COUNT
    assert plant_calibrators(y[:300], 10, 0.01)[1].size == 30
    assert plant_calibrators(y, 10, 0.0)[1].size == 0
    with pytest.raises(InputError, match="share"):
        plant_calibrators(y, 10, 0.6)


def test_the_planted_cut_holds_its_false_share_on_a_known_mixture() -> None:
    rng = np.random.default_rng(0)
    # 9,000 others, a tenth of them disputed (shifted towards the sought items),
    # 1,000 sought items, and 200 planted items drawn like the sought ones.
    others = np.concatenate([rng.normal(0.0, 1.0, 8100), rng.normal(2.5, 1.0, 900)])
    sought = rng.normal(4.5, 1.5, 1000)
    planted = rng.normal(4.5, 1.5, 200)
    scores = np.concatenate([others, sought])
    truth = np.arange(scores.size) >= others.size
    shares = []
    for alpha in (0.02, 0.05, 0.1, 0.2):
        cut, pi = planted_fdr_threshold(scores, planted, alpha)
        flags = scores > cut
        assert 0.09 <= pi <= 0.12  # 10% sought; the disputed others' tail adds a little
        shares.append(1.0 - truth[flags].mean())
        assert truth[flags].sum() >= 0.5 * truth.sum()
    # The estimate is optimistic (PLANTED_FDR's comment) but ordered and bounded.
    assert shares == sorted(shares) and shares[0] < 0.1 and shares[1] <= 0.2
    # No sought items: only the disputed others' far tail is flagged (clean bar: 0.5%).
    cut, pi = planted_fdr_threshold(others, planted, 0.05)
    assert (others > cut).mean() <= 0.005 and pi < 0.01
    with pytest.raises(ValueError, match="alpha"):
        planted_fdr_threshold(scores, planted, 1.5)
    with pytest.raises(ValueError, match="finite"):
        planted_fdr_threshold([0.0, np.nan], planted)


def test_calibrator_positions_are_checked() -> None:
    y = np.zeros(4, np.int64)
    margins = np.ones((2, 4))
    det = get("training-margin")()
    with pytest.raises(InputError, match=r"lie in \[0, 4\)"):
        det.fit(DetectorInput(labels=y, margins=margins, calibrators=np.array([5])))
    with pytest.raises(InputError, match="1-D array"):
        det.fit(DetectorInput(labels=y, margins=margins, calibrators=np.array([0.5])))


@pytest.fixture(scope="module", params=[0.1, 0.0], ids=["flips", "clean"])
def planted_run(request: pytest.FixtureRequest) -> tuple[np.ndarray, Dynamics, np.ndarray]:
    """The digits with 10% of the labels flipped (or none), recorded with calibrators."""
    pytest.importorskip("torch")
    from tripwire.attacks.base import poison_dataset
    from tripwire.detectors.poisoning.dynamics import record_dynamics
    from tripwire.io import load_dataset

    ds = load_dataset("bundled:digits")
    truth = np.zeros(len(ds), dtype=bool)
    if request.param:
        ds = poison_dataset(ds, "label-flip", rate=request.param, seed=0)
        assert ds.poisoned is not None
        truth = ds.poisoned
    return ds.y, record_dynamics(ds, epochs=12, seed=0, show_progress=False), truth


def test_planted_calibrators_set_the_cut(
    planted_run: tuple[np.ndarray, Dynamics, np.ndarray],
) -> None:
    y, dyn, truth = planted_run
    planted = dyn.calibrators
    assert planted.size == MIN_PLANTED_COUNT  # 1% of 1,797 is fewer
    inputs = DetectorInput(labels=y, margins=dyn.margins, calibrators=planted)
    res = get("training-margin")().detect(inputs)
    assert res.calibration.method == "planted"
    assert res.evidence["calibrators"] == planted.size
    assert not res.flags[planted].any()  # no score of their own
    # ... but the others' median: no evidence either way, not "surely clean".
    rest = np.delete(res.scores, planted)
    assert np.all(res.scores[planted] == min(float(np.median(rest)), res.threshold))
    estimated = res.calibration.details["estimated_mislabelled"]
    if truth.any():
        assert abs(estimated - truth.sum()) <= 0.25 * truth.sum()
        assert truth[res.flags].mean() >= 0.8 and res.flags[truth].mean() >= 0.9
    else:
        # The robust cut flags the run's most disputed clean digits; the planted one
        # sees nothing like the calibrators among them.
        assert estimated <= 0.005 * len(y) and res.flags.mean() <= 0.005
        robust = get("training-margin")().detect(DetectorInput(labels=y, margins=dyn.margins))
        assert robust.calibration.method == "robust-z" and robust.flags.sum() > res.flags.sum()


def test_calibrators_stay_unflagged_where_the_planted_cut_flags_most_items() -> None:
    # Every item as disputed as the calibrators: the cut falls below the median.
    rng = np.random.default_rng(0)
    margins = rng.normal(-1.0, 0.3, size=(4, 400)).astype(np.float32)
    y = np.arange(400) % 4
    planted = np.arange(0, 400, 10)
    res = get("training-margin")().detect(
        DetectorInput(labels=y, margins=margins, calibrators=planted)
    )
    assert res.calibration.method == "planted" and res.threshold < np.median(res.scores)
    assert not res.flags[planted].any() and res.flags.mean() > 0.5


def test_the_planted_cut_is_finite_when_it_flags_nothing_or_everything() -> None:
    planted = np.linspace(5.0, 6.0, 50)
    cut, pi = planted_fdr_threshold(np.zeros(100), planted)  # nothing like them
    assert np.isfinite(cut) and pi == 0.0 and not (np.zeros(100) > cut).any()
    scores = np.linspace(5.0, 6.0, 100)  # all like them
    cut, _ = planted_fdr_threshold(scores, planted)
    assert np.isfinite(cut) and (scores > cut).all()
