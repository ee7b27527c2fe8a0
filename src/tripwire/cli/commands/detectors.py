"""``tripwire detectors``: list the registered detectors and what each needs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tripwire.cli.common import out


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "detectors", help="list the registered detectors (built-in and plug-ins)"
    )
    p.add_argument("--threat", choices=("poisoning", "backdoor", "extraction"))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tripwire.detectors import Threat, available

    threat = Threat(args.threat) if args.threat else None
    rows = [
        {
            "name": cls.name,
            "threat": str(cls.threat),
            "needs": sorted(str(n) for n in cls.needs),
            "summary": (cls.__doc__ or "").strip().splitlines()[0],
        }
        for cls in available(threat)
    ]
    if args.json:
        out(json.dumps(rows, indent=2))
    else:
        for r in rows:
            out(
                f"{r['name']:<20} {r['threat']:<11} "
                f"needs {', '.join(r['needs']):<22} {r['summary']}"
            )
    return 0
