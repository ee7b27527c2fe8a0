"""``tripwire manifest`` and ``tripwire verify``: per-sample content hashes at ingestion."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tripwire.cli.common import add_data_args, console, load_data, out
from tripwire.cli.reporting import add_report_args, emit_report
from tripwire.errors import EXIT_FINDINGS, EXIT_OK


def register_manifest(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "manifest",
        help="record a content hash, label and source per sample (JSON lines)",
    )
    add_data_args(p)
    p.add_argument("--source", help="the supplier of this delivery (default: the data's own)")
    p.add_argument("--out", required=True, metavar="manifest.jsonl")
    p.set_defaults(func=run_manifest)
    return p


def register_verify(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="compare data with a manifest: added, removed, relabelled, altered (exit 1 if any)",
    )
    add_data_args(p)
    p.add_argument("--manifest", required=True, metavar="manifest.jsonl")
    add_report_args(p, default_fail_on="info")
    p.set_defaults(func=run_verify)
    return p


def run_manifest(args: argparse.Namespace) -> int:
    from tripwire.ingest import build_manifest, write_manifest

    ds = load_data(args)
    manifest = build_manifest(ds, args.source)
    write_manifest(manifest, args.out)
    out(f"manifest of {len(ds)} samples written to {args.out}")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from tripwire.ingest import read_manifest, verify_dataset, verify_findings
    from tripwire.reports import Report

    manifest = read_manifest(args.manifest)
    ds = load_data(args)
    result = verify_dataset(ds, manifest)
    findings = verify_findings(result, artifact=str(args.data))
    report = Report(
        command="verify",
        inputs={"data": ds.describe(), "manifest": {"path": str(args.manifest)}},
        summary=result.summary(),
        findings=findings,
        sections={"verify": result.to_dict()},
    )
    emit_report(report, args)
    summary = result.summary()
    if not args.out:
        out(json.dumps(summary))
    if result.ok:
        console.print("[green]data matches the manifest[/]")
        return EXIT_OK
    console.print(f"[red]data differs from the manifest:[/] {summary}")
    return EXIT_FINDINGS
