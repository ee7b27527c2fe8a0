from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import roc_auc_score

from tripwire.detectors import (
    BaseDetector,
    Detector,
    DetectorInput,
    Need,
    Threat,
    available,
    get,
    register,
    robust_threshold,
    threshold_at_fpr,
)
from tripwire.detectors.calibration import empirical_p_values, robust_z
from tripwire.errors import InputError, NotFittedError


def planted(seed: int = 0, n_out: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 200)
    x = rng.normal(size=(600, 20)) + y[:, None] * 3.0
    truth = np.zeros(600, dtype=bool)
    truth[:n_out] = True
    x[:n_out] += 4.0
    return x, y, truth


def test_threshold_at_fpr_is_conformal() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(size=999)
    t = threshold_at_fpr(clean, 0.01)
    # ceil(1000 * 0.99) = 990th smallest of 999.
    assert t == np.sort(clean)[989]
    fresh = rng.normal(size=200_000)
    assert (fresh > t).mean() == pytest.approx(0.01, abs=0.003)
    assert threshold_at_fpr([1.0, 2.0], 0.01) == 2.0  # too few: the maximum
    with pytest.raises(ValueError, match="fpr"):
        threshold_at_fpr(clean, 1.5)
    with pytest.raises(ValueError, match="finite"):
        threshold_at_fpr([np.nan], 0.1)


def test_robust_threshold_resists_outliers() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(size=1000)
    base = robust_threshold(s)
    s[:100] = 1e6  # 10% gross outliers barely move it
    assert abs(robust_threshold(s) - base) < 1.0  # a mean + 3.5 sd cut would move by ~1e6
    assert robust_threshold(np.ones(10)) == 1.0
    assert robust_z(np.ones(4)).tolist() == [0, 0, 0, 0]


def test_p_values() -> None:
    p = empirical_p_values([10.0, -10.0], np.arange(9.0))
    assert p.tolist() == [0.1, 1.0]


def test_feature_outlier_finds_planted_items() -> None:
    x, y, truth = planted()
    det = get("feature-outlier")()
    result = det.detect(DetectorInput(features=x, labels=y))
    assert roc_auc_score(truth, result.scores) > 0.99
    assert set(np.flatnonzero(truth)) <= set(result.flagged)
    assert len(result.flagged) <= 15
    assert result.calibration.method == "robust-z"
    assert result.flagged == sorted(result.flagged)
    d = result.to_dict()
    assert d["detector"] == "feature-outlier" and len(d["scores"]) == 600
    assert d["evidence"]["per_class"][0]["flagged"] >= 10


def test_calibrated_fpr_holds_on_fresh_clean_data() -> None:
    rng = np.random.default_rng(5)

    def clean(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        return rng.normal(size=(n, 10)) + y[:, None] * 2.0, y

    det = get("feature-outlier")(fpr=0.05)
    fx, fy = clean(1500)
    cx, cy = clean(1000)
    det.fit(DetectorInput(features=fx, labels=fy)).calibrate(DetectorInput(features=cx, labels=cy))
    tx, ty = clean(4000)
    res = det.detect(DetectorInput(features=tx, labels=ty))
    assert res.calibration.method == "fpr" and res.calibration.target_fpr == 0.05
    assert res.flags.mean() == pytest.approx(0.05, abs=0.02)


def test_verified_items_cap_the_false_alarm_rate_above_the_robust_threshold() -> None:
    x, y, truth = planted()
    inputs = DetectorInput(features=x, labels=y)
    robust = get("feature-outlier")().detect(inputs)
    verified = ~truth & (np.arange(len(y)) % 3 == 0)
    # A loose target rate: the verified cut sits below the robust one, which still binds.
    loose = get("feature-outlier")(fpr=0.2).fit(inputs).calibrate_fitted(inputs, verified)
    res = loose.detect(inputs)
    assert res.calibration.method == "robust-z"
    assert res.calibration.details["fpr_threshold"] < res.threshold == robust.threshold
    assert res.flagged == robust.flagged
    # Heavy-tailed clean data, where the robust threshold flags many clean items: the
    # verified cut binds, and the verified items are flagged at about its rate.
    rng = np.random.default_rng(1)
    ty = rng.integers(0, 3, 3000)
    heavy = DetectorInput(features=rng.standard_t(2, size=(3000, 6)) + ty[:, None], labels=ty)
    plain = get("feature-outlier")().detect(heavy)
    checked = np.arange(3000) % 2 == 0
    strict = get("feature-outlier")(fpr=0.01).fit(heavy).calibrate_fitted(heavy, checked)
    res = strict.detect(heavy)
    assert res.calibration.method == "fpr" and res.calibration.n_reference == checked.sum()
    assert res.threshold > plain.threshold and res.flags.sum() < plain.flags.sum()
    assert res.flags[checked].mean() <= 0.01 < plain.flags.mean()
    with pytest.raises(InputError, match="entries"):
        loose.calibrate_fitted(inputs, verified[:-1])
    with pytest.raises(InputError, match="no item"):
        loose.calibrate_fitted(inputs, np.zeros(len(y), bool))


def test_missing_needs_and_unfitted() -> None:
    det = get("feature-outlier")()
    with pytest.raises(InputError, match="needs features"):
        det.fit(DetectorInput(labels=np.zeros(3, np.int64)))
    with pytest.raises(NotFittedError):
        det.score(DetectorInput(features=np.zeros((3, 2)), labels=np.zeros(3, np.int64)))
    with pytest.raises(InputError, match="NaN"):
        det.fit(DetectorInput(features=np.full((5, 2), np.nan), labels=np.zeros(5, np.int64)))
    with pytest.raises(InputError, match="disagree in length"):
        det.fit(DetectorInput(features=np.zeros((5, 2)), labels=np.zeros(4, np.int64)))
    with pytest.raises(InputError, match="fpr"):
        get("feature-outlier")(fpr=0.0).fit(
            DetectorInput(features=np.zeros((5, 2)), labels=np.zeros(5, np.int64))
        )


def test_registry_and_a_new_detector() -> None:
    @register
    class LargestNorm(BaseDetector):
        """Scores each item by its feature norm (a toy for the contract test)."""

        name: ClassVar[str] = "test-largest-norm"
        threat: ClassVar[Threat] = Threat.POISONING
        needs: ClassVar[frozenset[Need]] = frozenset({Need.FEATURES})

        def _fit(self, inputs: DetectorInput) -> None:
            self.n_seen_ = 0 if inputs.features is None else len(inputs.features)

        def _score(self, inputs: DetectorInput) -> npt.NDArray[np.float64]:
            assert inputs.features is not None
            return np.linalg.norm(inputs.features, axis=1)

        def _evidence(self, inputs: DetectorInput, scores: Any, flags: Any) -> dict[str, Any]:
            return {"seen": self.n_seen_}

    assert get("test-largest-norm") is LargestNorm
    assert LargestNorm in available(Threat.POISONING)
    assert LargestNorm not in available(satisfiable_with=frozenset({Need.LABELS}))
    assert isinstance(LargestNorm(), Detector)
    feats = np.vstack(
        [np.ones((50, 2)) + np.random.default_rng(0).normal(0, 0.01, (50, 2)), [[10.0, 10.0]]]
    )
    res = LargestNorm().detect(DetectorInput(features=feats))
    assert res.flagged == [50] and res.evidence == {"seen": 51}
    with pytest.raises(ValueError, match="already taken"):

        @register
        class Clash(LargestNorm):
            pass

    with pytest.raises(InputError, match="unknown detector"):
        get("no-such-detector")


def test_get_params_and_repr() -> None:
    det = get("feature-outlier")(n_components=5, fpr=0.02)
    assert det.get_params() == {"fpr": 0.02, "z": 3.5, "n_components": 5}
    assert "n_components=5" in repr(det)
