"""threat-model: schema validation, per-system tables, CLI formats and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tripwire.cli.main import main
from tripwire.reports.atlas import ATLAS_TECHNIQUES
from tripwire.response.schema import describe
from tripwire.response.threat_model import (
    CATALOGUE,
    SYSTEM_SCHEMA,
    build_threat_model,
    load_system,
    render_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "threat-model" / "system.yaml"

# An offline, in-house system: no outside data, no API.
OFFLINE = """\
system:
  name: batch-scorer
data:
  sources:
    - name: warehouse
      kind: internal
training:
  where: in-house
model:
  supply: in-house
serving:
  exposure: none
"""

# A public API on a downloaded model shipped as a pickle, no controls in place.
EXPOSED = """\
system:
  name: open-api
data:
  sources:
    - name: web
      kind: scraped
      labels: crowd
model:
  supply: third-party
  format: pickle
serving:
  exposure: public
  outputs: logits
  authentication: false
clients:
  - name: anyone
    trust: anonymous
    volume: high
"""


def _write(tmp_path: Path, text: str, name: str = "system.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_example_loads_and_every_threat_is_well_formed() -> None:
    model = build_threat_model(load_system(EXAMPLE))
    assert model.rows
    for row in model.rows:
        assert row.risk in ("low", "medium", "high")
        assert all(tid in ATLAS_TECHNIQUES for tid in row.threat.atlas)
        assert row.why
    ids = [t.id for t in CATALOGUE]
    assert len(ids) == len(set(ids))


def test_two_systems_give_different_tables(tmp_path: Path) -> None:
    offline = build_threat_model(load_system(_write(tmp_path, OFFLINE, "a.yaml")))
    exposed = build_threat_model(load_system(_write(tmp_path, EXPOSED, "b.yaml")))
    off_ids = {r.threat.id for r in offline.rows}
    exp_ids = {r.threat.id for r in exposed.rows}
    # Nothing is served offline, so no serving threat; the public API has extraction.
    assert not any(i.startswith("ML-V") for i in off_ids)
    assert "ML-V01" in exp_ids and "ML-S02" in exp_ids
    exp = {r.threat.id: r for r in exposed.rows}
    assert exp["ML-S02"].risk == "high"  # pickle files run code on load
    assert exp["ML-V01"].risk == "high"  # public logits, no rate limit, no monitor
    assert render_markdown(offline) != render_markdown(exposed)


def test_controls_in_place_lower_the_risk(tmp_path: Path) -> None:
    base = load_system(_write(tmp_path, EXPOSED))
    before = {r.threat.id: r.risk for r in build_threat_model(base).rows}
    base["serving"]["monitoring"] = True
    base["data"]["scanned"] = True
    after = {r.threat.id: r.risk for r in build_threat_model(base).rows}
    order = ["low", "medium", "high"]
    assert order.index(after["ML-V01"]) < order.index(before["ML-V01"])
    assert order.index(after["ML-D01"]) < order.index(before["ML-D01"])


def test_unknown_fields_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = OFFLINE.replace("      kind: internal", "      kind: internal\n      vendor_id: 7")
    p = _write(tmp_path, bad)
    code = main(["threat-model", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "data.sources[0].vendor_id" in err[0] and str(p) in err[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("system: {}\n", "system.name: is required"),
        ("data: {}\n", "system: is required"),
        (OFFLINE.replace("exposure: none", "exposure: everyone"), "serving.exposure"),
        (OFFLINE + "extra: 1\n", "'extra'"),
        ("system: [\n", "not valid YAML"),
        ("", "is empty"),
    ],
)
def test_bad_descriptions_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    p = _write(tmp_path, text)
    assert main(["threat-model", str(p)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["threat-model", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_markdown_html_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["threat-model", str(EXAMPLE)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Threat model: sign-reader")
    assert "## Serving" in md and "AML.T0024.002" in md and "`tripwire guard`" in md
    html = tmp_path / "tm.html"
    assert main(["threat-model", str(EXAMPLE), "--out", str(html)]) == 0
    page = html.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "ML-V01" in page
    js = tmp_path / "tm.json"
    assert main(["threat-model", str(EXAMPLE), "--out", str(js), "--format", "json"]) == 0
    data = json.loads(js.read_text())
    assert {t["id"] for t in data["threats"]} >= {"ML-D01", "ML-V01"}


def test_docs_list_every_schema_field() -> None:
    doc = (ROOT / "docs" / "threat-model.md").read_text()
    for path, *_ in describe(SYSTEM_SCHEMA):
        assert f"`{path}`" in doc, path


def test_every_control_is_a_tripwire_command() -> None:
    from tripwire.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    controls = {c for t in CATALOGUE for c in t.controls}
    assert controls <= commands, controls - commands
