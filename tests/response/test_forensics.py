"""forensics data: flagged samples -> source -> registered versions -> serving aliases."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.response.conftest import Incident
from tests.response.test_registry import model_file, report_file
from tripwire.cli.main import main
from tripwire.ingest import build_manifest, write_manifest
from tripwire.io import load_dataset, make_dataset
from tripwire.response.forensics import data_forensics, load_scan_report
from tripwire.response.registry import Registry
from tripwire.response.stix import check_bundle


def _manifest_of(ds_x: np.ndarray, y: np.ndarray, source: np.ndarray, path: Path) -> str:
    ds = make_dataset(ds_x, y, source=source)
    write_manifest(build_manifest(ds), path)
    return ds.content_sha256()


@pytest.fixture
def lineage(tmp_path: Path, incident: Incident) -> Registry:
    """v1 clean data, v2 the scanned delivery (served as prod), v3 a superset of the
    delivery, v4 no manifest, v5 only vendor-a's part of the delivery."""
    reg = Registry(tmp_path / "reg.db")
    rng = np.random.default_rng(7)
    clean_x = rng.integers(0, 256, (60, 4, 4), dtype=np.uint8)
    clean_y = np.repeat(np.arange(4), 15)
    clean_m = tmp_path / "clean.jsonl"
    _manifest_of(clean_x, clean_y, np.array(["internal"] * 60), clean_m)
    delivery = load_dataset(str(incident.data))
    super_m = tmp_path / "superset.jsonl"
    _manifest_of(
        np.concatenate([delivery.x, clean_x]),
        np.concatenate([delivery.y, clean_y]),
        np.concatenate([delivery.source, np.array(["internal"] * 60)]),
        super_m,
    )
    part_m = tmp_path / "vendor-a.jsonl"
    keep = delivery.source == "vendor-a"
    _manifest_of(delivery.x[keep], delivery.y[keep], delivery.source[keep], part_m)
    passing = report_file(tmp_path, "model-scan.json", "scan-model")
    reg.add(model_file(tmp_path, "m1.pt", b"m1"), manifest=clean_m)
    reg.add(model_file(tmp_path, "m2.pt", b"m2"), manifest=incident.manifest)
    reg.add(model_file(tmp_path, "m3.pt", b"m3"), manifest=super_m)
    reg.add(model_file(tmp_path, "m4.pt", b"m4"))
    reg.add(model_file(tmp_path, "m5.pt", b"m5"), manifest=part_m)
    for v in ("v1", "v2"):
        reg.attach(v, passing)  # the backdoor slipped past the model scan
    reg.promote("v1", "prod")
    reg.promote("v2", "prod")
    return reg


def test_traces_samples_source_and_versions(incident: Incident, lineage: Registry) -> None:
    rep = load_scan_report(incident.report)
    res = data_forensics(rep, report_path=str(incident.report), registry=lineage)
    # The manifest came from the registry (v2's stored copy); no --manifest needed.
    assert res.implicated_sources == ["vendor-b"]
    flagged_pos = {r["position"] for r in res.flagged}
    assert set(incident.bad.tolist()) <= flagged_pos
    by_pos = {r["position"]: r for r in res.flagged}
    assert all(by_pos[i]["source"] == "vendor-b" for i in incident.bad)
    assert by_pos[int(incident.bad[0])]["sample_id"]  # named samples, not bare positions
    assert res.target_class == 0
    rows = {v["version"]: v for v in res.versions}
    assert rows["v1"]["flagged_samples"] == 0
    assert rows["v2"]["lineage"] == "trained on the scanned data"
    assert rows["v2"]["flagged_samples"] == len(res.flagged)
    n_b = sum(r["source"] == "vendor-b" for r in res.flagged)
    assert rows["v2"]["attributed_samples"] == n_b
    assert rows["v3"]["attributed_samples"] == n_b  # a superset carries the poison too
    assert rows["v4"]["lineage"].startswith("unknown")
    # vendor-a's part holds only the scan's false positives: counted, not affected.
    n_a = sum(r["source"] == "vendor-a" for r in res.flagged)
    assert rows["v5"]["flagged_samples"] == n_a
    assert rows["v5"]["attributed_samples"] == 0
    assert {v["version"] for v in res.affected} == {"v2", "v3"}
    rules = [(f.rule_id, f.severity.value) for f in res.findings]
    assert ("TW150", "high") in rules and ("TW152", "critical") in rules
    assert sum(r == "TW151" for r, _ in rules) == 2
    served = next(f for f in res.findings if f.rule_id == "TW152")
    assert served.evidence["alias"] == "prod" and served.evidence["version"] == "v2"
    events = [e["event"] for e in res.timeline]
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in res.timeline]
    assert times == sorted(times)  # 12:00:00.5Z sorts after 12:00:00Z
    assert any("'prod' -> v2 (affected)" in e for e in events)


def test_cli_incident_report_then_contain(
    tmp_path: Path, incident: Incident, lineage: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_html = tmp_path / "incident.json", tmp_path / "incident.html"
    code = main(
        [
            "forensics", "data", "--report", str(incident.report),
            "--manifest", str(incident.manifest), "--registry", str(lineage.path),
            "--out", str(out_json), "--html", str(out_html),
        ]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 1  # critical and high findings
    assert "vendor-b" in stdout and "v2" in stdout and "prod" in stdout
    rep = json.loads(out_json.read_text())
    assert rep["command"] == "forensics-data"
    assert rep["forensics"]["implicated_sources"] == ["vendor-b"]
    html = out_html.read_text()
    assert "Timeline" in html and "vendor-b" in html
    # Containment: attach the incident to the served version, roll back.
    assert main(["registry", "attach", "v2", str(out_json), "--registry", str(lineage.path)]) == 0
    assert main(["registry", "rollback", "--alias", "prod", "--registry", str(lineage.path)]) == 0
    assert lineage.aliases()["prod"]["version"] == "v1"
    # Sharing: the incident exports as a valid STIX bundle naming the supplier.
    bundle = tmp_path / "incident.stix.json"
    assert main(["export-stix", str(out_json), "--out", str(bundle)]) == 0
    b = json.loads(bundle.read_text())
    assert check_bundle(b) == []
    assert any(o["type"] == "identity" and o["name"] == "vendor-b" for o in b["objects"])
    v2_sha = lineage.get("v2").sha256
    served = next(o for o in b["objects"] if o.get("x_tripwire_rule_id") == "TW152")
    assert served["pattern"] == f"[file:hashes.'SHA-256' = '{v2_sha}']"


def test_without_registry_needs_a_manifest(
    tmp_path: Path,
    incident: Incident,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRIPWIRE_REGISTRY", raising=False)
    code = main(["forensics", "data", "--report", str(incident.report)])
    err = capsys.readouterr().err
    assert code == 2 and "no manifest describes the scanned data" in err
    code = main(
        [
            "forensics",
            "data",
            "--report",
            str(incident.report),
            "--manifest",
            str(incident.manifest),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "vendor-b" in out and "no registry given" in out


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"schema_version": "1.0", "command": "verify", "findings": []}, "not a scan-data report"),
        ([1, 2], "a report must be a JSON object"),
    ],
)
def test_bad_reports_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object, needle: str
) -> None:
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    assert main(["forensics", "data", "--report", str(p)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(p) in err and len(err.strip().splitlines()) == 1


def test_other_manifest_is_named(
    tmp_path: Path, incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.jsonl"
    rng = np.random.default_rng(1)
    _manifest_of(rng.integers(0, 255, (10, 4, 4), dtype=np.uint8), np.arange(10) % 2,
                 np.array(["a"] * 10), other)  # fmt: skip
    code = main(
        ["forensics", "data", "--report", str(incident.report), "--manifest", str(other),
         "--registry", str(tmp_path / "absent.db")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "no registry here" in err
    code = main(["forensics", "data", "--report", str(incident.report), "--manifest", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "other.jsonl" in err
