"""training-margin (area under the margin) on a real training run with flipped labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tripwire.detectors import DetectorInput, Need, Threat, get
from tripwire.detectors.poisoning.dynamics import area_under_margin
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
    margins = record_dynamics(ds, epochs=12, seed=0, show_progress=False)
    assert ds.poisoned is not None
    return ds.y, margins, ds.poisoned


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
