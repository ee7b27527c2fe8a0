"""The Report and Figure model and its JSON form."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from PIL import Image

import tripwire
from tripwire.errors import InputError
from tripwire.reports import (
    RESERVED_KEYS,
    SCHEMA_VERSION,
    Figure,
    Finding,
    Report,
    Severity,
    render_json,
)


def _reject_constant(name: str) -> None:
    raise AssertionError(f"non-strict JSON constant {name}")


def strict_loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


# --- JSON round trip and strictness --------------------------------------------------


def test_json_round_trip(report: Report) -> None:
    text = render_json(report)
    again = Report.from_dict(strict_loads(text))
    assert again == report
    assert render_json(again) == text


def test_json_layout(report: Report) -> None:
    data = strict_loads(render_json(report))
    assert list(data)[:9] == [
        "schema_version",
        "tool",
        "command",
        "generated_at",
        "inputs",
        "summary",
        "findings",
        "metrics",
        "figures",
    ]
    assert data["schema_version"] == SCHEMA_VERSION == "1.0"
    assert data["tool"] == {"name": "tripwire", "version": tripwire.__version__}
    assert data["inputs"]["data"]["path"] == "data/train.npz"
    assert data["findings"][0]["fingerprint"] == report.findings[0].fingerprint
    assert render_json(report).startswith('{\n  "schema_version"')  # indent 2


def test_json_is_strict_even_with_nan_and_numpy(findings: list[Finding]) -> None:
    report = Report(
        command="scan",
        findings=findings,
        summary={"nan": np.nan, "inf": np.float32(np.inf)},
        metrics={"scores": np.array([0.5, np.nan, -np.inf])},
    )
    # Values stored after construction are converted when rendering.
    report.metrics["late"] = np.float64(np.nan)
    report.summary["count"] = np.int64(3)
    text = render_json(report)
    data = strict_loads(text)
    assert "NaN" not in text
    assert "Infinity" not in text
    assert data["summary"] == {"nan": None, "inf": None, "count": 3}
    assert data["metrics"]["scores"] == [0.5, None, None]
    assert data["metrics"]["late"] is None
    assert data["findings"][0]["evidence"]["bad"] is None


# --- sections ------------------------------------------------------------------------


def test_sections_are_merged_at_the_top_level(report: Report) -> None:
    data = strict_loads(render_json(report))
    assert "sections" not in data
    assert data["scores"] == [{"index": 3, "score": 0.5}, {"index": 5, "score": 0.25}]
    assert data["detectors"]["spectral"]["params"] == {"k": 2}


def test_unknown_top_level_keys_are_read_back_as_sections(report: Report) -> None:
    data = report.to_dict()
    data["flagged"] = [3, 5]
    again = Report.from_dict(data)
    assert again.sections["flagged"] == [3, 5]
    assert set(again.sections) == {"scores", "detectors", "flagged"}


@pytest.mark.parametrize("key", sorted(RESERVED_KEYS))
def test_section_names_may_not_collide_with_reserved_keys(key: str) -> None:
    with pytest.raises(ValueError, match="collides with a reserved report key"):
        Report(command="scan", sections={key: 1})


def test_add_section_checks_names_and_converts_values() -> None:
    report = Report(command="scan")
    report.add_section("scores", np.array([1.0, np.nan]))
    assert report.sections["scores"] == [1.0, None]
    with pytest.raises(ValueError, match="reserved"):
        report.add_section("findings", [])
    with pytest.raises(ValueError, match="non-empty"):
        report.add_section("", 1)


def test_collisions_added_after_construction_are_caught_when_rendering() -> None:
    report = Report(command="scan")
    report.sections["summary"] = {"sneaky": True}
    with pytest.raises(ValueError, match="collides"):
        render_json(report)


# --- other report fields -------------------------------------------------------------


def test_generated_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = Report(command="scan").generated_at
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp) >= before


def test_generated_at_is_normalised_to_utc() -> None:
    assert Report(command="x", generated_at="2025-03-01T14:00:00+02:00").generated_at == (
        "2025-03-01T12:00:00Z"
    )
    when = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert Report(command="x", generated_at=when).generated_at == "2025-03-01T12:00:00Z"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        Report(command="x", generated_at="2025-03-01T12:00:00")
    with pytest.raises(ValueError, match="ISO 8601"):
        Report(command="x", generated_at="yesterday")


def test_report_validation() -> None:
    with pytest.raises(ValueError, match="command"):
        Report(command=" ")
    with pytest.raises(TypeError, match="Finding objects"):
        Report(command="x", findings=[{"rule_id": "TW001"}])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Figure objects"):
        Report(command="x", figures=["plot"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="inputs"):
        Report(command="x", inputs={"data": "train.npz"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="no JSON form"):
        Report(command="x", summary={"x": object()})


def test_severity_queries(report: Report) -> None:
    assert report.max_severity() is Severity.CRITICAL
    assert Report(command="x").max_severity() is None
    assert [f.rule_id for f in report.findings_at_or_above("high")] == ["TW003", "TW299"]
    assert [f.rule_id for f in report.findings_at_or_above(Severity.CRITICAL)] == ["TW299"]
    assert report.severity_counts() == {"critical": 1, "high": 1, "medium": 1, "low": 0, "info": 0}
    assert [f.rule_id for f in report.sorted_findings()] == ["TW299", "TW003", "TW301"]


def test_from_dict_rejects_bad_reports(report: Report) -> None:
    data = report.to_dict()
    with pytest.raises(InputError, match="schema_version"):
        Report.from_dict({**data, "schema_version": "2.0"})
    with pytest.raises(InputError, match="missing 'command'"):
        Report.from_dict({k: v for k, v in data.items() if k != "command"})
    with pytest.raises(InputError, match="'findings' must be a list"):
        Report.from_dict({**data, "findings": {}})
    with pytest.raises(InputError, match="invalid finding"):
        Report.from_dict({**data, "findings": [{**data["findings"][0], "confidence": 2}]})
    with pytest.raises(InputError, match="invalid report"):
        Report.from_dict({**data, "generated_at": "soon"})
    with pytest.raises(InputError, match="JSON object"):
        Report.from_dict([])  # type: ignore[arg-type]
    # A later minor version is still read.
    assert Report.from_dict({**data, "schema_version": "1.3"}).schema_version == "1.3"


# --- figures -------------------------------------------------------------------------


def test_figure_kinds_and_defaults() -> None:
    hist = Figure("histogram", "h", {"values": np.array([1.0, np.nan])})
    assert hist.data == {"values": [1.0, None], "bins": 30, "threshold": None}
    line = Figure("line", "l", {"series": [{"name": None, "x": [1], "y": [2]}]})
    assert line.data["series"][0]["name"] == ""
    bar = Figure.bar("b", [0, 1], np.array([2, 3]))
    assert bar.data["labels"] == ["0", "1"]
    assert Figure.from_dict(bar.to_dict()) == bar


@pytest.mark.parametrize(
    ("kind", "data", "match"),
    [
        ("pie", {}, "unknown figure kind"),
        ("bar", {"labels": ["a"], "values": [1, 2]}, "differ in length"),
        ("bar", {"labels": ["a"], "values": ["x"]}, "must hold numbers"),
        ("line", {"series": []}, "non-empty list"),
        ("line", {"series": [{"name": "s", "x": [1], "y": []}]}, "differ in length"),
        ("histogram", {"values": [1], "bins": 0}, "bins"),
        ("histogram", {"values": [1], "threshold": "high"}, "threshold"),
        ("scatter", {"x": [1], "y": [1], "color": [1, 2]}, "differ in length"),
        ("images", {"images": ["bm90IGEgcG5n"]}, "not a base64-encoded PNG"),
        ("images", {"images": ['x" onerror="alert(1)']}, "not a base64-encoded PNG"),
        ("table", {"columns": ["a", "b"], "rows": [[1]]}, "row 0"),
        ("bar", {"labels": ["a"], "values": [1], "xlabel": 3}, "xlabel"),
    ],
)
def test_invalid_figures_are_rejected(kind: str, data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Figure(kind, "t", data)  # type: ignore[arg-type]


def _decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_images_from_arrays_handles_layouts_and_dtypes() -> None:
    arrays = [
        np.random.default_rng(0).random((3, 5, 7)),  # CHW float in [0, 1]
        np.zeros((5, 7, 3), dtype=np.uint8),  # HWC uint8
        np.ones((5, 7), dtype=bool),  # HW bool
        np.arange(35, dtype=np.int64).reshape(5, 7) * 100,  # HW ints beyond 255
        np.zeros((1, 5, 7), dtype=np.float32),  # single-channel CHW
        np.zeros((5, 7, 4), dtype=np.uint8),  # RGBA
    ]
    fig = Figure.images_from_arrays("grid", arrays, [f"img {i}" for i in range(len(arrays))])
    assert fig.kind == "images"
    assert fig.data["captions"][0] == "img 0"
    images = [_decode(b) for b in fig.data["images"]]
    assert [im.size for im in images] == [(7, 5)] * len(arrays)
    assert [im.mode for im in images] == ["RGB", "RGB", "L", "L", "L", "RGBA"]
    assert np.asarray(images[2]).max() == 255
    assert np.asarray(images[3]).max() == 255  # min-max scaled


def test_images_from_arrays_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="channel axis"):
        Figure.images_from_arrays("x", [np.zeros((5, 6, 7))])
    with pytest.raises(ValueError, match="shape"):
        Figure.images_from_arrays("x", [np.zeros(5)])
    with pytest.raises(ValueError, match="empty"):
        Figure.images_from_arrays("x", [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="differ in length"):
        Figure.images_from_arrays("x", [np.zeros((4, 4))], captions=["a", "b"])
