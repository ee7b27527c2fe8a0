"""The ensemble's family quorums on hand-made detector results."""

from __future__ import annotations

import numpy as np

from tripwire.detectors import Calibration, DetectorResult, Threat
from tripwire.scan.ensemble import combine, common_scale, family_of


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
    # Outlier flags still raise the combined score.
    assert res.scores[5] > 1.0


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
