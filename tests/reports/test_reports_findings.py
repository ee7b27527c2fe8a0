"""Severities, findings, rules and exit codes."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterator

import numpy as np
import pytest

from tripwire.errors import EXIT_FINDINGS, EXIT_OK, InputError
from tripwire.reports import (
    RULES,
    Finding,
    Rule,
    Severity,
    exit_code_for,
    get_rule,
    register_rule,
    rule_category,
    sort_findings,
)


def make(**overrides: object) -> Finding:
    fields: dict[str, object] = {
        "rule_id": "TW101",
        "title": "Outliers",
        "message": "Some samples look injected.",
        "severity": "medium",
        "confidence": 0.5,
        "atlas": ("AML.T0020",),
    }
    fields.update(overrides)
    return Finding(**fields)  # type: ignore[arg-type]


# --- Severity ------------------------------------------------------------------------


def test_severity_total_order() -> None:
    order = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    assert Severity.ordered() == tuple(order)
    assert [s.rank for s in order] == [0, 1, 2, 3, 4]
    assert sorted(reversed(order)) == order
    assert max(order) is Severity.CRITICAL
    for lower, higher in itertools.pairwise(order):
        assert lower < higher
        assert higher > lower
        assert lower <= higher
        assert higher >= lower
        assert not higher < lower


def test_severity_order_is_by_rank_not_alphabet() -> None:
    # Alphabetically "high" < "low"; by rank it is the other way round.
    assert Severity.LOW < Severity.HIGH
    assert Severity.CRITICAL > Severity.MEDIUM


def test_severity_compares_with_strings_by_rank() -> None:
    assert Severity.HIGH >= "medium"
    assert Severity.LOW < "HIGH"
    assert "low" < Severity.HIGH  # noqa: SIM300 - the reflected comparison is under test
    with pytest.raises(ValueError, match="unknown severity"):
        _ = Severity.HIGH > "severe"


def test_severity_equality_and_hash_stay_string_like() -> None:
    assert Severity.HIGH == "high"
    assert {Severity.HIGH: 1}["high"] == 1


def test_severity_parse() -> None:
    assert Severity.parse(" Critical ") is Severity.CRITICAL
    assert Severity.parse(Severity.LOW) is Severity.LOW
    with pytest.raises(ValueError, match="allowed values: info, low, medium, high, critical"):
        Severity.parse("fatal")
    with pytest.raises(ValueError):
        Severity.parse(3)  # type: ignore[arg-type]


def test_severity_at_least() -> None:
    assert Severity.HIGH.at_least("high")
    assert Severity.CRITICAL.at_least(Severity.HIGH)
    assert not Severity.MEDIUM.at_least("high")


# --- exit codes ----------------------------------------------------------------------


def test_exit_code_defaults_to_failing_on_high() -> None:
    assert exit_code_for([]) == EXIT_OK
    assert exit_code_for([make(severity="medium")]) == EXIT_OK
    assert exit_code_for([make(severity="high")]) == EXIT_FINDINGS
    assert exit_code_for([make(severity="critical")]) == EXIT_FINDINGS


def test_exit_code_respects_fail_on() -> None:
    findings = [make(severity="low"), make(severity="medium")]
    assert exit_code_for(findings, fail_on="medium") == EXIT_FINDINGS
    assert exit_code_for(findings, fail_on=Severity.CRITICAL) == EXIT_OK
    assert exit_code_for(iter(findings), fail_on="info") == EXIT_FINDINGS
    with pytest.raises(ValueError, match="allowed values"):
        exit_code_for(findings, fail_on="worst")


# --- Finding validation --------------------------------------------------------------


@pytest.mark.parametrize("confidence", [-0.01, 1.01, math.nan, math.inf])
def test_confidence_out_of_range_is_rejected(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        make(confidence=confidence)


@pytest.mark.parametrize("confidence", [True, "0.5", None])
def test_confidence_of_the_wrong_type_is_rejected(confidence: object) -> None:
    with pytest.raises(TypeError, match="confidence must be a number"):
        make(confidence=confidence)


def test_confidence_accepts_numpy_and_ints() -> None:
    assert make(confidence=np.float32(0.25)).confidence == 0.25
    assert type(make(confidence=1).confidence) is float


def test_unknown_atlas_id_is_rejected() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown ATLAS technique id 'AML.T0999'")):
        make(atlas=("AML.T0999",))
    with pytest.raises(ValueError, match="malformed"):
        make(atlas=("poisoning",))


def test_atlas_defaults_to_the_rules_techniques() -> None:
    f = make(rule_id="TW004", atlas=())
    assert f.atlas == ("AML.T0020", "AML.T0010.002")
    assert make(rule_id="TW777", atlas=()).atlas == ()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"rule_id": ""}, ValueError, "rule id"),
        ({"rule_id": "TW 1"}, ValueError, "rule id"),
        ({"title": "  "}, ValueError, "title must not be empty"),
        ({"message": 3}, TypeError, "message must be a string"),
        ({"severity": "urgent"}, ValueError, "unknown severity"),
        ({"indices": [1, -2]}, ValueError, "non-negative"),
        ({"indices": [1.5]}, TypeError, "integer"),
        ({"indices": "123"}, TypeError, "sequence of integers"),
        ({"target_class": -1}, ValueError, "non-negative"),
        ({"target_class": True}, TypeError, "integer"),
        ({"client": ""}, ValueError, "client must not be empty"),
        ({"evidence": {"x": object()}}, TypeError, "no JSON form"),
        ({"evidence": [1]}, TypeError, "evidence must be a mapping"),
    ],
)
def test_invalid_fields_are_rejected(
    overrides: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make(**overrides)


def test_values_are_normalised() -> None:
    f = make(
        severity="HIGH",
        indices=np.array([7, 2, 7, 0]),
        target_class=np.int16(3),
        evidence={"scores": np.array([0.5, np.nan]), "n": np.int64(2)},
    )
    assert f.severity is Severity.HIGH
    assert f.indices == (0, 2, 7)
    assert f.target_class == 3
    assert type(f.target_class) is int
    assert f.evidence == {"scores": [0.5, None], "n": 2}


def test_findings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().title = "changed"  # type: ignore[misc]


def test_findings_are_hashable_despite_their_evidence_dict() -> None:
    a = make(evidence={"scores": [1, 2]})
    b = make(evidence={"scores": [1, 2]})
    c = make(evidence={"scores": [3]})
    assert len({a, b, c}) == 2


def test_fingerprint_is_stable_and_ignores_wording() -> None:
    a = make(artifact="d.npz", indices=[3, 1], target_class=2, client="c")
    b = make(
        artifact="d.npz",
        indices=[1, 3],
        target_class=2,
        client="c",
        title="Other words",
        message="Other message.",
        severity="critical",
        confidence=0.9,
        evidence={"x": 1},
    )
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64
    assert int(a.fingerprint, 16) >= 0
    # Pinned so that a change to the recipe is noticed (SARIF consumers track alerts by it):
    # sha256 of the compact JSON ["TW101","d.npz",2,"c",[1,3]].
    assert a.fingerprint == "072d627a6139799c55e6a12e281312565d59d9777d1b9b2728fbdb01d241a897"


@pytest.mark.parametrize(
    "overrides",
    [
        {"rule_id": "TW102"},
        {"artifact": "other.npz"},
        {"indices": [1, 4]},
        {"target_class": 5},
        {"client": "d"},
    ],
)
def test_fingerprint_changes_with_identity(overrides: dict[str, object]) -> None:
    base = {"artifact": "d.npz", "indices": [1, 3], "target_class": 2, "client": "c"}
    assert make(**base).fingerprint != make(**{**base, **overrides}).fingerprint


def test_finding_dict_round_trip() -> None:
    f = make(artifact="d.npz", indices=[1, 3], target_class=2, client="c", evidence={"k": [1]})
    d = f.to_dict()
    assert d["severity"] == "medium"
    assert d["fingerprint"] == f.fingerprint
    assert Finding.from_dict(d) == f


def test_finding_from_dict_reports_problems_as_input_errors() -> None:
    d = make().to_dict()
    with pytest.raises(InputError, match="missing severity"):
        Finding.from_dict({k: v for k, v in d.items() if k != "severity"})
    with pytest.raises(InputError, match="unknown keys: colour"):
        Finding.from_dict({**d, "colour": "red"})
    with pytest.raises(InputError, match="confidence"):
        Finding.from_dict({**d, "confidence": 7})
    with pytest.raises(InputError, match="JSON object"):
        Finding.from_dict([1])  # type: ignore[arg-type]


def test_sort_findings_puts_the_worst_first() -> None:
    low = make(severity="low", confidence=0.9)
    high_unsure = make(severity="high", confidence=0.2)
    high_sure = make(severity="high", confidence=0.8)
    assert sort_findings([low, high_unsure, high_sure]) == [high_sure, high_unsure, low]


# --- rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_id", "name", "atlas"),
    [
        ("TW001", "samples-added", ("AML.T0020",)),
        ("TW002", "samples-removed", ("AML.T0020",)),
        ("TW003", "samples-relabelled", ("AML.T0020",)),
        ("TW004", "samples-altered", ("AML.T0020", "AML.T0010.002")),
    ],
)
def test_provenance_rules_are_registered(rule_id: str, name: str, atlas: tuple[str, ...]) -> None:
    rule = get_rule(rule_id)
    assert rule.name == name
    assert rule.atlas == atlas
    assert rule.category == "provenance"
    assert rule.help
    assert rule.short_description


@pytest.fixture
def scratch_rule_id() -> Iterator[str]:
    """A rule id free for the test, removed from the registry afterwards."""
    # A free id in the data-poisoning range (other modules claim ids as they land).
    rule_id = next(f"TW1{n:02d}" for n in range(99, 0, -1) if f"TW1{n:02d}" not in RULES)
    try:
        yield rule_id
    finally:
        RULES.pop(rule_id, None)


def test_register_rule_is_idempotent_but_ids_are_stable(scratch_rule_id: str) -> None:
    rule = Rule(scratch_rule_id, "test-rule", "A test rule.", "Help.", Severity.LOW, ("AML.T0020",))
    assert register_rule(rule) is rule
    same = Rule(scratch_rule_id, "test-rule", "A test rule.", "Help.", "low", ["AML.T0020"])  # type: ignore[arg-type]
    register_rule(same)
    with pytest.raises(ValueError, match="already registered"):
        register_rule(Rule(scratch_rule_id, "other-rule", "Other.", "Help.", Severity.LOW))
    assert get_rule(scratch_rule_id) == rule
    assert rule.category == "data-poisoning"
    with pytest.raises(TypeError):
        register_rule(scratch_rule_id)  # type: ignore[arg-type]


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="unknown ATLAS"):
        Rule("TW150", "x", "x", "x", Severity.LOW, ("AML.T0999",))
    with pytest.raises(ValueError, match="unknown severity"):
        Rule("TW150", "x", "x", "x", "grave")  # type: ignore[arg-type]


def test_get_rule_unknown_id() -> None:
    with pytest.raises(KeyError, match="unknown rule id 'TW999'"):
        get_rule("TW999")


@pytest.mark.parametrize(
    ("rule_id", "category"),
    [
        ("TW001", "provenance"),
        ("TW101", "data-poisoning"),
        ("TW250", "model-backdoor"),
        ("TW301", "model-extraction"),
        ("TW901", "tool"),
        ("TW501", None),
        ("X123", None),
    ],
)
def test_rule_category(rule_id: str, category: str | None) -> None:
    assert rule_category(rule_id) == category
