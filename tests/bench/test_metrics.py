from __future__ import annotations

import numpy as np
import pytest

from tripwire.bench.metrics import (
    curve_points,
    detection_metrics,
    flag_metrics,
    summarise,
    tpr_at_fpr,
)
from tripwire.bench.report import aggregate


def test_perfect_and_random_detectors() -> None:
    truth = np.zeros(1000, bool)
    truth[:50] = True
    perfect = detection_metrics(truth, truth.astype(float), truth)
    assert perfect["precision"] == perfect["recall"] == perfect["f1"] == 1.0
    assert perfect["auroc"] == 1.0 and perfect["tpr_at_1fpr"] == 1.0
    rng = np.random.default_rng(0)
    noise = rng.random(1000)
    rand = detection_metrics(truth, noise, noise > 0.9)
    assert 0.35 < rand["auroc"] < 0.65
    assert rand["auprc"] < 0.2


def test_flag_counts() -> None:
    truth = np.array([1, 1, 0, 0, 0], bool)
    flags = np.array([1, 0, 1, 0, 0], bool)
    m = detection_metrics(truth, flags.astype(float), flags)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["flag_rate"] == 0.4 and m["n_flagged"] == 2 and m["n_positive"] == 2


def test_flag_metrics_need_no_scores() -> None:
    truth = np.array([1, 1, 1, 0, 0, 0], bool)
    m = flag_metrics(truth, np.array([1, 1, 0, 1, 0, 0], bool))
    assert (m["precision"], m["recall"], m["n_flagged"]) == (round(2 / 3, 6), round(2 / 3, 6), 3)
    assert m["f1"] == round(2 / 3, 6)
    assert flag_metrics(truth, np.zeros(6, bool))["f1"] == 0.0  # positives, no flags
    assert flag_metrics(np.zeros(6, bool), np.zeros(6, bool))["f1"] is None
    with pytest.raises(ValueError):
        flag_metrics(truth, np.zeros(5, bool))


def test_clean_cell_has_no_score_metrics() -> None:
    truth = np.zeros(100, bool)
    flags = np.zeros(100, bool)
    flags[:3] = True
    m = detection_metrics(truth, np.arange(100.0), flags)
    assert m["auroc"] is None and m["recall"] is None and m["f1"] is None
    assert m["flag_rate"] == 0.03 and m["precision"] == 0.0


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        detection_metrics(np.zeros(3, bool), np.zeros(4), np.zeros(3, bool))


def test_tpr_at_fpr_and_curves() -> None:
    truth = np.array([0] * 98 + [1, 1], bool)
    scores = np.arange(100.0)
    assert tpr_at_fpr(truth, scores, 0.01) == 1.0
    pts = curve_points(truth, scores, max_points=10)
    assert len(pts["fpr"]) <= 10 and pts["tpr"][-1] == 1.0
    assert curve_points(np.zeros(5, bool), np.arange(5.0))["fpr"] == []


def test_summarise_and_aggregate() -> None:
    assert summarise([0.5, None, 0.7]) == {"mean": 0.6, "std": 0.1, "n": 2}
    assert summarise([None]) == {"mean": None, "std": None, "n": 0}
    rows = [
        {"dataset": "d", "attack": "a", "rate": 0.1, "detector": "x", "seed": s, "auroc": v}
        for s, v in ((0, 0.8), (1, 1.0))
    ]
    agg = aggregate(rows)
    assert len(agg) == 1 and agg[0]["auroc"] == 0.9 and agg[0]["seeds"] == 2
