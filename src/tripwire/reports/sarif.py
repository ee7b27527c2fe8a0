"""Render a report as a SARIF 2.1.0 log, for GitHub code scanning and other SARIF viewers.

Each finding becomes one result. The file a finding is about becomes the
result's physical location; the class, client and sample positions become
logical locations, so that viewers can show them without knowing tripwire.
``partialFingerprints`` carries :attr:`Finding.fingerprint`, which lets code
scanning recognise the same alert from one run to the next.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from tripwire.reports.findings import RULES, Finding, Rule, Severity, rule_category
from tripwire.reports.report import Report

__all__ = [
    "FINGERPRINT_KEY",
    "SARIF_SCHEMA_URI",
    "SARIF_VERSION",
    "TRIPWIRE_INFORMATION_URI",
    "render_sarif",
    "sarif_level",
]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
#: Where SARIF viewers send people who ask what tripwire is.
TRIPWIRE_INFORMATION_URI = "https://pypi.org/project/tripwire-ml/"
#: Key of tripwire's fingerprint in ``result.partialFingerprints``; bump the
#: version suffix if :attr:`Finding.fingerprint` ever changes its inputs.
FINGERPRINT_KEY = "tripwireFingerprint/v1"

#: Sample positions listed as logical locations; the rest are only counted.
MAX_LOGICAL_INDICES = 100
#: Evidence larger than this (as compact JSON) is replaced by a note.
MAX_EVIDENCE_CHARS = 65_536

_LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

# GitHub code scanning reads "security-severity" (0-10) to rank security alerts.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
}

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]")


def sarif_level(severity: Severity | str) -> str:
    """Map a severity to a SARIF level: critical/high -> error, medium -> warning, else note."""
    return _LEVELS[Severity.parse(severity)]


def _artifact_uri(artifact: str, base_dir: Path | None) -> str:
    if _SCHEME_RE.match(artifact):
        return artifact  # already a URI (s3://, hf://, https://)
    if _DRIVE_RE.match(artifact) or "\\" in artifact:
        path = PurePosixPath(PureWindowsPath(artifact).as_posix())
    else:
        path = PurePosixPath(artifact)
    if base_dir is not None and path.is_absolute():
        # Outside the base, keep the path absolute rather than guess.
        with contextlib.suppress(ValueError):
            path = PurePosixPath(Path(str(path)).relative_to(base_dir).as_posix())
    text = path.as_posix()
    if _DRIVE_RE.match(text):
        text = "/" + text  # "C:/x" would read as a URI with scheme "C"
    elif not text.startswith("/") and ":" in text.split("/", 1)[0]:
        text = "./" + text  # likewise "a:b/c"; "./" keeps it a relative path
    return quote(text, safe="/:@!$&'()*+,;=-._~")


def _tags(rule_id: str) -> list[str]:
    tags = ["security", "machine-learning"]
    category = rule_category(rule_id)
    if category is not None:
        tags.append(category)
    return tags


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    properties: dict[str, Any] = {"atlas": list(rule.atlas), "tags": _tags(rule.id)}
    if rule.default_severity in _SECURITY_SEVERITY:
        properties["security-severity"] = _SECURITY_SEVERITY[rule.default_severity]
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.short_description},
        "fullDescription": {"text": rule.help},
        "help": {"text": rule.help},
        "defaultConfiguration": {"level": sarif_level(rule.default_severity)},
        "properties": properties,
    }


def _minimal_descriptor(rule_id: str, findings: list[Finding]) -> dict[str, Any]:
    # A rule nobody registered: describe it from its findings so the log stays valid.
    atlas = list(dict.fromkeys(t for f in findings for t in f.atlas))
    return {
        "id": rule_id,
        "shortDescription": {"text": findings[0].title},
        "properties": {"atlas": atlas, "tags": _tags(rule_id)},
    }


def _evidence(evidence: dict[str, Any]) -> Any:
    size = len(json.dumps(evidence, separators=(",", ":"), ensure_ascii=False))
    if size <= MAX_EVIDENCE_CHARS:
        return evidence
    return {"omitted": True, "reason": "too large for SARIF; see the JSON report", "chars": size}


def _logical_locations(f: Finding) -> list[dict[str, Any]]:
    logical: list[dict[str, Any]] = []
    if f.target_class is not None:
        logical.append(
            {
                "name": str(f.target_class),
                "fullyQualifiedName": f"class/{f.target_class}",
                "kind": "value",
            }
        )
    if f.client is not None:
        logical.append(
            {"name": f.client, "fullyQualifiedName": f"client/{f.client}", "kind": "resource"}
        )
    for i in f.indices[:MAX_LOGICAL_INDICES]:
        logical.append({"name": str(i), "fullyQualifiedName": f"sample/{i}", "kind": "element"})
    return logical


def _result(f: Finding, rule_index: int, base_dir: Path | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "title": f.title,
        "severity": f.severity.value,
        "confidence": f.confidence,
        "atlas": list(f.atlas),
        "evidence": _evidence(f.evidence),
    }
    if f.target_class is not None:
        properties["targetClass"] = f.target_class
    if f.client is not None:
        properties["client"] = f.client
    if f.indices:
        properties["sampleCount"] = len(f.indices)
        omitted = len(f.indices) - MAX_LOGICAL_INDICES
        if omitted > 0:
            properties["samplesNotListed"] = omitted

    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": sarif_level(f.severity),
        "message": {"text": f.message},
    }
    if f.artifact is not None:
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": {"uri": _artifact_uri(f.artifact, base_dir)}}
        }
        logical = _logical_locations(f)
        if logical:
            location["logicalLocations"] = logical
        result["locations"] = [location]
    result["partialFingerprints"] = {FINGERPRINT_KEY: f.fingerprint}
    result["properties"] = properties
    return result


def render_sarif(report: Report, *, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Render a report as a SARIF 2.1.0 log.

    Parameters
    ----------
    report
        The report.
    base_dir
        If given, absolute artifact paths under this directory are written
        relative to it (GitHub resolves locations against the repository root).
        Relative paths are always written as given.

    Returns
    -------
    dict
        The SARIF log as plain JSON types: one run whose driver lists the rules
        the findings use (registered metadata, or a minimal entry for unknown
        ids), and one result per finding.
    """
    base = None if base_dir is None else Path(base_dir).absolute()
    by_rule: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_rule.setdefault(f.rule_id, []).append(f)
    rule_ids = sorted(by_rule)
    rules = [
        _rule_descriptor(RULES[rid]) if rid in RULES else _minimal_descriptor(rid, by_rule[rid])
        for rid in rule_ids
    ]
    index = {rid: i for i, rid in enumerate(rule_ids)}
    results = [_result(f, index[f.rule_id], base) for f in report.findings]

    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tripwire",
                        "version": str(report.tool["version"]),
                        "informationUri": TRIPWIRE_INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "invocations": [{"executionSuccessful": True, "endTimeUtc": report.generated_at}],
                "results": results,
                "properties": {
                    "command": report.command,
                    "reportSchemaVersion": report.schema_version,
                    "summary": report.summary,
                },
            }
        ],
    }
