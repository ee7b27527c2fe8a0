"""``tripwire demo``: the red-team/blue-team exercise, end to end, on bundled data.

A vendor delivers poisoned data and the pipeline stops it; a contractor's backdoored
model goes live anyway and the audit catches it and rolls it back under a running
gateway; an attacker clones the model through the API and is caught; forensics says what
leaked; the incident is shared as STIX. See :mod:`tripwire.response.exercise`. Offline,
a few minutes on 2 CPU cores; exit 1 if any stage fails to detect what it should.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tripwire.cli.common import console, out, positive_int
from tripwire.errors import EXIT_FINDINGS, EXIT_OK, MissingDependencyError
from tripwire.response.exercise import EPOCHS


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="the red-team/blue-team exercise end to end on bundled data (a few minutes)",
        description=(
            "Runs the supply-chain backdoor and model-extraction exercise on bundled data: "
            "pipeline, gateway, model audit, rollback, forensics, STIX. Every result is "
            "computed live; exit 1 if any stage fails to detect what it should."
        ),
    )
    p.add_argument(
        "--out-dir", default="tripwire-demo", help="where to write (default: ./tripwire-demo)"
    )
    p.add_argument(
        "--data",
        default="bundled:mnist",
        help="bundled:mnist (default) or any dataset with a test split",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=EPOCHS,
        help=f"training epochs of each model (default: {EPOCHS})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    from tripwire.response.exercise import run_exercise

    result = run_exercise(
        Path(args.out_dir), data=args.data, epochs=args.epochs, seed=args.seed, say=console.print
    )
    failed = [c for c in result.checks if not c.passed]
    out(
        f"exercise: {len(result.checks) - len(failed)} of {len(result.checks)} checks passed "
        f"in {result.seconds:.0f} s; report: {Path(result.out) / 'index.html'}"
    )
    for c in failed:
        out(f"FAILED [{c.stage}] {c.expect}: {c.observed}")
    return EXIT_OK if not failed else EXIT_FINDINGS
