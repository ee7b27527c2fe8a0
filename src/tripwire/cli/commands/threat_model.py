"""``tripwire threat-model``: threats per lifecycle stage from a YAML system description."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tripwire.cli.common import out
from tripwire.errors import EXIT_OK, InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "threat-model",
        help="threats per lifecycle stage (STRIDE for ML, MITRE ATLAS, NIST AI RMF) of a system",
        description=(
            "Read a short YAML description of an ML system (schema: docs/threat-model.md) "
            "and print its threats per lifecycle stage: STRIDE category, MITRE ATLAS "
            "techniques, the tripwire control that covers each (or none), what to monitor "
            "and the NIST AI RMF function. Markdown on stdout unless --out is given."
        ),
    )
    p.add_argument("system", metavar="SYSTEM.yaml", help="the system description")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--format",
        choices=("md", "html", "json"),
        default=None,
        help="md (default), html (self-contained page) or json; "
        "guessed from --out's extension when omitted",
    )
    p.set_defaults(func=run)
    return p


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.out:
        suffix = str(args.out).lower().rsplit(".", 1)[-1]
        return {"html": "html", "htm": "html", "json": "json"}.get(suffix, "md")
    return "md"


def run(args: argparse.Namespace) -> int:
    from tripwire.reports import render_html, write_text_atomic
    from tripwire.response.threat_model import (
        build_threat_model,
        load_system,
        render_markdown,
        to_report,
    )

    if args.out is not None and not str(args.out).strip():
        raise InputError("empty path", "--out")
    fmt = _format(args)
    if fmt == "html" and not args.out:
        raise InputError("HTML goes to a file: add --out REPORT.html", "--format")
    model = build_threat_model(load_system(args.system))
    if fmt == "md":
        text = render_markdown(model)
    elif fmt == "json":
        text = json.dumps(model.to_dict(), indent=2) + "\n"
    else:
        text = render_html(to_report(model, str(args.system)))
    if args.out:
        write_text_atomic(args.out, text)
        s = model.summary()
        out(
            f"{s['threats']} threats ({', '.join(f'{n} {k}' for k, n in s['by_risk'].items())}), "
            f"{len(s['uncovered'])} without a tripwire control; written to {args.out}"
        )
    else:
        out(text.rstrip("\n"))
    return EXIT_OK
