"""SARIF 2.1.0 output, validated against the official OASIS schema."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tripwire.reports import Finding, Report, render_sarif, render_sarif_json, sarif_level
from tripwire.reports.sarif import FINGERPRINT_KEY, MAX_LOGICAL_INDICES

SARIF_SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
#: SHA-256 of the vendored schema file, so that an accidental edit is noticed.
SCHEMA_SHA256 = "ddddcccbf95c7c50c037b5b07eff4140556278ca574ff374db46786b5fce7949"


def test_vendored_schema_is_the_official_one(sarif_schema: dict[str, Any]) -> None:
    digest = hashlib.sha256(SARIF_SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256
    assert (
        sarif_schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    )
    assert sarif_schema["id"].startswith("https://docs.oasis-open.org/sarif/sarif/v2.1.0/")
    # The schema declares draft-04; it is also a well-formed draft-07 schema.
    jsonschema.Draft4Validator.check_schema(sarif_schema)
    jsonschema.Draft7Validator.check_schema(sarif_schema)


def test_sarif_is_valid(report: Report, sarif_validator: Any) -> None:
    log = render_sarif(report)
    sarif_validator.validate(log)
    # The JSON text form is strict and equal to the dict.
    assert json.loads(render_sarif_json(report)) == log


def test_sarif_for_an_empty_report_is_valid(sarif_validator: Any) -> None:
    log = render_sarif(Report(command="verify"))
    sarif_validator.validate(log)
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["rules"] == []


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda log: log["runs"][0]["results"][0].__setitem__("level", "fatal"),
        lambda log: log.__delitem__("version"),
        lambda log: log["runs"][0]["results"][0].__delitem__("message"),
        lambda log: log["runs"][0]["results"][0].__setitem__("ruleIndex", -5),
        lambda log: log["runs"][0]["tool"]["driver"].__setitem__("colour", "red"),
    ],
)
def test_the_validator_rejects_invalid_sarif(
    report: Report, sarif_validator: Any, corrupt: Any
) -> None:
    log = copy.deepcopy(render_sarif(report))
    corrupt(log)
    with pytest.raises(jsonschema.ValidationError):
        sarif_validator.validate(log)


def test_sarif_header_and_driver(report: Report) -> None:
    log = render_sarif(report)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert len(log["runs"]) == 1
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "tripwire"
    assert driver["version"] == report.tool["version"]
    assert driver["informationUri"].startswith("https://")
    assert log["runs"][0]["invocations"][0]["endTimeUtc"] == "2025-03-01T12:00:00Z"


def test_rules_come_from_the_registry_or_a_minimal_entry(report: Report) -> None:
    run = render_sarif(report)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["TW003", "TW299", "TW301"]
    registered = rules[0]
    assert registered["name"] == "samples-relabelled"
    assert registered["properties"]["atlas"] == ["AML.T0020"]
    assert registered["properties"]["tags"][0] == "security"
    assert "provenance" in registered["properties"]["tags"]
    assert registered["defaultConfiguration"] == {"level": "error"}
    assert registered["help"]["text"]
    unknown = rules[1]
    assert unknown["shortDescription"] == {"text": "Backdoor target"}
    assert unknown["properties"]["atlas"] == ["AML.T0018.000", "AML.T0043.004"]
    assert "model-backdoor" in unknown["properties"]["tags"]
    # ruleIndex points at the rule of the same id.
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        ("critical", "error"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "note"),
        ("info", "note"),
    ],
)
def test_levels(severity: str, level: str) -> None:
    assert sarif_level(severity) == level
    f = Finding("TW101", "t", "m", severity, 0.5, ("AML.T0020",))
    assert (
        render_sarif(Report(command="x", findings=[f]))["runs"][0]["results"][0]["level"] == level
    )


def test_result_contents(report: Report) -> None:
    results = render_sarif(report)["runs"][0]["results"]
    first = results[0]
    assert first["ruleId"] == "TW003"
    assert first["message"]["text"] == report.findings[0].message
    assert first["partialFingerprints"] == {FINGERPRINT_KEY: report.findings[0].fingerprint}
    props = first["properties"]
    assert props["confidence"] == pytest.approx(0.75)
    assert props["atlas"] == ["AML.T0020"]
    assert props["evidence"]["flipped"] == [3, 5, 9]
    assert props["evidence"]["bad"] is None
    location = first["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "data/train.npz"
    kinds = [(loc["kind"], loc["name"]) for loc in location["logicalLocations"]]
    assert kinds[:2] == [("value", "2"), ("resource", report.findings[0].client)]
    assert [name for kind, name in kinds if kind == "element"] == ["3", "5", "9"]


def test_locations_are_omitted_without_an_artifact(report: Report) -> None:
    extraction = render_sarif(report)["runs"][0]["results"][2]
    assert "locations" not in extraction
    assert extraction["properties"]["client"] == "api-17"


def test_long_index_lists_are_capped(sarif_validator: Any) -> None:
    f = Finding("TW101", "t", "m", "high", 0.5, ("AML.T0020",), "d.npz", indices=range(250))
    log = render_sarif(Report(command="x", findings=[f]))
    sarif_validator.validate(log)
    result = log["runs"][0]["results"][0]
    assert len(result["locations"][0]["logicalLocations"]) == MAX_LOGICAL_INDICES
    assert result["properties"]["sampleCount"] == 250
    assert result["properties"]["samplesNotListed"] == 150


@pytest.mark.parametrize(
    ("artifact", "uri"),
    [
        ("data/train set.npz", "data/train%20set.npz"),
        ("data\\train.npz", "data/train.npz"),
        ("C:\\data\\train.npz", "/C:/data/train.npz"),
        ("/abs/path/x.npz", "/abs/path/x.npz"),
        ("a:b/c.npz", "./a:b/c.npz"),
        ("s3://bucket/x.npz", "s3://bucket/x.npz"),
    ],
)
def test_artifact_uris_have_no_accidental_scheme(artifact: str, uri: str) -> None:
    f = Finding("TW101", "t", "m", "high", 0.5, ("AML.T0020",), artifact)
    result = render_sarif(Report(command="x", findings=[f]))["runs"][0]["results"][0]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == uri


def test_base_dir_makes_absolute_artifacts_relative(tmp_path: Path) -> None:
    inside = Finding("TW101", "t", "m", "high", 0.5, (), str(tmp_path / "data" / "x.npz"))
    outside = Finding("TW101", "t", "m", "high", 0.5, (), "/elsewhere/y.npz")
    log = render_sarif(Report(command="x", findings=[inside, outside]), base_dir=tmp_path)
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    ]
    assert uris == ["data/x.npz", "/elsewhere/y.npz"]


def test_oversized_evidence_is_left_to_the_json_report(sarif_validator: Any) -> None:
    f = Finding("TW101", "t", "m", "high", 0.5, ("AML.T0020",), evidence={"s": [0.5] * 30_000})
    log = render_sarif(Report(command="x", findings=[f]))
    sarif_validator.validate(log)
    evidence = log["runs"][0]["results"][0]["properties"]["evidence"]
    assert evidence["omitted"] is True
