"""``tripwire forensics data``: which samples and source introduced a poison, and which
registered model versions were trained on them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tripwire.cli.common import out
from tripwire.cli.reporting import add_report_args, emit_report
from tripwire.errors import EXIT_USAGE, InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "forensics",
        help="incident forensics: trace flagged samples to their source and model versions",
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", parser_class=type(p))
    d = kinds.add_parser(
        "data",
        help="from a scan-data report, manifests and the registry: samples, source, versions",
        description=(
            "Map a scan-data report's flagged samples to their manifest entries (sample id, "
            "content hash, supplier), attribute them to the sources they are enriched in, "
            "and list the registered model versions trained on them (same dataset hash, or "
            "a training manifest that contains a flagged sample) and the aliases serving "
            "them. Writes a JSON and HTML incident report."
        ),
    )
    d.add_argument("--report", required=True, metavar="SCAN.json", help="a scan-data report")
    d.add_argument(
        "--manifest",
        action="append",
        default=[],
        metavar="MANIFEST.jsonl",
        help="manifest of the scanned data (repeatable; the registry's are also searched)",
    )
    d.add_argument(
        "--registry",
        metavar="PATH",
        help="the model registry (default: $TRIPWIRE_REGISTRY or .tripwire/registry.db "
        "when it exists)",
    )
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    add_report_args(d)
    d.set_defaults(func=run_data)
    p.set_defaults(func=_no_kind(p))
    return p


def _no_kind(p: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return EXIT_USAGE

    return run


def run_data(args: argparse.Namespace) -> int:
    from tripwire.reports import exit_code_for
    from tripwire.response.forensics import data_forensics, load_scan_report, to_report
    from tripwire.response.registry import Registry, registry_path

    reg_path = registry_path(args.registry)
    if args.registry and not reg_path.exists():
        raise InputError("no registry here", reg_path)
    registry = Registry(reg_path) if reg_path.exists() else None
    report = load_scan_report(args.report)
    res = data_forensics(
        report, report_path=str(args.report), manifests=args.manifest, registry=registry
    )
    rep = to_report(
        res,
        report_path=str(args.report),
        registry_path=None if registry is None else str(reg_path),
    )
    emit_report(rep, args)
    affected = ", ".join(v["version"] for v in res.affected) or "none"
    served = ", ".join(a for v in res.affected for a in v["aliases"]) or "none"
    out(
        f"{len(res.flagged)} flagged samples; source(s): "
        f"{', '.join(res.implicated_sources) or 'none attributed'}; "
        f"target class: {res.target_class if res.target_class is not None else 'unknown'}; "
        f"affected versions: {affected}; serving aliases affected: {served}"
    )
    for note in res.notes:
        out(f"note: {note}")
    return exit_code_for(res.findings, args.fail_on)
