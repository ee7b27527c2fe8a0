"""The ``tripwire`` command: parsing, dispatch, and the one-line error contract.

Every user-caused problem is a :class:`~tripwire.errors.TripwireError` and becomes exactly
one line on stderr and exit 2; a bug becomes exit 3. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import NoReturn

from tripwire import __version__
from tripwire.cli import commands
from tripwire.errors import EXIT_INTERNAL, EXIT_USAGE, TripwireError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_debug(p: argparse.ArgumentParser, *, top: bool) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks and warnings",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser (one subparser per command)."""
    parser = OneLineParser(
        prog="tripwire",
        description=(
            "Detect data poisoning, backdoors and model extraction across the ML "
            "lifecycle. Exit codes: 0 clean, 1 findings at or above --fail-on, "
            "2 bad input or usage, 3 internal error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tripwire {__version__}")
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for register in commands.REGISTRARS:
        sp = register(sub)
        _add_debug(sp, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    if not debug:
        # Library warnings (torch, sklearn) would break the one-line error contract.
        warnings.simplefilter("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except TripwireError as exc:
        if debug:
            traceback.print_exc()
        print(f"tripwire: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tripwire: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = str(exc).strip().splitlines()
        print(
            f"tripwire: internal error: {exc.__class__.__name__}: "
            f"{detail[0][:300] if detail else ''} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
