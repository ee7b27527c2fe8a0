"""The red-team/blue-team exercise behind ``tripwire demo``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tripwire.errors import InputError
from tripwire.response import exercise

STAGES = [
    "ingestion",
    "serving",
    "supply-chain",
    "bypass",
    "audit",
    "extraction",
    "leak",
    "share",
]


@pytest.mark.slow
def test_demo_runs_the_whole_exercise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's demo, as a user runs it: every stage detects what it should."""
    pytest.importorskip("torch")
    out_dir = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "--out-dir", str(out_dir))
    ex = json.loads((out_dir / "exercise.json").read_text())
    failed = [c for s in ex["stages"] for c in s["checks"] if not c["passed"]]
    assert code == 0, failed
    assert ex["passed"] and ex["checks_passed"] == ex["checks"] >= 20
    assert [s["name"] for s in ex["stages"]] == STAGES
    assert "checks passed" in out
    facts = {s["name"]: s["facts"] for s in ex["stages"]}
    # The backdoor was live through the gateway only while v2 served.
    assert facts["bypass"]["probe_asr_v2"] >= 0.8
    assert facts["audit"]["probe_asr_after_rollback"] < 0.2
    assert facts["extraction"]["first_alert_at"] < exercise.ATTACK_BUDGET
    # One page links every stage's report, and every link resolves.
    page = (out_dir / "index.html").read_text()
    links = re.findall(r'href="([^"]+)"', page)
    assert len(links) >= 8
    for link in links:
        assert (out_dir / link).is_file(), link
    assert "<script" not in page


def test_a_stage_that_cannot_run_fails_the_exercise_and_stops_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(ex: object) -> None:
        raise InputError("the registry is on fire", "registry.db")

    monkeypatch.setattr(exercise, "_baseline", broken)
    code, out, _ = run(capsys, "demo", "--data", "bundled:digits", "--out-dir", str(tmp_path))
    assert code == 1
    ex = json.loads((tmp_path / "exercise.json").read_text())
    assert not ex["passed"]
    first, *rest = ex["stages"]
    assert "the registry is on fire" in first["checks"][0]["observed"]
    assert all(s["checks"][0]["observed"].startswith("not run") for s in rest)
    assert len(rest) == len(STAGES) - 1
    assert "FAILED [ingestion]" in out
    assert "SOME CHECKS FAILED" in (tmp_path / "index.html").read_text()


def test_demo_with_unknown_data_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "demo", "--data", "bundled:nope", "--out-dir", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "bundled:nope" in err
