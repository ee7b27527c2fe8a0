"""STIX 2.1 export: tripwire findings and gateway alerts as a threat-intelligence bundle.

Threat-intelligence platforms (OpenCTI, MISP, TAXII servers) exchange STIX 2.1
bundles. This module turns what tripwire writes into one:

- an ``identity`` for the producer (tripwire, or the organisation given);
- one ``attack-pattern`` per MITRE ATLAS technique, with an external reference
  (``source_name`` ``mitre-atlas``, ``external_id`` ``AML.Txxxx`` and its ATLAS URL);
- one ``indicator`` per finding (or per client and detector of the gateway alerts),
  whose STIX pattern names what to look for: the client's ``user-account``, the model
  file's SHA-256 (a report's ``inputs.model`` or a finding's ``model_sha256`` evidence),
  or the data file's name; tripwire's rule id, severity and evidence
  travel as ``x_tripwire_*`` custom properties;
- one ``sighting`` per report (or per alert): when and where the indicator was seen;
- ``relationship`` objects: indicator *indicates* attack-pattern, indicator
  *related-to* the data supplier's ``identity`` when a finding names a source.

Every id is a UUIDv5 of what the object *is* (the ATLAS id, the finding's fingerprint,
the alert's client and time) under a fixed namespace, and every timestamp comes from
the input, so exporting the same report twice gives byte-identical bundles and a
platform that ingests both keeps one copy of each object.

The shapes read are a tripwire :class:`~tripwire.reports.Report` in its JSON form and
the gateway's alert log ``{"alerts": [{"client", "detector", "severity", "atlas",
"query_count", "time", "evidence"}]}`` (also accepted as a report section).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tripwire.errors import InputError
from tripwire.reports.atlas import ATLAS_TECHNIQUES, atlas_label, is_atlas_id
from tripwire.reports.findings import Finding, Severity
from tripwire.reports.report import Report

__all__ = [
    "STIX_NAMESPACE",
    "bundle_from_alerts",
    "bundle_from_report",
    "check_bundle",
    "export_stix",
    "merge_bundles",
    "stix_id",
]

#: The namespace of every id tripwire mints; fixed forever so ids stay stable.
STIX_NAMESPACE = uuid.UUID("5b0d6f2e-7c1a-5e43-9a57-3f0b8f1e2d4c")
#: Creation time of objects that describe facts, not observations (ATLAS techniques,
#: the tool's identity), so that they are identical in every export.
_EPOCH = "2024-01-01T00:00:00.000Z"
#: Evidence larger than this (as JSON) is left out of the indicator.
MAX_EVIDENCE_BYTES = 4096
#: Most sample positions listed on one indicator.
MAX_SAMPLES = 1000
#: Largest input accepted.
MAX_INPUT_BYTES = 256 * 1024 * 1024

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ALERT_KEYS = ("client", "detector", "severity", "atlas", "query_count", "time", "evidence")


def stix_id(kind: str, *key: object) -> str:
    """A deterministic STIX id, ``kind--<uuid5 of the key>``.

    Parameters
    ----------
    kind
        The STIX object type (``"indicator"``).
    key
        JSON-serialisable values that identify the object.

    Returns
    -------
    str
        The id.
    """
    canonical = json.dumps([kind, *key], separators=(",", ":"), sort_keys=True, default=str)
    return f"{kind}--{uuid.uuid5(STIX_NAMESPACE, canonical)}"


def _timestamp(value: object, where: str) -> str:
    """RFC 3339 UTC with millisecond precision, as STIX requires for created/modified."""
    if isinstance(value, bool):
        raise InputError(f"{where}: a time must be ISO 8601 or epoch seconds, got {value!r}")
    if isinstance(value, int | float):
        stamp = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: not an ISO 8601 time: {value!r}") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
    else:
        raise InputError(f"{where}: a time must be ISO 8601 or epoch seconds, got {value!r}")
    stamp = stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identity(name: str = "tripwire", identity_class: str = "system") -> dict[str, Any]:
    """The producer's identity object."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": stix_id("identity", identity_class, name),
        "created": _EPOCH,
        "modified": _EPOCH,
        "name": name,
        "identity_class": identity_class,
    }


def attack_pattern(tid: str, created_by: str) -> dict[str, Any]:
    """The attack-pattern of a MITRE ATLAS technique, referenced to its ATLAS page."""
    name = atlas_label(tid) if tid in ATLAS_TECHNIQUES else f"MITRE ATLAS {tid}"
    return {
        "type": "attack-pattern",
        "spec_version": "2.1",
        "id": stix_id("attack-pattern", "mitre-atlas", tid),
        "created": _EPOCH,
        "modified": _EPOCH,
        "created_by_ref": created_by,
        "name": name,
        "external_references": [
            {
                "source_name": "mitre-atlas",
                "external_id": tid,
                "url": f"https://atlas.mitre.org/techniques/{tid}",
            }
        ],
    }


def _relationship(source: str, rel: str, target: str, created: str, by: str) -> dict[str, Any]:
    return {
        "type": "relationship",
        "spec_version": "2.1",
        "id": stix_id("relationship", source, rel, target),
        "created": created,
        "modified": created,
        "created_by_ref": by,
        "relationship_type": rel,
        "source_ref": source,
        "target_ref": target,
    }


def _sighting(
    indicator: str, seen: str, by: str, where: str, key: object, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "sighting",
        "spec_version": "2.1",
        "id": stix_id("sighting", indicator, key),
        "created": seen,
        "modified": seen,
        "created_by_ref": by,
        "sighting_of_ref": indicator,
        "where_sighted_refs": [where],
        "first_seen": seen,
        "last_seen": seen,
        "count": 1,
        **extra,
    }


def _compact(evidence: Mapping[str, Any]) -> dict[str, Any] | None:
    text = json.dumps(evidence, sort_keys=True, default=str)
    return dict(evidence) if len(text) <= MAX_EVIDENCE_BYTES else None


def _indicator_type(severity: Severity) -> str:
    return "malicious-activity" if severity.at_least("high") else "anomalous-activity"


def _finding_pattern(f: Finding, inputs: Mapping[str, Any]) -> str:
    if f.client:
        return f"[user-account:user_id = {_quote(f.client)}]"
    model_sha = f.evidence.get("model_sha256")
    if isinstance(model_sha, str) and _SHA256_RE.fullmatch(model_sha):
        # Findings about a model file name it by hash (forensics, registry lineage).
        return f"[file:hashes.'SHA-256' = {_quote(model_sha)}]"
    model = inputs.get("model")
    if (
        isinstance(model, Mapping)
        and isinstance(model.get("sha256"), str)
        and (f.artifact is None or f.artifact == model.get("path"))
    ):
        # A model's sha256 is the hash of its file (train writes it so).
        return f"[file:hashes.'SHA-256' = {_quote(model['sha256'])}]"
    if f.artifact:
        return f"[file:name = {_quote(Path(f.artifact).name)}]"
    return f"[x-tripwire-finding:rule_id = {_quote(f.rule_id)}]"


class _Builder:
    """Collects objects by id (so repeats collapse) in insertion order."""

    def __init__(self, producer: str) -> None:
        self.me = identity(producer, "system" if producer == "tripwire" else "organization")
        self.objects: dict[str, dict[str, Any]] = {self.me["id"]: self.me}

    def add(self, obj: dict[str, Any]) -> str:
        self.objects.setdefault(obj["id"], obj)
        return str(obj["id"])

    def indicates(self, indicator: str, atlas: Iterable[str], created: str) -> None:
        for tid in atlas:
            ap = self.add(attack_pattern(tid, self.me["id"]))
            self.add(_relationship(indicator, "indicates", ap, created, self.me["id"]))

    def bundle(self) -> dict[str, Any]:
        objects = list(self.objects.values())
        return {
            "type": "bundle",
            "id": stix_id("bundle", sorted(self.objects)),
            "objects": objects,
        }


def _add_report(b: _Builder, report: Report) -> None:
    seen = _timestamp(report.generated_at, "generated_at")
    for f in report.findings:
        indicator_id = stix_id("indicator", "tripwire-finding", f.fingerprint)
        ind: dict[str, Any] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": indicator_id,
            "created": seen,
            "modified": seen,
            "created_by_ref": b.me["id"],
            "name": f"{f.rule_id} {f.title}",
            "description": f.message,
            "indicator_types": [_indicator_type(f.severity)],
            "pattern": _finding_pattern(f, report.inputs),
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": seen,
            "confidence": round(f.confidence * 100),
            "labels": [f.severity.value, f"tripwire-{report.command}"],
            "x_tripwire_rule_id": f.rule_id,
            "x_tripwire_severity": f.severity.value,
            "x_tripwire_fingerprint": f.fingerprint,
        }
        if f.artifact:
            ind["x_tripwire_artifact"] = f.artifact
        if f.indices:
            ind["x_tripwire_samples"] = list(f.indices[:MAX_SAMPLES])
            ind["x_tripwire_sample_count"] = len(f.indices)
        if f.target_class is not None:
            ind["x_tripwire_target_class"] = f.target_class
        evidence = _compact(f.evidence)
        if evidence:
            ind["x_tripwire_evidence"] = evidence
        b.add(ind)
        b.indicates(indicator_id, f.atlas, seen)
        source = f.evidence.get("source")
        if isinstance(source, str) and source:
            supplier = b.add(
                {
                    **identity(source, "organization"),
                    "description": "data supplier named by a tripwire finding",
                }
            )
            b.add(_relationship(indicator_id, "related-to", supplier, seen, b.me["id"]))
        b.add(
            _sighting(
                indicator_id,
                seen,
                b.me["id"],
                b.me["id"],
                seen,
                x_tripwire_command=report.command,
            )
        )


def _check_alert(i: int, a: object) -> Mapping[str, Any]:
    where = f"alerts[{i}]"
    if not isinstance(a, Mapping):
        raise InputError(f"{where}: an alert must be an object")
    for key in ("client", "detector", "time"):
        if key not in a:
            raise InputError(f"{where}: missing '{key}' (an alert has {', '.join(_ALERT_KEYS)})")
    if not isinstance(a["client"], str) or not a["client"]:
        raise InputError(f"{where}.client: must be a non-empty string")
    if not isinstance(a["detector"], str) or not a["detector"]:
        raise InputError(f"{where}.detector: must be a non-empty string")
    atlas = a.get("atlas", [])
    if not isinstance(atlas, list) or not all(is_atlas_id(t) for t in atlas):
        raise InputError(f"{where}.atlas: must be a list of ATLAS ids such as AML.T0024.002")
    try:
        Severity.parse(a.get("severity", "high"))
    except (ValueError, AttributeError):
        raise InputError(f"{where}.severity: unknown severity {a.get('severity')!r}") from None
    qc = a.get("query_count")
    if qc is not None and (isinstance(qc, bool) or not isinstance(qc, int) or qc < 0):
        raise InputError(f"{where}.query_count: must be a non-negative integer")
    return a


def _add_alerts(b: _Builder, alerts: Sequence[object]) -> None:
    checked = [_check_alert(i, a) for i, a in enumerate(alerts)]
    groups: dict[tuple[str, str], list[tuple[str, Mapping[str, Any]]]] = {}
    for i, a in enumerate(checked):
        t = _timestamp(a["time"], f"alerts[{i}].time")
        groups.setdefault((a["client"], a["detector"]), []).append((t, a))
    for (client, detector), items in groups.items():
        items.sort(key=lambda x: x[0])
        first = items[0][0]
        worst = max((Severity.parse(a.get("severity", "high")) for _, a in items))
        atlas = list(dict.fromkeys(t for _, a in items for t in a.get("atlas", [])))
        indicator_id = stix_id("indicator", "tripwire-alert", client, detector)
        ind = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": indicator_id,
            "created": first,
            "modified": items[-1][0],
            "created_by_ref": b.me["id"],
            "name": f"{detector} alert on client {client}",
            "description": (
                f"tripwire guard raised {len(items)} '{detector}' alert(s) on client "
                f"{client} between {first} and {items[-1][0]}"
            ),
            "indicator_types": [_indicator_type(worst)],
            "pattern": f"[user-account:user_id = {_quote(client)}]",
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": first,
            "labels": [worst.value, "tripwire-guard"],
            "x_tripwire_detector": detector,
            "x_tripwire_severity": worst.value,
            "x_tripwire_client": client,
        }
        b.add(ind)
        b.indicates(indicator_id, atlas, first)
        for t, a in items:
            extra: dict[str, Any] = {"x_tripwire_detector": detector}
            if a.get("query_count") is not None:
                extra["x_tripwire_query_count"] = a["query_count"]
            evidence = a.get("evidence")
            if isinstance(evidence, Mapping):
                compact = _compact(evidence)
                if compact:
                    extra["x_tripwire_evidence"] = compact
            b.add(_sighting(indicator_id, t, b.me["id"], b.me["id"], t, **extra))


def bundle_from_report(report: Report, *, producer: str = "tripwire") -> dict[str, Any]:
    """A STIX 2.1 bundle of a report's findings (and of its ``alerts`` section, if any).

    Parameters
    ----------
    report
        Any tripwire report.
    producer
        The name of the producing identity; ``"tripwire"`` (a system) by default,
        anything else is taken for an organisation.

    Returns
    -------
    dict
        The bundle, JSON-ready.
    """
    b = _Builder(producer)
    _add_report(b, report)
    alerts = report.sections.get("alerts")
    if isinstance(alerts, list):
        _add_alerts(b, alerts)
    return b.bundle()


def bundle_from_alerts(
    alerts: Sequence[Mapping[str, Any]], *, producer: str = "tripwire"
) -> dict[str, Any]:
    """A STIX 2.1 bundle of gateway alerts: one indicator per client and detector, one
    sighting per alert.

    Raises
    ------
    InputError
        If an alert lacks ``client``, ``detector`` or ``time`` or has a bad value.
    """
    b = _Builder(producer)
    _add_alerts(b, alerts)
    return b.bundle()


def export_stix(doc: object, *, producer: str = "tripwire") -> dict[str, Any]:
    """Turn a parsed tripwire JSON document into a STIX bundle (the shape is detected).

    Raises
    ------
    InputError
        If the document is neither a tripwire report nor an alert log.
    """
    if isinstance(doc, Mapping) and "schema_version" in doc and "command" in doc:
        return bundle_from_report(Report.from_dict(doc), producer=producer)
    if isinstance(doc, Mapping) and isinstance(doc.get("alerts"), list):
        return bundle_from_alerts(doc["alerts"], producer=producer)
    raise InputError("is neither a tripwire report nor a gateway alert log ({'alerts': [...]})")


def merge_bundles(bundles: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One bundle of several, each object kept once (ids are deterministic)."""
    objects: dict[str, Any] = {}
    for bundle in bundles:
        for obj in bundle["objects"]:
            objects.setdefault(obj["id"], obj)
    return {
        "type": "bundle",
        "id": stix_id("bundle", sorted(objects)),
        "objects": list(objects.values()),
    }


def load_and_export(paths: Sequence[str | Path], *, producer: str = "tripwire") -> dict[str, Any]:
    """Read tripwire JSON files and export them as one STIX bundle.

    Raises
    ------
    InputError
        Naming the file that cannot be read or has the wrong shape.
    """
    bundles = []
    for path in paths:
        p = Path(path)
        try:
            if p.stat().st_size > MAX_INPUT_BYTES:
                raise InputError(f"is larger than {MAX_INPUT_BYTES} bytes", p)
            text = p.read_text(encoding="utf-8")
            if p.suffix == ".jsonl":
                # The gateway's alert log (``[alerts] log``): one alert per line.
                doc: object = {
                    "alerts": [json.loads(line) for line in text.splitlines() if line.strip()]
                }
            else:
                doc = json.loads(text)
        except FileNotFoundError:
            raise InputError("no such file", p) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"not a JSON file ({exc})", p) from None
        try:
            bundles.append(export_stix(doc, producer=producer))
        except InputError as exc:
            raise InputError(exc.message, p) from None
    bundle = merge_bundles(bundles)
    problems = check_bundle(bundle)
    if problems:  # a bug, not bad input: the builder must only make valid objects
        raise RuntimeError(f"invalid STIX produced: {problems[0]}")
    return bundle


# --- structural check against the STIX 2.1 specification ---------------------------

_COMMON = ("type", "spec_version", "id", "created", "modified")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "identity": ("name",),
    "attack-pattern": ("name",),
    "indicator": ("pattern", "pattern_type", "valid_from"),
    "relationship": ("relationship_type", "source_ref", "target_ref"),
    "sighting": ("sighting_of_ref",),
}


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def check_bundle(bundle: Mapping[str, Any]) -> list[str]:
    """Check a bundle against the required properties of STIX 2.1 (the objects made here).

    Covers: bundle shape, the common properties of every SDO/SRO, the required
    properties of each type, id form (``type--UUID``), timestamps, references
    that resolve inside the bundle, ``modified >= created``, sighting counts and
    ATLAS external references.

    Returns
    -------
    list of str
        One line per problem; empty when the bundle is valid.
    """
    problems: list[str] = []
    if bundle.get("type") != "bundle" or not str(bundle.get("id", "")).startswith("bundle--"):
        problems.append("not a bundle")
    objects = bundle.get("objects")
    if not isinstance(objects, list) or not objects:
        return [*problems, "bundle has no objects"]
    ids = {o.get("id") for o in objects if isinstance(o, Mapping)}
    for o in objects:
        kind = o.get("type")
        oid = str(o.get("id"))
        missing = [k for k in (*_COMMON, *_REQUIRED.get(str(kind), ())) if k not in o]
        if missing:
            problems.append(f"{oid}: missing {', '.join(missing)}")
            continue
        if o["spec_version"] != "2.1":
            problems.append(f"{oid}: spec_version must be 2.1")
        prefix, _, rest = oid.partition("--")
        try:
            uuid.UUID(rest)
        except ValueError:
            problems.append(f"{oid}: id is not type--UUID")
        if prefix != kind:
            problems.append(f"{oid}: id prefix differs from type {kind}")
        for key in ("created", "modified", "valid_from", "first_seen", "last_seen"):
            if key in o and not _is_timestamp(o[key]):
                problems.append(f"{oid}: {key} is not an RFC 3339 UTC timestamp")
        if o["modified"] < o["created"]:
            problems.append(f"{oid}: modified is before created")
        refs = [o.get("created_by_ref"), o.get("source_ref"), o.get("target_ref")]
        refs += [o.get("sighting_of_ref"), *o.get("where_sighted_refs", [])]
        for ref in refs:
            if ref is not None and ref not in ids:
                problems.append(f"{oid}: reference {ref} is not in the bundle")
        if kind == "sighting" and not 0 <= int(o.get("count", 0)) <= 999_999_999:
            problems.append(f"{oid}: count out of range")
        if "confidence" in o and not 0 <= int(o["confidence"]) <= 100:
            problems.append(f"{oid}: confidence out of range")
        for ref in o.get("external_references", []):
            if "source_name" not in ref:
                problems.append(f"{oid}: external reference without source_name")
            elif ref["source_name"] == "mitre-atlas" and not is_atlas_id(ref.get("external_id")):
                problems.append(f"{oid}: mitre-atlas reference without an AML.T id")
    return problems
