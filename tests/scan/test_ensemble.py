"""The ensemble's rule on hand-made detector results."""

from __future__ import annotations

import numpy as np

from tripwire.detectors import Calibration, DetectorResult, Threat
from tripwire.scan.ensemble import combine, common_scale, is_self_gated


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


def test_gating_is_declared_by_the_detector_classes() -> None:
    assert is_self_gated("activation-clustering")
    assert is_self_gated("dual-space")
    assert not is_self_gated("spectral-signature")
    assert not is_self_gated("no-such-detector")


def test_lone_flags_of_ungated_detectors_need_a_second_vote() -> None:
    res = combine(
        {
            "spectral-signature": _result("spectral-signature", [1, 2, 3]),
            "feature-outlier": _result("feature-outlier", [3, 4]),
            "activation-clustering": _result("activation-clustering", [10, 11]),
        },
        20,
    )
    assert np.flatnonzero(res.flags).tolist() == [3, 10, 11]
    assert res.votes[3] == 2 and res.votes[1] == 1
    assert res.gated == ["activation-clustering"]
    assert "at least 2" in res.rule


def test_scores_rank_on_a_common_scale() -> None:
    r = _result("spectral-signature", [7])
    scaled = common_scale(r)
    assert scaled[7] > 1.0
    assert np.sum(scaled > 1.0) == 1
    res = combine({"spectral-signature": r}, 20)
    assert int(np.argmax(res.scores)) == 7
    assert not res.flags.any()


def test_no_detectors_no_flags() -> None:
    res = combine({}, 5)
    assert res.flags.shape == (5,) and not res.flags.any()
