"""The reports layer: one typed result model, rendered as JSON, Markdown, HTML and SARIF.

Build a :class:`Report` of :class:`Finding` objects (each citing a registered
:class:`Rule` and MITRE ATLAS techniques), then render it with
:func:`render_json`, :func:`render_markdown`, :func:`render_html` or
:func:`render_sarif`, or write several formats at once with
:func:`write_reports`. :func:`exit_code_for` turns findings into the process
exit code for ``--fail-on``.
"""

from tripwire.reports.atlas import (
    ATLAS_TECHNIQUES,
    ATLAS_VERSION,
    atlas_label,
    atlas_name,
    atlas_url,
    is_atlas_id,
    validate_atlas_ids,
)
from tripwire.reports.exitcodes import exit_code_for
from tripwire.reports.findings import (
    RULES,
    Finding,
    Rule,
    Severity,
    get_rule,
    register_rule,
    rule_category,
    sort_findings,
)
from tripwire.reports.images import array_to_png_base64
from tripwire.reports.jsonutil import JSONValue, dumps_strict, to_json_object, to_jsonable
from tripwire.reports.render import (
    render_html,
    render_json,
    render_markdown,
    render_sarif,
    render_sarif_json,
    write_reports,
    write_text_atomic,
)
from tripwire.reports.report import (
    FIGURE_KINDS,
    RESERVED_KEYS,
    SCHEMA_VERSION,
    Figure,
    FigureKind,
    Report,
)
from tripwire.reports.sarif import sarif_level

__all__ = [
    "ATLAS_TECHNIQUES",
    "ATLAS_VERSION",
    "FIGURE_KINDS",
    "RESERVED_KEYS",
    "RULES",
    "SCHEMA_VERSION",
    "Figure",
    "FigureKind",
    "Finding",
    "JSONValue",
    "Report",
    "Rule",
    "Severity",
    "array_to_png_base64",
    "atlas_label",
    "atlas_name",
    "atlas_url",
    "dumps_strict",
    "exit_code_for",
    "get_rule",
    "is_atlas_id",
    "register_rule",
    "render_html",
    "render_json",
    "render_markdown",
    "render_sarif",
    "render_sarif_json",
    "rule_category",
    "sarif_level",
    "sort_findings",
    "to_json_object",
    "to_jsonable",
    "validate_atlas_ids",
    "write_reports",
    "write_text_atomic",
]
