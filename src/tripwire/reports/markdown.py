"""Render a report as GitHub-flavoured Markdown (job summaries, pull-request comments).

Text from findings is escaped for both Markdown and HTML, since GitHub renders
inline HTML in Markdown and findings quote attacker-controlled strings.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tripwire.reports._format import counts_text, format_value, location_parts
from tripwire.reports.atlas import atlas_url
from tripwire.reports.findings import Finding
from tripwire.reports.report import Report

__all__ = ["render_markdown"]

#: Rows shown for tabular sections before truncating.
MAX_TABLE_ROWS = 50
#: Characters of a JSON section shown before truncating.
MAX_JSON_CHARS = 5_000

_FIGURE_NOUNS = {
    "bar": "bar chart",
    "line": "line chart",
    "histogram": "histogram",
    "scatter": "scatter plot",
    "images": "image grid",
}

# Characters that change Markdown rendering inside a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _md(value: object) -> str:
    text = html.escape(str(value), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _table(columns: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = [
        "| " + " | ".join(_md(c) for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _kv(items: Mapping[str, Any], key_name: str) -> list[str]:
    return _table((key_name, "Value"), ((_md(k), _md(format_value(v))) for k, v in items.items()))


def _finding_row(n: int, f: Finding) -> list[str]:
    rule = f.rule
    rule_cell = f"`{f.rule_id}`" + (f" {_md(rule.name)}" if rule is not None else "")
    atlas = ", ".join(f"[{t}]({atlas_url(t)})" for t in f.atlas) or "-"
    location = "<br>".join(
        _md(p) for p in location_parts(f.artifact, f.target_class, f.client, f.indices)
    )
    return [
        str(n),
        f"**{f.severity.value}**",
        rule_cell,
        atlas,
        f"**{_md(f.title)}**: {_md(f.message)}",
        location or "-",
        f"{f.confidence:.2f}",
    ]


def _fence(text: str, info: str = "") -> list[str]:
    # A fence longer than any backtick run inside cannot be closed by the content.
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]


def _is_record_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) for v in value)
        and all(not isinstance(x, dict | list) for v in value for x in v.values())
    )


def _section(name: str, value: Any) -> list[str]:
    lines = [f"## {_md(name)}", ""]
    if _is_record_list(value):
        columns = list(dict.fromkeys(k for row in value for k in row))
        rows = ([_md(format_value(row.get(c))) for c in columns] for row in value[:MAX_TABLE_ROWS])
        lines += _table(columns, rows)
        if len(value) > MAX_TABLE_ROWS:
            lines += ["", f"*Showing {MAX_TABLE_ROWS} of {len(value)} rows.*"]
    elif isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        lines += _kv(value, "Key")
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        if len(text) > MAX_JSON_CHARS:
            text = text[:MAX_JSON_CHARS] + "\n..."
            lines += ["*Truncated; the JSON report holds the full data.*", ""]
        lines += _fence(text, "json")
    return [*lines, ""]


def render_markdown(report: Report) -> str:
    """Render a report as Markdown.

    Parameters
    ----------
    report
        The report.

    Returns
    -------
    str
        A Markdown document: title, summary (with inputs), findings table
        (severity, rule, ATLAS links, message, location, confidence), metrics,
        figure list (tables inline; plots only named, as Markdown cannot embed
        them portably) and extra sections.
    """
    tool = report.tool
    counts = report.severity_counts()
    worst = report.max_severity()
    lines = [
        f"# tripwire {_md(report.command)} report",
        "",
        f"Generated {_md(report.generated_at)} by {_md(tool['name'])} {_md(tool['version'])}"
        f" · report schema {_md(report.schema_version)}",
        "",
        "## Summary",
        "",
        (
            f"**Highest severity: {worst.value}** ({counts_text(counts)})"
            if worst is not None
            else "**No findings.**"
        ),
        "",
    ]
    if report.summary:
        lines += [*_kv(report.summary, "Item"), ""]
    if report.inputs:
        input_rows = [
            (_md(role), _md("; ".join(f"{k}: {format_value(v)}" for k, v in d.items())))
            for role, d in report.inputs.items()
        ]
        lines += ["### Inputs", "", *_table(("Input", "Details"), input_rows), ""]

    lines += ["## Findings", ""]
    if report.findings:
        columns = ("#", "Severity", "Rule", "ATLAS", "Finding", "Location", "Confidence")
        rows = [_finding_row(n, f) for n, f in enumerate(report.sorted_findings(), start=1)]
        lines += [*_table(columns, rows), ""]
    else:
        lines += ["No findings.", ""]

    if report.metrics:
        lines += ["## Metrics", "", *_kv(report.metrics, "Metric"), ""]

    if report.figures:
        lines += ["## Figures", ""]
        for fig in report.figures:
            if fig.kind == "table":
                rows_data = fig.data["rows"]
                cells = ([_md(format_value(c)) for c in r] for r in rows_data[:MAX_TABLE_ROWS])
                lines += ["", f"**{_md(fig.title)}**", "", *_table(fig.data["columns"], cells), ""]
            else:
                noun = _FIGURE_NOUNS[fig.kind]
                lines += [f"- **{_md(fig.title)}** ({noun}; see the HTML report)"]
        lines.append("")

    for name, value in report.sections.items():
        lines += _section(name, value)
    return "\n".join(lines).rstrip("\n") + "\n"
