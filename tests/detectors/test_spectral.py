"""spectral-signature on generated class clusters with planted backdoor poisons."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.detectors.generators import backdoor_data as _backdoor_data
from tripwire.detectors import DetectorInput, DetectorResult, Need, Threat, get
from tripwire.errors import InputError


def backdoor_data(frac: float, **kw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared generator with four classes."""
    kw.setdefault("k", 4)
    return _backdoor_data(frac, **kw)


def detect(x: np.ndarray, y: np.ndarray, **kw: Any) -> DetectorResult:
    return get("spectral-signature")(**kw).detect(DetectorInput(features=x, labels=y))


def test_registered_with_its_needs() -> None:
    cls = get("spectral-signature")
    assert cls.threat == Threat.POISONING
    assert cls.needs == frozenset({Need.FEATURES, Need.LABELS})


@pytest.mark.parametrize("frac", [0.05, 0.10])
def test_finds_poisons_without_a_contamination_rate(frac: float) -> None:
    x, y, truth = backdoor_data(frac)
    res = detect(x, y)
    assert roc_auc_score(truth, res.scores) > 0.99
    assert res.calibration.method == "robust-z"
    assert res.flags[truth].mean() >= 0.9  # recall
    assert res.flags[~truth].mean() <= 0.01  # false flags among clean items
    per_class = res.evidence["per_class"]
    assert max(per_class, key=lambda c: per_class[c]["flagged"]) == 0
    # The poisons make the target class's top direction dominate.
    ratios = [per_class[c]["top_to_second_variance"] for c in range(4)]
    assert ratios[0] == max(ratios)


def test_clean_data_gets_few_flags() -> None:
    x, y, _ = backdoor_data(0.0)
    res = detect(x, y)
    assert res.flags.mean() < 0.02
    # Scores are robust z-scores within each class: one scale for all classes.
    medians = [np.median(res.scores[y == c]) for c in range(4)]
    assert np.allclose(medians, 0.6745, atol=0.15)


def test_scores_do_not_depend_on_a_class_scale() -> None:
    x, y, _ = backdoor_data(0.05)
    x_scaled = x.copy()
    x_scaled[y == 2] *= 100.0  # one class lives on another scale
    a, b = detect(x, y).scores, detect(x_scaled, y).scores
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_calibrated_on_clean_reference() -> None:
    x, y, truth = backdoor_data(0.10)
    det = get("spectral-signature")(fpr=0.05).fit(DetectorInput(features=x, labels=y))
    rx, ry, _ = backdoor_data(0.0, noise_seed=7)
    det.calibrate(DetectorInput(features=rx, labels=ry))
    res = det.detect(DetectorInput(features=x, labels=y))
    assert res.calibration.method == "fpr" and res.calibration.n_reference == len(ry)
    assert res.flags[truth].mean() >= 0.9
    assert res.flags[~truth].mean() == pytest.approx(0.05, abs=0.03)
    fx, fy, _ = backdoor_data(0.0, noise_seed=8)  # fresh clean items
    assert det.detect(DetectorInput(features=fx, labels=fy)).flags.mean() == pytest.approx(
        0.05, abs=0.03
    )


def test_known_weakness_poisons_as_half_of_the_class() -> None:
    # Poisons as many as the clean items of the class: the top direction runs between
    # the two groups, whose centre is the class mean, and both project equally far.
    x, y, truth = backdoor_data(1.0)
    res = detect(x, y)
    assert roc_auc_score(truth, res.scores) < 0.6
    assert res.flags[truth].mean() < 0.1


def test_known_weakness_one_percent() -> None:
    # Three poisons do not move the top direction away from the class's own variance.
    x, y, truth = backdoor_data(0.01)
    res = detect(x, y)
    assert roc_auc_score(truth, res.scores) < 0.9
    assert res.flags[truth].sum() == 0


def test_small_classes_are_skipped_and_reported() -> None:
    x, y, _ = backdoor_data(0.05)
    x = np.vstack([x, np.ones((4, x.shape[1]))])
    y = np.r_[y, np.full(4, 9)]
    res = detect(x, y)
    assert res.evidence["skipped_classes"] == [9]
    assert np.all(res.scores[y == 9] == 0.0)
    with pytest.raises(InputError, match="no class has the 10 items"):
        detect(x[y == 9], y[y == 9])


def test_input_validation() -> None:
    x, y, _ = backdoor_data(0.05)
    with pytest.raises(InputError, match="needs labels"):
        get("spectral-signature")().fit(DetectorInput(features=x))
    with pytest.raises(InputError, match="2-D"):
        detect(x[:, :, None], y)
    with pytest.raises(InputError, match="integers"):
        detect(x, y + 0.5)
    with pytest.raises(InputError, match="min_class_size"):
        detect(x, y, min_class_size=2)
    det = get("spectral-signature")().fit(DetectorInput(features=x, labels=y))
    with pytest.raises(InputError, match="not fitted on"):
        det.score(DetectorInput(features=x[:5], labels=np.full(5, 7)))
    with pytest.raises(InputError, match="5 columns"):
        det.score(DetectorInput(features=x[:, :5], labels=y))
    # Integer-valued float labels are accepted.
    assert detect(x, y.astype(np.float64)).scores.shape == y.shape
