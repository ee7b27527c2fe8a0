"""``tripwire export-stix``: reports and gateway alerts as one STIX 2.1 bundle."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tripwire.cli.common import out
from tripwire.errors import EXIT_OK, InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "export-stix",
        help="export findings and gateway alerts as a STIX 2.1 bundle for threat-intel sharing",
        description=(
            "Turn tripwire JSON reports (scan-data, scan-model, forensics, ...) and gateway "
            "alert logs into one STIX 2.1 bundle: identity, attack-patterns referencing "
            "MITRE ATLAS, indicators, sightings and relationships. Ids are deterministic, "
            "so re-exporting the same input gives the same objects."
        ),
    )
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="reports or alert logs")
    p.add_argument("--out", metavar="BUNDLE.json", help="write the bundle here (default: stdout)")
    p.add_argument(
        "--producer",
        default="tripwire",
        help="name of the producing organisation (default: the tool itself)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tripwire.reports import write_text_atomic
    from tripwire.response.stix import load_and_export

    if args.out is not None and not str(args.out).strip():
        raise InputError("empty path", "--out")
    if not str(args.producer).strip():
        raise InputError("empty producer name", "--producer")
    bundle = load_and_export(args.reports, producer=str(args.producer).strip())
    text = json.dumps(bundle, indent=2, ensure_ascii=True) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
        counts: dict[str, int] = {}
        for o in bundle["objects"]:
            counts[o["type"]] = counts.get(o["type"], 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        out(f"STIX 2.1 bundle of {len(bundle['objects'])} objects ({detail}) written to {args.out}")
    else:
        out(text.rstrip("\n"))
    return EXIT_OK
