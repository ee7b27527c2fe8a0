"""``tripwire playbook``: print the incident-response playbook (docs/playbook.md)."""

from __future__ import annotations

import argparse
from typing import Any

from tripwire.cli.common import out
from tripwire.errors import EXIT_OK, InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "playbook",
        help="print the incident-response playbook (triage, containment, tabletop exercise)",
        description=(
            "Print the incident-response playbook for ML systems: triage of each alert, "
            "containment, eradication, recovery, forensics and a tabletop exercise, each "
            "step with the tripwire command that does it. Markdown on stdout by default."
        ),
    )
    p.add_argument(
        "--section",
        metavar="NAME",
        help="print one section only: intro, roles, detect, triage, contain, eradicate, "
        "recover, forensics, share, tabletop (or the start of its heading)",
    )
    p.add_argument(
        "--format",
        choices=("md", "text"),
        default="md",
        help="md (default) or text (no Markdown marks, tables as lists)",
    )
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tripwire.reports import write_text_atomic
    from tripwire.response.playbook import load_playbook, select, to_text

    if args.out is not None and not str(args.out).strip():
        raise InputError("empty path", "--out")
    text = load_playbook()
    if args.section is not None:
        text = select(text, args.section).markdown
    if args.format == "text":
        text = to_text(text)
    if args.out:
        write_text_atomic(args.out, text)
        out(f"playbook written to {args.out}")
    else:
        out(text.rstrip("\n"))
    return EXIT_OK
