"""scan-data orchestration on generated features where the answer is known."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli.test_cli import one_line_error, run
from tripwire.errors import InputError
from tripwire.io import make_dataset
from tripwire.scan.data import scan_data, source_enrichment


def planted(n_per: int = 200, k: int = 4, n_bad: int = 30, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    feats = rng.normal(size=(n_per * k, 24)) + y[:, None] * 4.0
    bad = np.arange(n_bad) + n_per  # inside class 1's block, relabelled to 0
    y[bad] = 0
    # A tight cluster away from every class centre (class c sits at 4c in every dim).
    shift = np.zeros(24)
    shift[:3] = 10.0
    feats[bad] = rng.normal(size=(n_bad, 24)) * 0.3 + shift
    source = np.array(["vendorA"] * (n_per * k))
    source[bad] = "vendorB"
    source[-20:] = "vendorB"
    x = rng.integers(0, 256, (n_per * k, 4, 4), dtype=np.uint8)
    return make_dataset(x, y, source=source), feats, bad


def test_scan_flags_the_planted_cluster_and_names_the_source() -> None:
    ds, feats, bad = planted()
    res = scan_data(ds, feats, artifact="data.npz")
    flagged = set(res.flagged)
    assert set(bad.tolist()) <= flagged
    assert len(flagged - set(bad.tolist())) <= 0.02 * len(ds)
    assert res.scores.shape == (len(ds),) and np.all(np.isfinite(res.scores))
    rules = {f.rule_id for f in res.findings}
    assert "TW101" in rules and "TW103" in rules
    # 30 poisons in 800 is far more than a 1% false-alarm rate explains.
    poison = next(f for f in res.findings if f.rule_id == "TW101")
    assert poison.severity == "high" and poison.evidence["excess_p_value"] < 1e-3
    target = next(f for f in res.findings if f.rule_id == "TW104")
    assert target.target_class == 0 and target.severity == "high"
    src = next(f for f in res.findings if f.rule_id == "TW103")
    assert src.evidence["source"] == "vendorB"
    sections = res.sections()
    assert sections["flagged"] == sorted(sections["flagged"])
    assert set(sections["detectors"]) == set(res.detectors)
    json.dumps(sections)


def test_clean_features_raise_few_flags() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 250)
    feats = rng.normal(size=(1000, 24)) + y[:, None] * 4.0
    ds = make_dataset(rng.integers(0, 256, (1000, 4, 4), dtype=np.uint8), y)
    res = scan_data(ds, feats)
    assert len(res.flagged) <= 0.05 * len(ds)
    assert not any(f.severity == "critical" for f in res.findings)


def test_a_flag_count_false_alarms_explain_is_not_high_on_its_own() -> None:
    # 4 flags in 600 samples: below the 1% false-alarm rate, so TW101 alone is medium;
    # their concentration in one supplier is what makes the scan high (TW103). Ten
    # small classes: 4 items make 6% of class 0, a sub-population the ensemble counts.
    ds, feats, bad = planted(n_per=60, k=10, n_bad=4)
    res = scan_data(ds, feats)
    assert set(bad.tolist()) <= set(res.flagged)
    sev = {f.rule_id: f.severity for f in res.findings}
    assert sev["TW101"] == "medium" and sev["TW103"] == "high"


def test_a_few_flags_piled_in_one_class_name_it_without_alarm() -> None:
    # 6 of class 0's 66 samples: the likely target is named, at medium, since a class
    # that size shows a handful of false alarms often enough.
    ds, feats, _ = planted(n_per=60, k=10, n_bad=6)
    res = scan_data(ds, feats)
    target = next(f for f in res.findings if f.rule_id == "TW104")
    assert target.target_class == 0 and target.severity == "medium"


def test_flips_concentrated_in_one_class_pair_are_named() -> None:
    # 30% of class 0 labelled 1 (a targeted flip): the label checks' finding names the
    # pair and holds the flips; the quorum alone (knn-label) would miss part of them.
    rng = np.random.default_rng(1)
    y_true = np.repeat(np.arange(4), 300)
    feats = rng.normal(size=(4, 16))[y_true] * 2.0 + rng.normal(size=(1200, 16))
    y = y_true.copy()
    y[rng.choice(300, 90, replace=False)] = 1
    x = rng.integers(0, 256, (1200, 4, 4), dtype=np.uint8)
    res = scan_data(make_dataset(x, y), feats)
    flipped = y != y_true
    labels = next(f for f in res.findings if f.rule_id == "TW102")
    assert set(labels.evidence["flip_groups"]) == {"1<-0"}
    assert "labelled 1 look like class 0" in labels.message
    # The class holding the flags is read as a flip's target, not a backdoor's.
    target = next(f for f in res.findings if f.rule_id == "TW104")
    assert target.target_class == 1 and "targeted label flip" in target.message
    found = np.zeros(len(y), bool)
    found[list(labels.indices)] = True
    assert found[flipped].mean() >= 0.9 and flipped[found].mean() >= 0.9


def test_enrichment_statistics() -> None:
    src = np.array(["a"] * 90 + ["b"] * 10)
    flags = np.zeros(100, bool)
    flags[90:98] = True
    flags[0] = True
    rows = {r["source"]: r for r in source_enrichment(src, flags)}
    assert rows["b"]["flagged"] == 8 and rows["b"]["p_value"] < 1e-6
    assert rows["a"]["p_value"] > 0.5
    assert rows["b"]["enrichment"] == pytest.approx(8 / (10 * 9 / 100), rel=1e-3)


def _overlapping_classes(flips: int, seed: int = 5) -> tuple[Any, np.ndarray, np.ndarray]:
    """Four heavily overlapping classes (a weak model's features: a third of the items
    sit nearer another class's centre), ``flips`` labels flipped; data, features, truth."""
    rng = np.random.default_rng(seed)
    n = 1600
    y_true = np.repeat(np.arange(4), n // 4)
    feats = rng.normal(size=(n, 24)) + np.eye(4)[y_true].repeat(6, axis=1)
    y = y_true.copy()
    idx = rng.choice(n, flips, replace=False)
    y[idx] = (y[idx] + rng.integers(1, 4, flips)) % 4
    source = np.array(["vendor"] * n, dtype="<U16")
    # A verified in-house part: clean samples only (a check would have caught flips).
    source[rng.choice(np.flatnonzero(y == y_true), 300, replace=False)] = "in-house"
    x = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
    return make_dataset(x, y, source=source), feats, y != y_true


def test_verified_samples_calibrate_label_checks_on_a_weak_model() -> None:
    # By robust statistics the label checks take the model's own errors for label
    # issues; calibrated on verified samples they flag at about their false-alarm rate.
    ds, feats, _ = _overlapping_classes(0)
    verified = np.asarray(ds.source) == "in-house"
    plain = scan_data(ds, feats)
    calibrated = scan_data(ds, feats, trusted_mask=verified)
    assert plain.calibration == {"kind": "robust statistics"}
    assert calibrated.calibration["kind"] == "verified samples of the data"
    assert calibrated.calibration["samples"] == 300
    assert len(calibrated.flagged) <= 0.01 * len(ds) < len(plain.flagged)
    for name in ("confident-learning", "knn-label"):
        cal = calibrated.detectors[name].calibration
        assert cal.method == "fpr" and cal.n_reference == 300
    # Class-level tests keep their own thresholds.
    assert calibrated.detectors["dual-space"].calibration.method != "fpr"
    # Flips are still found, at a precision the uncalibrated scan does not reach.
    ds, feats, truth = _overlapping_classes(80)
    plain = scan_data(ds, feats)
    calibrated = scan_data(ds, feats, trusted_mask=np.asarray(ds.source) == "in-house")
    assert truth[calibrated.flags].mean() >= 0.9 > truth[plain.flags].mean()
    assert truth[calibrated.flags].sum() >= 15
    # TW102 names the label checks' flags and what their thresholds rest on.
    plain_labels = next(f for f in plain.findings if f.rule_id == "TW102")
    assert "robust statistics" in plain_labels.message and plain_labels.confidence == 0.5
    assert 0.0 < (plain.label_agreement or 0.0) < 0.9
    labels = next(f for f in calibrated.findings if f.rule_id == "TW102")
    assert set(labels.indices) <= set(calibrated.flagged)
    assert labels.evidence["calibration"]["kind"] == "verified samples of the data"
    with pytest.raises(InputError, match="at least 100"):
        scan_data(ds, feats, trusted_mask=np.arange(len(ds)) < 50)
    with pytest.raises(InputError, match="shape"):
        scan_data(ds, feats, trusted_mask=np.ones(10, bool))


def test_bad_inputs() -> None:
    ds, feats, _ = planted()
    with pytest.raises(InputError, match="one row per sample"):
        scan_data(ds, feats[:-1])
    with pytest.raises(InputError, match="NaN"):
        scan_data(ds, np.full_like(feats, np.nan))
    one = make_dataset(np.zeros((10, 3), np.float32), np.zeros(10, int))
    with pytest.raises(InputError, match="two classes"):
        scan_data(one, np.zeros((10, 3)))
    with pytest.raises(InputError, match="unknown detector"):
        scan_data(ds, feats, detectors=["nope"])


def test_cli_scan_with_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds, feats, bad = planted()
    data = tmp_path / "d.npz"
    np.savez(data, x=ds.x, y=ds.y, source=ds.source)
    fpath = tmp_path / "f.npy"
    np.save(fpath, feats)
    report = tmp_path / "r.json"
    code, _, _ = run(
        capsys,
        "scan-data",
        str(data),
        "--features",
        str(fpath),
        "--out",
        str(report),
        "--sarif",
        str(tmp_path / "r.sarif"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert code == 1  # high-severity findings
    # The class holding the planted cluster is shown as a projection, flags coloured.
    assert "Class 0: activations (2 principal components)" in (tmp_path / "r.html").read_text()
    rep = json.loads(report.read_text())
    for key in ("scores", "flagged", "detectors", "sources", "findings"):
        assert key in rep
    assert len(rep["scores"]) == len(ds)
    assert set(bad.tolist()) <= set(rep["flagged"])
    clean = tmp_path / "clean.npz"
    code, _, _ = run(capsys, "clean", str(data), "--report", str(report), "--out", str(clean))
    assert code == 0
    with np.load(clean) as z:
        assert len(z["y"]) == len(ds) - len(rep["flagged"])
    np.save(fpath, feats[:-5])
    code, _, err = run(
        capsys, "scan-data", str(data), "--features", str(fpath), "--out", str(report)
    )
    assert code == 2
    one_line_error(err, str(fpath), "one row per sample")


def test_cli_trusted_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds, feats, _ = _overlapping_classes(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=ds.x, y=ds.y, source=ds.source)
    fpath = tmp_path / "f.npy"
    np.save(fpath, feats)
    report = tmp_path / "r.json"
    argv = ["scan-data", str(data), "--features", str(fpath), "--out", str(report)]
    code, _, _ = run(capsys, *argv, "--trusted-source", "in-house")
    assert code in (0, 1)
    rep = json.loads(report.read_text())
    assert rep["calibration"]["kind"] == "verified samples of the data"
    assert rep["calibration"]["samples"] == 300
    code, _, err = run(capsys, *argv, "--trusted-source", "nobody")
    assert code == 2
    one_line_error(err, str(data), "no samples from source nobody")


def test_cli_dynamics_adds_the_training_runs_disputed_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from tripwire.attacks.base import poison_dataset
    from tripwire.io import load_dataset

    ds = poison_dataset(load_dataset("bundled:digits"), "label-flip", rate=0.1, seed=0)
    assert ds.poisoned is not None
    data = tmp_path / "d.npz"
    np.savez(data, x=ds.x, y=ds.y)  # no 'poisoned' field: the scan cannot read the answer
    report = tmp_path / "r.json"
    argv = ["scan-data", str(data), "--out", str(report), "--epochs", "12", "--detectors"]
    code, _, err = run(capsys, *argv, "knn-label,training-margin")
    assert code == 2 and not report.exists()
    one_line_error(err, "--detectors", "add --dynamics")
    # A training run of its own with planted calibrators, which set the cut.
    run(capsys, *argv, "confident-learning,knn-label,training-margin", "--dynamics")
    rep = json.loads(report.read_text())
    det = rep["detectors"]["training-margin"]
    assert len(det["scores"]) == len(ds) and det["evidence"]["epochs"] == 12
    cal = det["calibration"]
    assert cal["method"] == "planted" and cal["n_reference"] == det["evidence"]["calibrators"]
    estimated = cal["details"]["estimated_mislabelled"]
    assert abs(estimated - ds.poisoned.sum()) <= 0.25 * ds.poisoned.sum()
    flagged = np.asarray(det["flagged"], dtype=np.int64)
    assert ds.poisoned[flagged].sum() >= 0.9 * ds.poisoned.sum()
    assert ds.poisoned[flagged].mean() >= 0.85
    # A third vote on labels: its flags stand where another label check agrees, beyond
    # those two checks' own agreement up to the calibrators' estimate, most disputed
    # first (the rest are counted as held back).
    cl = set(rep["detectors"]["confident-learning"]["flagged"])
    knn = set(rep["detectors"]["knn-label"]["flagged"])
    voted = set(flagged.tolist()) & (cl | knn)
    held = voted - set(rep["flagged"])
    assert len(held) == rep["ensemble"]["families"]["labels"].get("vote_held_back", 0)
    assert held <= voted - (cl & knn) and len(held) < len(voted) / 2
    beyond = sorted(voted - (cl & knn) - held)
    tm_scores = np.asarray(det["scores"])
    if held and beyond:
        assert tm_scores[sorted(held)].max() <= tm_scores[beyond].min()
    labels = [f for f in rep["findings"] if f["rule_id"] == "TW102"]
    assert labels and voted - held <= set(labels[0]["indices"])
    assert not (set(flagged.tolist()) - cl - knn) & set(labels[0]["indices"])
