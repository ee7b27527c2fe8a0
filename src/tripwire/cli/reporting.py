"""The report flags every scan shares (--out/--html/--sarif/--markdown/--fail-on)."""

from __future__ import annotations

import argparse

from tripwire.errors import InputError


def add_report_args(p: argparse.ArgumentParser, *, default_fail_on: str = "high") -> None:
    p.add_argument("--out", metavar="REPORT.json", help="write the JSON report here")
    p.add_argument("--html", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--sarif", metavar="REPORT.sarif", help="write SARIF 2.1.0 for code scanning")
    p.add_argument("--markdown", metavar="REPORT.md", help="write a Markdown summary")
    p.add_argument(
        "--fail-on",
        default=default_fail_on,
        choices=("info", "low", "medium", "high", "critical"),
        help=f"exit 1 when a finding is at or above this severity (default: {default_fail_on})",
    )


def emit_report(report: object, args: argparse.Namespace) -> None:
    """Write the report in every format the flags ask for."""
    from tripwire.reports import Report, write_reports

    if not isinstance(report, Report):  # pragma: no cover - programming error
        raise TypeError("emit_report needs a Report")
    for flag in ("out", "html", "sarif", "markdown"):
        value = getattr(args, flag, None)
        if value is not None and str(value).strip() == "":
            raise InputError("empty path", f"--{flag}")
    write_reports(
        report,
        json_path=args.out,
        html_path=args.html,
        sarif_path=args.sarif,
        markdown_path=args.markdown,
    )
