"""STIX 2.1 export: structure against the spec, ATLAS references, deterministic ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.response.conftest import Incident
from tripwire.cli.main import main
from tripwire.response.stix import bundle_from_alerts, check_bundle, export_stix

_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"
_ID = r"^{}--[0-9a-f]{{8}}-[0-9a-f]{{4}}-[1-5][0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}$"


def _sdo(kind: str, required: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema of one STIX 2.1 object: common properties plus the type's required ones
    (STIX 2.1 CS03, sections 3.2 and 4-5)."""
    props: dict[str, Any] = {
        "type": {"const": kind},
        "spec_version": {"const": "2.1"},
        "id": {"type": "string", "pattern": _ID.format(kind)},
        "created": {"type": "string", "pattern": _TS},
        "modified": {"type": "string", "pattern": _TS},
        "created_by_ref": {"type": "string", "pattern": _ID.format("identity")},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "labels": {"type": "array", "items": {"type": "string"}},
        "external_references": {
            "type": "array",
            "items": {"type": "object", "required": ["source_name"]},
        },
        **(extra or {}),
    }
    return {
        "if": {"properties": {"type": {"const": kind}}},
        "then": {
            "required": ["type", "spec_version", "id", "created", "modified", *required],
            "properties": props,
            # Custom properties must be lower-case with underscores (section 11.1).
            "propertyNames": {"pattern": "^[a-z0-9_]{3,250}$|^id$"},
        },
    }


SCHEMA = {
    "type": "object",
    "required": ["type", "id", "objects"],
    "properties": {
        "type": {"const": "bundle"},
        "id": {"type": "string", "pattern": _ID.format("bundle")},
        "objects": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "id"],
                "properties": {
                    "type": {
                        "enum": [
                            "identity",
                            "attack-pattern",
                            "indicator",
                            "relationship",
                            "sighting",
                        ]
                    }
                },
                "allOf": [
                    _sdo("identity", ["name"]),
                    _sdo(
                        "attack-pattern",
                        ["name", "external_references"],
                        {
                            "external_references": {
                                "type": "array",
                                "contains": {
                                    "type": "object",
                                    "required": ["source_name", "external_id", "url"],
                                    "properties": {
                                        "source_name": {"const": "mitre-atlas"},
                                        "external_id": {"pattern": r"^AML\.T\d{4}(\.\d{3})?$"},
                                    },
                                },
                            }
                        },
                    ),
                    _sdo(
                        "indicator",
                        ["pattern", "pattern_type", "valid_from"],
                        {"pattern_type": {"const": "stix"}, "valid_from": {"pattern": _TS}},
                    ),
                    _sdo("relationship", ["relationship_type", "source_ref", "target_ref"]),
                    _sdo(
                        "sighting",
                        ["sighting_of_ref"],
                        {
                            "count": {"type": "integer", "minimum": 0, "maximum": 999999999},
                            "sighting_of_ref": {"pattern": _ID.format("indicator")},
                        },
                    ),
                ],
            },
        },
    },
}

ALERTS = {
    "alerts": [
        {
            "client": "api-17",
            "detector": "prada",
            "severity": "high",
            "atlas": ["AML.T0024.002", "AML.T0040"],
            "query_count": 400,
            "time": "2026-11-28T10:00:00Z",
            "evidence": {"shapiro_w": 0.81},
        },
        {
            "client": "api-17",
            "detector": "prada",
            "severity": "critical",
            "atlas": ["AML.T0024.002"],
            "query_count": 900,
            "time": 1795860000.5,
            "evidence": {"shapiro_w": 0.7},
        },
        {
            "client": "o'brien",
            "detector": "coverage",
            "severity": "medium",
            "atlas": ["AML.T0024.002"],
            "query_count": 50,
            "time": "2026-11-28T11:00:00+00:00",
            "evidence": {},
        },
    ]
}


def _valid(bundle: dict[str, Any]) -> None:
    jsonschema.validate(bundle, SCHEMA)
    assert check_bundle(bundle) == []
    stix2 = pytest.importorskip("stix2")
    # The reference implementation parses every object and checks each pattern.
    parsed = stix2.parse(json.dumps(bundle), allow_custom=True)
    assert len(parsed.objects) == len(bundle["objects"])
    from stix2patterns.validator import run_validator

    for o in bundle["objects"]:
        if o["type"] == "indicator":
            assert run_validator(o["pattern"], "2.1") == [], o["pattern"]


def _by_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in bundle["objects"] if o["type"] == kind]


def test_scan_report_bundle(incident: Incident, tmp_path: Path) -> None:
    out = tmp_path / "bundle.json"
    assert main(["export-stix", str(incident.report), "--out", str(out)]) == 0
    bundle = json.loads(out.read_text())
    _valid(bundle)
    report = json.loads(incident.report.read_text())
    indicators = _by_type(bundle, "indicator")
    assert len(indicators) == len(report["findings"])
    assert {i["x_tripwire_rule_id"] for i in indicators} == {
        f["rule_id"] for f in report["findings"]
    }
    aps = {
        ap["external_references"][0]["external_id"]: ap for ap in _by_type(bundle, "attack-pattern")
    }
    assert "AML.T0020" in aps
    ref = aps["AML.T0020"]["external_references"][0]
    assert ref["url"] == "https://atlas.mitre.org/techniques/AML.T0020"
    # The enriched supplier becomes an identity related to its indicator.
    suppliers = [i for i in _by_type(bundle, "identity") if i["name"] == "vendor-b"]
    assert len(suppliers) == 1
    rels = _by_type(bundle, "relationship")
    assert any(r["target_ref"] == suppliers[0]["id"] for r in rels)
    assert all(
        r["relationship_type"] == "indicates"
        for r in rels
        if r["target_ref"] in {ap["id"] for ap in aps.values()}
    )
    assert len(_by_type(bundle, "sighting")) == len(indicators)


def test_reexport_is_identical_and_merges_dedupe(incident: Incident, tmp_path: Path) -> None:
    a, b, both = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "ab.json"
    assert main(["export-stix", str(incident.report), "--out", str(a)]) == 0
    assert main(["export-stix", str(incident.report), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    alerts = tmp_path / "alerts.json"
    alerts.write_text(json.dumps(ALERTS))
    assert (
        main(
            [
                "export-stix",
                str(incident.report),
                str(alerts),
                str(incident.report),
                "--out",
                str(both),
            ]
        )
        == 0
    )
    merged = json.loads(both.read_text())
    _valid(merged)
    ids = [o["id"] for o in merged["objects"]]
    assert len(ids) == len(set(ids))
    single = json.loads(a.read_text())
    alert_only = bundle_from_alerts(ALERTS["alerts"])
    # AML.T0024.002 appears once although both inputs cite it... and only alerts do.
    expected = {o["id"] for o in single["objects"]} | {o["id"] for o in alert_only["objects"]}
    assert set(ids) == expected


def test_alert_bundle_groups_by_client_and_detector() -> None:
    bundle = export_stix(ALERTS)
    _valid(bundle)
    indicators = _by_type(bundle, "indicator")
    assert len(indicators) == 2
    api = next(i for i in indicators if i["x_tripwire_client"] == "api-17")
    assert api["x_tripwire_severity"] == "critical"
    assert api["pattern"] == "[user-account:user_id = 'api-17']"
    quoted = next(i for i in indicators if i["x_tripwire_client"] == "o'brien")
    assert quoted["pattern"] == "[user-account:user_id = 'o\\'brien']"
    sightings = _by_type(bundle, "sighting")
    assert len(sightings) == 3
    assert sorted(s["x_tripwire_query_count"] for s in sightings) == [50, 400, 900]
    assert api["created"] == "2026-11-28T10:00:00.000Z" <= api["modified"]


def test_the_gateway_alert_log_in_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "alerts.jsonl"
    log.write_text("".join(json.dumps(a) + "\n" for a in ALERTS["alerts"]) + "\n")
    assert main(["export-stix", str(log)]) == 0
    assert json.loads(capsys.readouterr().out) == export_stix(ALERTS)
    log.write_text(json.dumps(ALERTS["alerts"][0]) + "\nnot json\n")
    assert main(["export-stix", str(log)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a JSON file" in err and str(log) in err and len(err.splitlines()) == 1


def test_producer_organisation(incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-stix", str(incident.report), "--producer", "ACME SOC"]) == 0
    bundle = json.loads(capsys.readouterr().out)
    _valid(bundle)
    me = next(o for o in bundle["objects"] if o.get("name") == "ACME SOC")
    assert me["identity_class"] == "organization"
    assert all(
        o.get("created_by_ref") == me["id"] for o in bundle["objects"] if o["type"] != "identity"
    )


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"alerts": [{"client": "a", "detector": "d"}]}, "missing 'time'"),
        ({"alerts": [{"client": "a", "detector": "d", "time": "yesterday"}]}, "ISO 8601"),
        ({"alerts": [{"client": "a", "detector": "d", "time": 1, "atlas": ["T1"]}]}, "atlas"),
        ({"something": 1}, "neither a tripwire report nor"),
    ],
)
def test_bad_inputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object, needle: str
) -> None:
    p = tmp_path / "in.json"
    p.write_text(json.dumps(doc))
    assert main(["export-stix", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and str(p) in err and len(err.splitlines()) == 1


def test_check_bundle_catches_problems() -> None:
    bundle = export_stix(ALERTS)
    broken = json.loads(json.dumps(bundle))
    ind = next(o for o in broken["objects"] if o["type"] == "indicator")
    del ind["pattern"]
    sighting = next(o for o in broken["objects"] if o["type"] == "sighting")
    sighting["sighting_of_ref"] = "indicator--00000000-0000-5000-8000-000000000000"
    problems = check_bundle(broken)
    assert any("missing pattern" in p for p in problems)
    assert any("not in the bundle" in p for p in problems)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
