"""Data forensics: which samples and which source introduced a poison, and which model
versions were trained on them.

Inputs are what the other layers already wrote:

- a ``scan-data`` report: the flagged positions, per-sample scores, per-source
  enrichment and its findings (TW101 poisoned samples, TW103 suspicious source, TW104
  backdoor target class), and the content hash of the data it scanned;
- the dataset manifest of that data (``tripwire manifest``): sample id, content hash,
  label and supplier of every position, so that a flagged position becomes a named
  sample from a named source;
- the model registry: each version's dataset hash and its stored manifest.

A version is *affected* when it was trained on the scanned data (same dataset hash)
or when its own manifest contains any flagged sample's content hash (a model trained
on a superset or a later delivery that still carries the poison). An alias that
serves an affected version is the first thing to contain (``tripwire registry
rollback``).

Findings (rule block TW15x: incident attribution of training-data poisoning):

- TW150 ``poison-source-attributed``: a source supplies the flagged samples;
- TW151 ``model-trained-on-flagged-data``: a registered version contains them
  (the samples of the implicated sources when any is implicated, else every flag);
- TW152 ``served-model-affected``: an alias serves such a version.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import InputError
from tripwire.reports import Figure, Finding, Report, Rule, Severity, register_rule

__all__ = [
    "RULE_ATTRIBUTED",
    "RULE_SERVED",
    "RULE_TRAINED",
    "DataForensics",
    "data_forensics",
    "load_scan_report",
]

RULE_ATTRIBUTED = register_rule(
    Rule(
        id="TW150",
        name="poison-source-attributed",
        short_description="The flagged training samples trace back to one supplier",
        help=(
            "Quarantine the supplier's deliveries, verify them against their manifests "
            "(tripwire verify), clean the data (tripwire clean) and retrain."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0020", "AML.T0010.002"),
    )
)
RULE_TRAINED = register_rule(
    Rule(
        id="TW151",
        name="model-trained-on-flagged-data",
        short_description="A registered model version was trained on flagged samples",
        help=(
            "Scan the version (tripwire scan-model), attach the report (tripwire registry "
            "attach) so that it cannot be promoted, and retrain on cleaned data."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0020", "AML.T0018.000"),
    )
)
RULE_SERVED = register_rule(
    Rule(
        id="TW152",
        name="served-model-affected",
        short_description="A serving alias points at a model trained on flagged samples",
        help="Contain first: tripwire registry rollback --alias NAME.",
        default_severity=Severity.CRITICAL,
        atlas=("AML.T0020", "AML.T0018.000", "AML.T0031"),
    )
)

#: Most flagged samples listed in the HTML table (the JSON keeps them all).
MAX_TABLE_ROWS = 200
MAX_REPORT_BYTES = 256 * 1024 * 1024


@dataclass
class DataForensics:
    """The result of :func:`data_forensics`; JSON-ready through :meth:`to_dict`."""

    dataset_sha256: str
    samples: int
    manifest: str
    flagged: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    implicated_sources: list[str]
    target_class: int | None
    versions: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def affected(self) -> list[dict[str, Any]]:
        """Versions trained on at least one attributed (poison) sample."""
        return [v for v in self.versions if v["attributed_samples"] > 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_sha256": self.dataset_sha256,
            "samples": self.samples,
            "manifest": self.manifest,
            "flagged_samples": self.flagged,
            "sources": self.sources,
            "implicated_sources": self.implicated_sources,
            "target_class": self.target_class,
            "versions": self.versions,
            "timeline": self.timeline,
            "notes": self.notes,
        }


def load_scan_report(path: str | Path) -> Report:
    """Read a ``scan-data`` JSON report.

    Raises
    ------
    InputError
        Naming the file: unreadable, not a report, or not a scan-data report.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_REPORT_BYTES:
            raise InputError(f"is larger than {MAX_REPORT_BYTES} bytes", p)
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such report file", p) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a JSON report ({exc})", p) from None
    try:
        rep = Report.from_dict(doc)
    except InputError as exc:
        raise InputError(exc.message, p) from None
    flagged = rep.sections.get("flagged")
    sha = rep.inputs.get("data", {}).get("sha256")
    if (
        rep.command != "scan-data"
        or not isinstance(flagged, list)
        or not isinstance(rep.sections.get("scores"), list)
    ):
        raise InputError("is not a scan-data report (no 'flagged'/'scores')", p)
    if not isinstance(sha, str):
        raise InputError("records no content hash of the scanned data (inputs.data.sha256)", p)
    return rep


def _pick_manifest(sha: str, manifests: Sequence[Path], report_path: str) -> tuple[Path, Any]:
    from tripwire.ingest import read_manifest

    seen = []
    for m in manifests:
        man = read_manifest(m)
        if man.dataset.sha256 == sha:
            return m, man
        seen.append(f"{m.name} ({man.dataset.sha256[:12]})")
    detail = f"; given: {', '.join(seen)}" if seen else ""
    raise InputError(
        f"no manifest describes the scanned data (sha256 {sha[:12]}): make one with "
        f"tripwire manifest and pass --manifest{detail}",
        report_path,
    )


def _source_rows(entries: Sequence[Any], flags: np.ndarray) -> list[dict[str, Any]]:
    from tripwire.scan.data import source_enrichment

    # The manifest's suppliers are authoritative (the data file may lack a source field).
    rows = source_enrichment(np.array([e.source for e in entries]), flags)
    n_sources = len(rows)
    for r in rows:
        r["p_value_bonferroni"] = min(1.0, r["p_value"] * n_sources)
    return sorted(rows, key=lambda r: (r["p_value"], -r["flagged"]))


def data_forensics(
    report: Report,
    *,
    report_path: str = "",
    manifests: Sequence[str | Path] = (),
    registry: Any = None,
) -> DataForensics:
    """Trace a scan-data report's flagged samples to their source and to model versions.

    Parameters
    ----------
    report
        A ``scan-data`` report (see :func:`load_scan_report`).
    report_path
        Its path, for messages and the report's inputs.
    manifests
        Candidate manifests; the one describing the scanned data is used. The
        registry's stored manifests are candidates too.
    registry
        A :class:`~tripwire.response.registry.Registry`, or None to skip lineage.

    Returns
    -------
    DataForensics
        Samples, sources, affected versions, timeline and findings.

    Raises
    ------
    InputError
        No manifest describes the scanned data, or it does not cover the report.
    """
    from tripwire.ingest import read_manifest

    sha = str(report.inputs["data"]["sha256"])
    versions = registry.versions() if registry is not None else []
    candidates = [Path(m) for m in manifests]
    candidates += [
        registry.store / v.manifest_file
        for v in versions
        if v.manifest_file and v.dataset_sha256 == sha
    ]
    mpath, man = _pick_manifest(sha, candidates, report_path)
    entries = man.entries
    scores = report.sections["scores"]
    flagged_pos = sorted({int(i) for i in report.sections["flagged"]})
    if len(scores) != len(entries):
        raise InputError(
            f"covers {len(scores)} samples but the manifest lists {len(entries)}", report_path
        )
    if flagged_pos and (flagged_pos[0] < 0 or flagged_pos[-1] >= len(entries)):
        raise InputError("flags positions outside the data", report_path)
    flags = np.zeros(len(entries), dtype=bool)
    flags[flagged_pos] = True
    flagged = [
        {
            "position": i,
            "sample_id": entries[i].sample_id,
            "source": entries[i].source,
            "label": entries[i].label,
            "score": scores[i],
            "sha256": entries[i].sha256,
        }
        for i in flagged_pos
    ]
    flagged.sort(key=lambda r: -(r["score"] or 0.0))
    sources = _source_rows(entries, flags)
    named = [
        str(f.evidence.get("source"))
        for f in report.findings
        if f.rule_id == "TW103" and f.evidence.get("source")
    ]
    # The scan names a supplier only on strong evidence; the manifest's suppliers may be
    # finer than the data file's, so also apply the same test to the manifest's sources.
    strong = [
        r["source"]
        for r in sources
        if len(sources) > 1 and r["flagged"] >= 3 and r["p_value_bonferroni"] < 1e-3
    ]
    implicated = list(dict.fromkeys([*named, *strong]))
    target = next((f.target_class for f in report.findings if f.rule_id == "TW104"), None)
    if target is None and flagged:
        label, count = Counter(r["label"] for r in flagged).most_common(1)[0]
        target = int(label) if count >= 0.5 * len(flagged) and len(flagged) >= 5 else None

    notes: list[str] = []
    flagged_hashes = {r["sha256"] for r in flagged}
    # The poison is what the implicated suppliers sent; the scan's other flags (false
    # positives spread over every source) must not make every model look affected.
    if implicated:
        bad_hashes = {r["sha256"] for r in flagged if r["source"] in implicated}
    else:
        bad_hashes = set(flagged_hashes)
        if flagged:
            notes.append(
                "no source is implicated: every flagged sample is treated as part of the poison"
            )
    version_rows: list[dict[str, Any]] = []
    aliases = registry.aliases() if registry is not None else {}
    served: dict[str, list[str]] = {}
    for name, a in aliases.items():
        served.setdefault(a["version"], []).append(name)
    for v in versions:
        if v.dataset_sha256 == sha:
            count, n_flag, how = len(bad_hashes), len(flagged_hashes), "trained on the scanned data"
        elif v.manifest_file:
            vman = read_manifest(registry.store / v.manifest_file)
            hashes = {e.sha256 for e in vman.entries}
            count, n_flag = len(bad_hashes & hashes), len(flagged_hashes & hashes)
            how = "its training manifest contains attributed samples" if count else "clean lineage"
        else:
            count, n_flag, how = 0, 0, "unknown lineage (no manifest)"
            notes.append(f"{v.label} has no dataset manifest: its lineage cannot be checked")
        gate = registry.gate(v.label)
        version_rows.append(
            {
                "version": v.label,
                "sha256": v.sha256,
                "name": v.name,
                "added_at": v.added_at,
                "dataset_sha256": v.dataset_sha256,
                "attributed_samples": count,
                "flagged_samples": n_flag,
                "lineage": how,
                "aliases": sorted(served.get(v.label, [])),
                "gate": "pass" if gate.passed else "fail",
            }
        )
    if registry is None:
        notes.append("no registry given: which model versions used the data is unknown")

    timeline = _timeline(man, report, registry, version_rows)
    result = DataForensics(
        dataset_sha256=sha,
        samples=len(entries),
        manifest=str(mpath),
        flagged=flagged,
        sources=sources,
        implicated_sources=implicated,
        target_class=target,
        versions=version_rows,
        timeline=timeline,
        notes=notes,
    )
    result.findings = _findings(result, report_path)
    return result


def _timeline(
    man: Any, report: Report, registry: Any, versions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    events = [
        {"time": man.created_at, "event": f"manifest of the data made ({len(man)} samples)"},
        {"time": report.generated_at, "event": "scan-data report generated"},
    ]
    affected = {v["version"] for v in versions if v["attributed_samples"] > 0}
    for v in versions:
        mark = " (trained on the poison)" if v["version"] in affected else ""
        events.append({"time": v["added_at"], "event": f"{v['version']} registered{mark}"})
    if registry is not None:
        for h in registry.history():
            mark = " (affected)" if h["version"] in affected else ""
            events.append(
                {
                    "time": h["at"],
                    "event": f"{h['action']}: '{h['alias']}' -> {h['version']}{mark} by {h['by']}",
                }
            )
    return sorted(events, key=lambda e: _when(e["time"]))


def _when(value: object) -> datetime:
    """A sortable time; text that is not ISO 8601 sorts first rather than failing."""
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _findings(res: DataForensics, artifact: str) -> list[Finding]:
    out: list[Finding] = []
    by_source = {r["source"]: r for r in res.sources}
    for src in res.implicated_sources:
        row = by_source.get(src)
        if row is None:
            continue
        ids = [r["sample_id"] for r in res.flagged if r["source"] == src]
        positions = [r["position"] for r in res.flagged if r["source"] == src]
        out.append(
            Finding(
                rule_id=RULE_ATTRIBUTED.id,
                title=f"flagged samples trace back to source '{src}'",
                message=(
                    f"{row['flagged']} of {row['samples']} samples from '{src}' are flagged "
                    f"({row['enrichment']}x the overall rate, Bonferroni p="
                    f"{row['p_value_bonferroni']:.2e})"
                    + (f"; target class {res.target_class}" if res.target_class is not None else "")
                ),
                severity=Severity.HIGH,
                confidence=round(1.0 - row["p_value_bonferroni"], 4),
                artifact=artifact or None,
                indices=tuple(positions),
                target_class=res.target_class,
                evidence={"source": src, "sample_ids": ids[:50], **row},
            )
        )
    for v in res.affected:
        out.append(
            Finding(
                rule_id=RULE_TRAINED.id,
                title=(
                    f"model {v['version']} was trained on {v['attributed_samples']} "
                    "attributed samples"
                ),
                message=(
                    f"registered model {v['version']} ({v['sha256'][:12]}, {v['name']}): "
                    f"{v['lineage']}; {v['attributed_samples']} samples attributed to the "
                    f"poison, {v['flagged_samples']} flagged in all"
                ),
                severity=Severity.HIGH,
                confidence=1.0 if v["lineage"] == "trained on the scanned data" else 0.9,
                artifact=v["name"],
                evidence={
                    "model_sha256": v["sha256"],
                    **{
                        k: v[k]
                        for k in ("version", "lineage", "attributed_samples", "flagged_samples")
                    },
                },
            )
        )
        for alias in v["aliases"]:
            out.append(
                Finding(
                    rule_id=RULE_SERVED.id,
                    title=f"alias '{alias}' serves affected model {v['version']}",
                    message=(
                        f"'{alias}' serves {v['version']}, trained on flagged samples: roll back "
                        f"with tripwire registry rollback --alias {alias}"
                    ),
                    severity=Severity.CRITICAL,
                    confidence=1.0 if v["lineage"] == "trained on the scanned data" else 0.9,
                    artifact=v["name"],
                    evidence={
                        "alias": alias,
                        "version": v["version"],
                        "model_sha256": v["sha256"],
                    },
                )
            )
    return out


def to_report(res: DataForensics, *, report_path: str, registry_path: str | None) -> Report:
    """The incident as a :class:`~tripwire.reports.Report` (JSON, HTML, SARIF, Markdown)."""
    figures = [
        Figure.bar(
            "Flagged samples per source",
            [r["source"] for r in res.sources],
            [r["flagged"] for r in res.sources],
            xlabel="source",
            ylabel="flagged samples",
        ),
        Figure.table(
            "Sources (manifest suppliers, enrichment of the flags)",
            ["source", "samples", "flagged", "enrichment", "p (Bonferroni)", "implicated"],
            [
                [
                    r["source"],
                    r["samples"],
                    r["flagged"],
                    r["enrichment"],
                    f"{r['p_value_bonferroni']:.2e}",
                    "yes" if r["source"] in res.implicated_sources else "",
                ]
                for r in res.sources
            ],
        ),
        Figure.table(
            "Model versions and their lineage",
            ["version", "sha256", "name", "lineage", "attributed", "flagged", "aliases", "gate"],
            [
                [
                    v["version"],
                    v["sha256"][:12],
                    v["name"],
                    v["lineage"],
                    v["attributed_samples"],
                    v["flagged_samples"],
                    ", ".join(v["aliases"]),
                    v["gate"],
                ]
                for v in res.versions
            ],
        ),
        Figure.table(
            "Timeline",
            ["time (UTC)", "event"],
            [[e["time"], e["event"]] for e in res.timeline],
        ),
        Figure.table(
            f"Flagged samples, most suspicious first (first {MAX_TABLE_ROWS})",
            ["position", "sample id", "source", "label", "score", "sha256"],
            [
                [
                    r["position"],
                    r["sample_id"],
                    r["source"],
                    r["label"],
                    r["score"],
                    r["sha256"][:16],
                ]
                for r in res.flagged[:MAX_TABLE_ROWS]
            ],
        ),
    ]
    return Report(
        command="forensics-data",
        inputs={
            "scan_report": {"path": report_path},
            "data": {"sha256": res.dataset_sha256, "samples": res.samples},
            "manifest": {"path": res.manifest},
            "registry": {"path": registry_path},
        },
        summary={
            "flagged_samples": len(res.flagged),
            "implicated_sources": ", ".join(res.implicated_sources) or "none",
            "target_class": res.target_class,
            "affected_versions": ", ".join(v["version"] for v in res.affected) or "none",
            "served_aliases_affected": ", ".join(a for v in res.affected for a in v["aliases"])
            or "none",
        },
        findings=res.findings,
        figures=figures,
        sections={"forensics": res.to_dict()},
    )
