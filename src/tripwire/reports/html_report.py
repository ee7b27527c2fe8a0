"""Render a report as one self-contained HTML page.

The page loads nothing: styles are inline, figures are ``data:`` PNGs, and a
Content-Security-Policy forbids scripts and remote resources, so that it can be
attached to a ticket or opened from a CI artefact safely. Every piece of text
goes through :func:`html.escape`, because findings quote attacker-controlled
strings (client ids, file names, labels).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tripwire.reports._format import counts_text, format_value, location_parts
from tripwire.reports.atlas import atlas_label, atlas_url
from tripwire.reports.findings import Finding, Severity
from tripwire.reports.plots import PLOTTED_KINDS, figure_to_png_base64
from tripwire.reports.report import Figure, Report

__all__ = ["render_html"]

#: Rows shown for tabular data (sections, figure fallbacks) before truncating.
MAX_TABLE_ROWS = 200
#: Characters of a JSON section shown before truncating.
MAX_JSON_CHARS = 100_000

_SEVERITY_COLOURS = {
    Severity.CRITICAL: "#6a1b9a",
    Severity.HIGH: "#c62828",
    Severity.MEDIUM: "#ef6c00",
    Severity.LOW: "#f9a825",
    Severity.INFO: "#1565c0",
}

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; margin: 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .35rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
table.kv { width: auto; min-width: 40%; }
table.kv th { width: 16rem; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
            font-size: 12px; }
pre { background: #f6f8fa; padding: .75rem; overflow: auto; max-height: 32rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1rem;
         color: #fff; font-weight: 600; font-size: 12px; text-transform: uppercase; }
.verdict { padding: .75rem 1rem; border-radius: .4rem; color: #fff; font-weight: 600;
           margin: .5rem 0; }
.verdict.none { background: #2e7d32; }
.counts { list-style: none; padding: 0; display: flex; gap: .5rem; flex-wrap: wrap; }
.finding-title { font-weight: 600; }
details summary { cursor: pointer; color: #0969da; }
figure { margin: 1rem 0; }
figcaption { font-weight: 600; margin-bottom: .25rem; }
.plot { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.grid { display: flex; flex-wrap: wrap; gap: .75rem; }
.grid div { text-align: center; font-size: 12px; max-width: 10rem; word-wrap: break-word; }
.grid img { width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
            border: 1px solid #d0d7de; display: block; margin: 0 auto .25rem; }
.note { color: #57606a; font-style: italic; }
footer { margin-top: 2rem; color: #57606a; font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(severity: Severity) -> str:
    colour = _SEVERITY_COLOURS[severity]
    return f'<span class="badge" style="background:{colour}">{_e(severity.value)}</span>'


def _kv_table(items: Mapping[str, Any]) -> str:
    if not items:
        return '<p class="note">None.</p>'
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(format_value(v, 500))}</td></tr>" for k, v in items.items()
    )
    return f'<table class="kv">{rows}</table>'


def _table(columns: Sequence[object], rows: Iterable[Sequence[object]], total: int) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(format_value(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    note = ""
    if total > MAX_TABLE_ROWS:
        note = f'<p class="note">Showing {MAX_TABLE_ROWS} of {total} rows.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _atlas_links(ids: Sequence[str]) -> str:
    if not ids:
        return "-"
    return "<br>".join(
        f'<a href="{_e(atlas_url(t))}" title="{_e(atlas_label(t))}">{_e(t)}</a>' for t in ids
    )


def _finding_row(finding: Finding) -> str:
    rule = finding.rule
    rule_cell = f"<code>{_e(finding.rule_id)}</code>"
    if rule is not None:
        rule_cell += f"<br>{_e(rule.name)}"
    detail = f'<div class="finding-title">{_e(finding.title)}</div><div>{_e(finding.message)}</div>'
    if finding.evidence:
        evidence = json.dumps(finding.evidence, indent=2, ensure_ascii=False, allow_nan=False)
        detail += f"<details><summary>evidence</summary><pre>{_e(evidence)}</pre></details>"
    parts = location_parts(finding.artifact, finding.target_class, finding.client, finding.indices)
    location = "<br>".join(_e(p) for p in parts) or "-"
    return (
        f"<tr><td>{_badge(finding.severity)}</td><td>{rule_cell}</td><td>{detail}</td>"
        f"<td>{_atlas_links(finding.atlas)}</td><td>{location}</td>"
        f"<td>{finding.confidence:.2f}</td></tr>"
    )


def _findings_section(report: Report) -> str:
    findings = report.sorted_findings()
    if not findings:
        return '<p class="note">No findings.</p>'
    head = "".join(
        f"<th>{h}</th>" for h in ("Severity", "Rule", "Finding", "ATLAS", "Location", "Confidence")
    )
    rows = "".join(_finding_row(f) for f in findings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _summary_section(report: Report) -> str:
    worst = report.max_severity()
    counts = report.severity_counts()
    if worst is None:
        verdict = '<div class="verdict none">No findings.</div>'
    else:
        colour = _SEVERITY_COLOURS[worst]
        verdict = (
            f'<div class="verdict" style="background:{colour}">Highest severity: '
            f"{_e(worst.value)} &middot; {_e(counts_text(counts))}</div>"
        )
    chips = "".join(f"<li>{_badge(Severity(sev))} {n}</li>" for sev, n in counts.items() if n)
    out = verdict + (f'<ul class="counts">{chips}</ul>' if chips else "")
    out += _kv_table(report.summary)
    if report.inputs:
        rows = [
            (role, "; ".join(f"{k}: {format_value(v)}" for k, v in details.items()))
            for role, details in report.inputs.items()
        ]
        out += "<h3>Inputs</h3>" + _table(("Input", "Details"), rows, len(rows))
    return out


def _histogram_rows(data: Mapping[str, Any]) -> list[tuple[float, float, int]]:
    values = np.array([v for v in data["values"] if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    counts, edges = np.histogram(values, bins=int(data["bins"]))
    return [(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


def _fallback_table(figure: Figure) -> str:
    """The figure's data as a table, for when matplotlib is not installed."""
    data = figure.data
    rows: list[Sequence[object]]
    if figure.kind == "bar":
        columns: Sequence[object] = ("label", "value")
        rows = list(zip(data["labels"], data["values"], strict=True))
    elif figure.kind == "line":
        columns = ("series", data.get("xlabel") or "x", data.get("ylabel") or "y")
        rows = [
            (s["name"], x, y) for s in data["series"] for x, y in zip(s["x"], s["y"], strict=True)
        ]
    elif figure.kind == "histogram":
        columns = ("from", "to", "count")
        rows = list(_histogram_rows(data))
    else:
        columns = ("x", "y", "color") if data.get("color") is not None else ("x", "y")
        series = [data["x"], data["y"]] + ([data["color"]] if len(columns) == 3 else [])
        rows = list(zip(*series, strict=True))
    out = _table(columns, rows[:MAX_TABLE_ROWS], len(rows))
    threshold = data.get("threshold")
    if figure.kind == "histogram" and threshold is not None and math.isfinite(threshold):
        out += f'<p class="note">Threshold: {_e(format_value(float(threshold)))}</p>'
    return out + (
        '<p class="note">Shown as a table: matplotlib is not installed '
        "(pip install 'tripwire-ml[report]') or could not draw this figure.</p>"
    )


def _figure_html(figure: Figure) -> str:
    caption = f"<figcaption>{_e(figure.title)}</figcaption>"
    data = figure.data
    if figure.kind in PLOTTED_KINDS:
        try:
            png = figure_to_png_base64(figure)
        except (ValueError, RuntimeError, OverflowError):
            # One figure matplotlib cannot draw should not cost the whole report.
            png = None
        if png is None:
            body = _fallback_table(figure)
        else:
            body = f'<img class="plot" alt="{_e(figure.title)}" src="data:image/png;base64,{png}">'
    elif figure.kind == "images":
        cells = "".join(
            f'<div><img alt="{_e(cap)}" src="data:image/png;base64,{_e(img)}">{_e(cap)}</div>'
            for img, cap in zip(data["images"], data["captions"], strict=True)
        )
        body = f'<div class="grid">{cells}</div>'
    else:
        rows = data["rows"]
        body = _table(data["columns"], rows[:MAX_TABLE_ROWS], len(rows))
    return f"<figure>{caption}{body}</figure>"


def _is_record_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) for v in value)
        and all(not isinstance(x, dict | list) for v in value for x in v.values())
    )


def _section_html(name: str, value: Any) -> str:
    title = f"<h2>{_e(name)}</h2>"
    if _is_record_list(value):
        columns = list(dict.fromkeys(k for row in value for k in row))
        rows = [[row.get(c) for c in columns] for row in value[:MAX_TABLE_ROWS]]
        return title + _table(columns, rows, len(value))
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return title + _kv_table(value)
    text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    note = ""
    if len(text) > MAX_JSON_CHARS:
        note = f'<p class="note">Truncated; the JSON report holds all {len(text)} characters.</p>'
        text = text[:MAX_JSON_CHARS]
    return f"{title}<details open><summary>data</summary><pre>{_e(text)}</pre></details>{note}"


def render_html(report: Report) -> str:
    """Render a report as one self-contained HTML page.

    Parameters
    ----------
    report
        The report.

    Returns
    -------
    str
        A complete HTML5 document with inline CSS and ``data:`` images only.
        Plotted figures fall back to tables of their data when matplotlib is
        not installed.
    """
    tool = report.tool
    title = f"tripwire {report.command} report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Generated {_e(report.generated_at)} by {_e(tool["name"])} '
        f"{_e(tool['version'])} &middot; report schema {_e(report.schema_version)}</p></header>",
        f'<section id="summary"><h2>Summary</h2>{_summary_section(report)}</section>',
        f'<section id="findings"><h2>Findings ({len(report.findings)})</h2>',
        _findings_section(report),
        "</section>",
    ]
    if report.metrics:
        parts.append(f'<section id="metrics"><h2>Metrics</h2>{_kv_table(report.metrics)}</section>')
    if report.figures:
        figures = "".join(_figure_html(f) for f in report.figures)
        parts.append(f'<section id="figures"><h2>Figures</h2>{figures}</section>')
    for name, value in report.sections.items():
        parts.append(f'<section class="extra">{_section_html(name, value)}</section>')
    parts.append(
        "<footer>Technique ids refer to MITRE ATLAS. This page is self-contained and "
        "loads no external resources.</footer></body></html>"
    )
    return "\n".join(parts) + "\n"
