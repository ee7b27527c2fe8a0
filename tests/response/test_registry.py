"""Model registry: content hashing, lineage, scan-gated promotion, rollback, atomicity."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.response.conftest import Incident
from tripwire.cli.main import main
from tripwire.errors import InputError
from tripwire.reports import Finding, Report, render_json
from tripwire.response.registry import (
    AliasWatcher,
    PromotionRefusedError,
    Registry,
    registry_path,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]


def model_file(tmp_path: Path, name: str, payload: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(payload)
    return p


def report_file(tmp_path: Path, name: str, command: str, *severities: str) -> Path:
    findings = [
        Finding(rule_id="TW201", title="t", message="m", severity=s, confidence=0.9)
        for s in severities
    ]
    p = tmp_path / name
    p.write_text(render_json(Report(command=command, findings=findings)))
    return p


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg" / "registry.db")


def test_add_is_content_hashed_and_keeps_its_own_copy(reg: Registry, tmp_path: Path) -> None:
    m = model_file(tmp_path, "a.pt", b"model-a")
    v, new = reg.add(m, by="alice")
    assert new and v.label == "v1" and v.added_by == "alice"
    again, new2 = reg.add(model_file(tmp_path, "copy.pt", b"model-a"))
    assert not new2 and again.id == v.id  # same bytes, same version
    m.unlink()  # the original may disappear: the registry has its copy
    stored = reg.file_of(v)
    assert stored.read_bytes() == b"model-a"
    assert reg.get(v.sha256[:8]).id == v.id and reg.get("v1").id == v.id
    assert reg.verify() == []


def test_promotion_is_gated_by_the_latest_scan_of_each_kind(reg: Registry, tmp_path: Path) -> None:
    v1, _ = reg.add(model_file(tmp_path, "a.pt", b"a"))
    with pytest.raises(PromotionRefusedError, match="no scan report"):
        reg.promote("v1", "prod")
    reg.attach("v1", report_file(tmp_path, "r1.json", "scan-model", "critical"))
    with pytest.raises(PromotionRefusedError, match="critical"):
        reg.promote("v1", "prod", by="bob")
    # A later scan of the same kind supersedes the earlier one.
    reg.attach("v1", report_file(tmp_path, "r2.json", "scan-model", "low"))
    # ... but a failing scan of another kind still blocks.
    reg.attach("v1", report_file(tmp_path, "r3.json", "scan-data", "high"))
    with pytest.raises(PromotionRefusedError, match="scan-data"):
        reg.promote("v1", "prod")
    # The gate severity is configurable: only critical blocks now.
    v, prev = reg.promote("v1", "prod", fail_on="critical", by="bob")
    assert v.id == v1.id and prev is None
    assert reg.aliases()["prod"]["updated_by"] == "bob"
    reg.set_fail_on("critical")
    assert reg.gate("v1").passed


def test_rollback_returns_to_the_last_passing_version(reg: Registry, tmp_path: Path) -> None:
    clean = report_file(tmp_path, "clean.json", "scan-model")
    for i in range(1, 4):
        reg.add(model_file(tmp_path, f"m{i}.pt", f"m{i}".encode()))
        reg.attach(f"v{i}", clean)
    reg.promote("v1", "prod")
    reg.promote("v2", "prod")
    reg.promote("v3", "prod")
    # v3 turns out to be backdoored, and so does v2 on a rescan.
    reg.attach("v3", report_file(tmp_path, "bad3.json", "scan-model", "critical"))
    reg.attach("v2", report_file(tmp_path, "bad2.json", "scan-model", "high"))
    v, prev = reg.rollback("prod", by="oncall")
    assert (v.label, prev.label) == ("v1", "v3")
    assert reg.resolve("prod") == reg.file_of(v)
    hist = reg.history("prod")
    assert [h["action"] for h in hist] == ["promote", "promote", "promote", "rollback"]
    assert hist[-1]["by"] == "oncall" and hist[-1]["previous"] == "v3"
    # Nothing else passes: the rollback refuses and the alias stays.
    reg.attach("v1", report_file(tmp_path, "bad1.json", "scan-model", "critical"))
    from tripwire.errors import InputError

    with pytest.raises(InputError, match="no version passes"):
        reg.rollback("prod")
    assert reg.aliases()["prod"]["version"] == "v1"


def test_lineage_from_manifest_and_reports(
    reg: Registry, tmp_path: Path, incident: Incident
) -> None:
    m = model_file(tmp_path, "model.pt", b"trained-on-delivery")
    meta = {"model_sha256": None, "dataset": {"sha256": incident.dataset_sha256}}
    (tmp_path / "model.pt.meta.json").write_text(json.dumps(meta))
    v, _ = reg.add(m, manifest=incident.manifest)
    assert v.dataset_sha256 == incident.dataset_sha256
    assert v.manifest_file is not None and (reg.store / v.manifest_file).is_file()
    r, _ = reg.attach("v1", incident.report)
    assert r.command == "scan-data" and r.dataset_sha256 == incident.dataset_sha256
    d = reg.describe("v1")
    assert d["gate"]["passed"] is False and d["reports"][0]["findings"] >= 1
    # A manifest of other data than the model's metadata names is refused.
    other = model_file(tmp_path, "other.pt", b"other")
    (tmp_path / "other.pt.meta.json").write_text(json.dumps({"dataset": {"sha256": "0" * 64}}))
    from tripwire.errors import InputError

    with pytest.raises(InputError, match="trained on 000000000000"):
        reg.add(other, manifest=incident.manifest)


def test_watcher_sees_promotions_and_rollbacks(reg: Registry, tmp_path: Path) -> None:
    clean = report_file(tmp_path, "clean.json", "scan-model")
    for i in (1, 2):
        reg.add(model_file(tmp_path, f"m{i}.pt", f"m{i}".encode()))
        reg.attach(f"v{i}", clean)
    reg.promote("v1", "prod")
    w = AliasWatcher(reg.path, "prod")
    first = w.poll()
    assert first is not None and first.read_bytes() == b"m1"
    assert w.poll() is None
    reg.promote("v2", "prod")
    assert w.poll() == reg.file_of(reg.get("v2"))
    reg.rollback("prod")
    assert w.poll() == reg.file_of(reg.get("v1"))
    assert resolve("prod", reg.path) == reg.file_of(reg.get("v1"))
    # A stored file swapped on disk is refused when the alias moves to it.
    v2_file = reg.file_of(reg.get("v2"))
    v2_file.chmod(0o644)
    v2_file.write_bytes(b"swapped")
    reg.promote("v2", "prod")
    from tripwire.errors import InputError

    with pytest.raises(InputError, match="does not match its sha256"):
        w.poll()


def test_registry_path_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRIPWIRE_REGISTRY", raising=False)
    assert registry_path(None) == Path(".tripwire/registry.db")
    monkeypatch.setenv("TRIPWIRE_REGISTRY", str(tmp_path / "x.db"))
    assert registry_path(None) == tmp_path / "x.db"
    assert registry_path(tmp_path / "y.db") == tmp_path / "y.db"


def test_crash_during_promotion_keeps_the_previous_alias(reg: Registry, tmp_path: Path) -> None:
    clean = report_file(tmp_path, "clean.json", "scan-model")
    for i in (1, 2):
        reg.add(model_file(tmp_path, f"m{i}.pt", f"m{i}".encode()))
        reg.attach(f"v{i}", clean)
    reg.promote("v1", "prod")
    # A real process death after the alias row is written, before the commit.
    script = textwrap.dedent(
        f"""
        import os
        from tripwire.response.registry import Registry

        def die(*args, **kwargs):
            os._exit(9)

        Registry._record_history = staticmethod(die)
        Registry({str(reg.path)!r}).promote("v2", "prod")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, check=False, timeout=60)
    assert proc.returncode == 9
    assert reg.aliases()["prod"]["version"] == "v1"
    assert [h["version"] for h in reg.history("prod")] == ["v1"]
    with sqlite3.connect(reg.path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The registry still works after the crash.
    reg.promote("v2", "prod")
    assert reg.aliases()["prod"]["version"] == "v2"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str], incident: Incident) -> None:
    db = str(tmp_path / "r.db")
    good = model_file(tmp_path, "good.pt", b"good")
    bad = model_file(tmp_path, "bad.pt", b"bad")
    assert run(capsys, "registry", "--registry", db, "init", "--fail-on", "high")[0] == 0
    code, out, _ = run(capsys, "registry", "add", str(good), "--registry", db, "--by", "ci")
    assert code == 0 and "added v1" in out
    run(capsys, "registry", "add", str(bad), "--registry", db, "--manifest", str(incident.manifest))
    clean = report_file(tmp_path, "clean.json", "scan-model")
    code, out, _ = run(capsys, "registry", "attach", "v1", str(clean), "--registry", db)
    assert code == 0 and "gate: pass" in out
    code, out, _ = run(capsys, "registry", "attach", "v2", str(incident.report), "--registry", db)
    assert code == 0 and "gate: FAIL" in out
    code, out, _ = run(capsys, "registry", "promote", "v1", "--alias", "prod", "--registry", db)
    assert code == 0 and "'prod' -> v1" in out
    code, out, err = run(capsys, "registry", "promote", "v2", "--alias", "prod", "--registry", db)
    assert code == 1 and out == "" and "refusing to point 'prod' at v2" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "registry", "list", "--json", "--registry", db)
    rows = json.loads(out)["versions"]
    assert [(r["version"], r["gate"], r["aliases"]) for r in rows] == [
        ("v1", "pass", ["prod"]),
        ("v2", "fail", []),
    ]
    code, out, _ = run(capsys, "registry", "show", "v2", "--json", "--registry", db)
    assert json.loads(out)["dataset_sha256"] == incident.dataset_sha256
    code, out, _ = run(capsys, "registry", "resolve", "prod", "--registry", db)
    assert Path(out.strip()).read_bytes() == b"good"
    # Bad input: unknown versions and aliases, a rollback with nowhere to go.
    for argv, needle in [
        (("show", "v9"), "unknown model version 'v9'"),
        (("promote", "nope", "--alias", "prod"), "unknown model version 'nope'"),
        (("rollback", "--alias", "staging"), "unknown alias 'staging'"),
        (("rollback", "--alias", "prod"), "no version passes"),
        (("attach", "v1", str(tmp_path / "missing.json")), "no such report file"),
    ]:
        code, out, err = run(capsys, "registry", *argv, "--registry", db)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert run(capsys, "registry", "verify", "--registry", db)[0] == 0
    stored = Registry(db).file_of(Registry(db).get("v1"))
    stored.chmod(0o644)
    stored.write_bytes(b"swapped")
    code, out, _ = run(capsys, "registry", "verify", "--registry", db)
    assert code == 1 and "v1: stored model file altered" in out
    code, _, err = run(capsys, "registry", "list", "--registry", str(tmp_path / "none.db"))
    assert code == 2 and "no registry here" in err
    notdb = tmp_path / "notdb.db"
    notdb.write_text("hello")
    code, _, err = run(capsys, "registry", "list", "--registry", str(notdb))
    assert code == 2 and str(notdb) in err


def test_polling_while_another_process_promotes(reg: Registry, tmp_path: Path) -> None:
    clean = report_file(tmp_path, "clean.json", "scan-model")
    for i in (1, 2):
        reg.add(model_file(tmp_path, f"m{i}.pt", f"m{i}".encode()))
        reg.attach(f"v{i}", clean)
    reg.promote("v1", "prod")
    script = textwrap.dedent(
        f"""
        from tripwire.response.registry import Registry
        reg = Registry({str(reg.path)!r})
        for i in range(30):
            reg.promote("v2" if i % 2 == 0 else "v1", "prod")
        reg.promote("v2", "prod")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    seen = set()
    watcher = AliasWatcher(reg.path, "prod")
    try:
        while proc.poll() is None:
            path = watcher.poll()  # never a partial state, never a lock error
            if path is not None:
                seen.add(path.read_bytes())
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    watcher.poll()
    assert watcher.current_ is not None and watcher.current_.read_bytes() == b"m2"
    assert seen <= {b"m1", b"m2"} and len(reg.history("prod")) == 32


def test_the_model_metadata_is_kept_beside_the_stored_model(reg: Registry, tmp_path: Path) -> None:
    """What serving needs (the input shape) survives the original files: the sidecar is
    stored with the version, returned beside resolve()'s path, and checked on use."""
    from tripwire.models.train import metadata_path

    m = model_file(tmp_path, "net.pt", b"model-net")
    sidecar = tmp_path / "net.meta.json"
    sidecar.write_text(json.dumps({"input_shape": [1, 28, 28], "classes": ["a", "b"]}, indent=1))
    original = sidecar.read_bytes()
    v, _ = reg.add(m)
    reg.attach("v1", report_file(tmp_path, "ok.json", "scan-model"))
    reg.promote("v1", "prod")
    m.unlink()
    sidecar.unlink()
    path = resolve("prod", reg.path)
    assert metadata_path(path).read_bytes() == original
    assert reg.meta_file_of(v) == metadata_path(path)
    assert reg.describe("prod")["meta_stored"] == str(metadata_path(path))
    watcher = AliasWatcher(reg.path, "prod")
    assert watcher.poll() == path and watcher.version_ is not None
    assert watcher.version_.meta["input_shape"] == [1, 28, 28]
    assert reg.verify() == []

    # An input shape edited on disk is refused, by verify and by the watcher.
    stored = metadata_path(path)
    stored.chmod(0o644)
    stored.write_text(json.dumps({"input_shape": [3, 28, 28], "classes": ["a", "b"]}))
    assert any("metadata altered" in p for p in reg.verify())
    with pytest.raises(InputError, match="does not match"):
        AliasWatcher(reg.path, "prod").poll()
    # Adding the model again repairs it from the registry's record, the version unchanged.
    again, new = reg.add(model_file(tmp_path, "net.pt", b"model-net"))
    assert not new and again.id == v.id
    assert json.loads(stored.read_text())["input_shape"] == [1, 28, 28]
    assert reg.verify() == []


def test_a_version_without_metadata_has_no_sidecar(reg: Registry, tmp_path: Path) -> None:
    v, _ = reg.add(model_file(tmp_path, "bare.pt", b"bare"))
    assert v.meta == {} and not reg.meta_file_of(v).exists()
    assert reg.describe("v1")["meta_stored"] is None
    assert reg.verify() == []


def test_a_sidecar_that_fails_to_store_leaves_no_version(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar is written before the version's row commits: a failure registers
    nothing, and the next add succeeds."""
    m = model_file(tmp_path, "x.pt", b"model-x")
    (tmp_path / "x.meta.json").write_text(json.dumps({"input_shape": [4]}))
    reg.add(model_file(tmp_path, "first.pt", b"first"))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Registry, "_store_meta", boom)
    with pytest.raises(OSError, match="disk full"):
        reg.add(m)
    assert [v.label for v in reg.versions()] == ["v1"]
    monkeypatch.undo()
    v, new = reg.add(m)
    assert new and json.loads(reg.meta_file_of(v).read_text()) == {"input_shape": [4]}
