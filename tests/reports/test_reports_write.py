"""Writing reports to disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tripwire.errors import InputError
from tripwire.reports import Report, write_reports, write_text_atomic


def test_write_reports_writes_every_format(report: Report, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir"
    written = write_reports(
        report,
        json_path=out / "report.json",
        html_path=out / "report.html",
        sarif_path=str(out / "report.sarif"),
        markdown_path=out / "report.md",
    )
    assert set(written) == {"json", "html", "sarif", "markdown"}
    assert Report.from_dict(json.loads(written["json"].read_text(encoding="utf-8"))) == report
    assert json.loads(written["sarif"].read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert written["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert written["markdown"].read_text(encoding="utf-8").startswith("# tripwire scan report")
    for path in written.values():
        assert path.read_text(encoding="utf-8").endswith("\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
        "report.sarif",
    ]  # no temporary files left behind


def test_write_reports_skips_formats_not_asked_for(report: Report, tmp_path: Path) -> None:
    written = write_reports(report, json_path=tmp_path / "r.json")
    assert list(written) == ["json"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_writes_replace_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "r.md"
    target.write_text("old", encoding="utf-8")
    write_text_atomic(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"


def test_unwritable_paths_raise_input_error_naming_the_path(report: Report, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    target = blocker / "report.json"  # its parent is a file
    with pytest.raises(InputError) as info:
        write_reports(report, json_path=target)
    assert str(target) in str(info.value)
    assert info.value.path == str(target)


def test_a_directory_in_the_way_is_an_input_error(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.mkdir()
    with pytest.raises(InputError, match="cannot write report"):
        write_text_atomic(target, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # temp file removed


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "r.json", "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
