"""``tripwire registry``: content-hashed model versions, lineage, gated promotion, rollback."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tripwire.cli.common import out
from tripwire.errors import EXIT_FINDINGS, EXIT_OK

SEVERITIES = ("info", "low", "medium", "high", "critical")


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "registry",
        help="model registry: add, attach scans, promote (scan-gated), rollback, show",
        description=(
            "A model registry in one SQLite file (--registry, else $TRIPWIRE_REGISTRY, else "
            ".tripwire/registry.db) that keeps its own copy of every model, manifest and "
            "report. 'promote' refuses a version whose latest scans have a finding at or "
            "above the registry's severity (exit 1); 'rollback' moves an alias to the last "
            "version whose scans pass."
        ),
    )
    p.add_argument("--registry", metavar="PATH", help="the registry file")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", dest="registry_sub", metavar="PATH", help="the registry file")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    a = actions.add_parser(
        "init", parents=[common], help="create a registry and set its promotion gate"
    )
    a.add_argument("--fail-on", choices=SEVERITIES, default="high")
    a.set_defaults(func=_init)

    a = actions.add_parser("add", parents=[common], help="register a model file")
    a.add_argument("model", metavar="MODEL", help="the model file (its .meta.json is read)")
    a.add_argument("--manifest", metavar="MANIFEST.jsonl", help="manifest of its training data")
    a.add_argument("--name", help="a readable name (default: the file name)")
    a.add_argument("--by", help="who adds it (default: login name)")
    a.add_argument("--note", default="")
    a.add_argument("--json", action="store_true", help="print the version as JSON")
    a.set_defaults(func=_add)

    a = actions.add_parser("attach", parents=[common], help="attach a scan report to a version")
    a.add_argument("version", metavar="VERSION", help="v<N>, a sha256 prefix or an alias")
    a.add_argument("report", metavar="REPORT.json")
    a.add_argument("--by")
    a.set_defaults(func=_attach)

    a = actions.add_parser("list", parents=[common], help="list versions")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_list)

    a = actions.add_parser("show", parents=[common], help="one version: lineage, scans, aliases")
    a.add_argument("version", metavar="VERSION")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_show)

    a = actions.add_parser("promote", parents=[common], help="point an alias at a version")
    a.add_argument("version", metavar="VERSION")
    a.add_argument("--alias", required=True)
    a.add_argument(
        "--fail-on", choices=SEVERITIES, help="gate severity (default: the registry's, high)"
    )
    a.add_argument(
        "--allow-unscanned", action="store_true", help="promote a version with no scan attached"
    )
    a.add_argument("--by")
    a.add_argument("--reason", default="")
    a.set_defaults(func=_promote)

    a = actions.add_parser(
        "rollback", parents=[common], help="move an alias to the last version whose scans pass"
    )
    a.add_argument("--alias", required=True)
    a.add_argument("--fail-on", choices=SEVERITIES)
    a.add_argument("--by")
    a.add_argument("--reason", default="")
    a.set_defaults(func=_rollback)

    a = actions.add_parser("resolve", parents=[common], help="print the file an alias serves")
    a.add_argument("alias", metavar="ALIAS")
    a.set_defaults(func=_resolve)

    a = actions.add_parser(
        "verify",
        parents=[common],
        help="check every stored model file against its sha256 (and its .meta.json against "
        "the registry's record)",
    )
    a.set_defaults(func=_verify)

    a = actions.add_parser("history", parents=[common], help="alias moves, oldest first")
    a.add_argument("--alias")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_history)

    p.set_defaults(func=_no_action(p))
    return p


def _no_action(p: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    return run


def _reg(args: argparse.Namespace) -> Any:
    from tripwire.response.registry import Registry, registry_path

    return Registry(registry_path(getattr(args, "registry_sub", None) or args.registry))


def _init(args: argparse.Namespace) -> int:
    reg = _reg(args)
    reg.set_fail_on(args.fail_on)
    out(f"registry {reg.path}: promotion refused at findings >= {args.fail_on}")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    reg = _reg(args)
    v, new = reg.add(args.model, manifest=args.manifest, name=args.name, by=args.by, note=args.note)
    if args.json:
        out(json.dumps(v.to_dict(), indent=2))
    else:
        state = "added" if new else "already registered as"
        lineage = f", trained on dataset {v.dataset_sha256[:12]}" if v.dataset_sha256 else ""
        out(f"{state} {v.label} {v.sha256[:12]} ({v.name}){lineage}")
    return EXIT_OK


def _attach(args: argparse.Namespace) -> int:
    reg = _reg(args)
    r, new = reg.attach(args.version, args.report, by=args.by)
    v = reg.get(args.version)
    counts = ", ".join(f"{n} {s}" for s, n in r.severity_counts.items() if n) or "no findings"
    gate = reg.gate(v.label)
    out(
        f"{'attached' if new else 'already attached:'} {r.command} report #{r.id} to {v.label} "
        f"({counts}); gate: {'pass' if gate.passed else 'FAIL'} ({gate.reason})"
    )
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    reg = _reg(args)
    versions = reg.versions()
    aliases = reg.aliases()
    by_version: dict[str, list[str]] = {}
    for name, a in aliases.items():
        by_version.setdefault(a["version"], []).append(name)
    rows = []
    for v in versions:
        gate = reg.gate(v.label)
        rows.append(
            {
                "version": v.label,
                "sha256": v.sha256,
                "name": v.name,
                "added_at": v.added_at,
                "added_by": v.added_by,
                "dataset_sha256": v.dataset_sha256,
                "scans": len(reg.reports(v.label)),
                "gate": "pass" if gate.passed else "fail",
                "aliases": sorted(by_version.get(v.label, [])),
            }
        )
    if args.json:
        out(json.dumps({"registry": str(reg.path), "versions": rows}, indent=2))
        return EXIT_OK
    if not rows:
        out("no versions")
        return EXIT_OK
    out(f"{'version':8} {'sha256':12} {'gate':5} {'scans':5} {'aliases':14} {'added':20} name")
    for r in rows:
        out(
            f"{r['version']:8} {r['sha256'][:12]} {r['gate']:5} {r['scans']:<5} "
            f"{','.join(r['aliases']) or '-':14} {r['added_at'][:19]:20} {r['name']}"
        )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    d = _reg(args).describe(args.version)
    if args.json:
        out(json.dumps(d, indent=2))
        return EXIT_OK
    out(f"{d['version']}  {d['name']}  sha256 {d['sha256']}")
    out(f"  added {d['added_at']} by {d['added_by']} from {d['original_path']}")
    out(f"  stored {d['stored_file']}")
    out(f"  metadata {d['meta_stored'] or 'none'}")
    out(f"  dataset {d['dataset_sha256'] or 'unknown'}; manifest {d['manifest_stored'] or 'none'}")
    out(f"  aliases: {', '.join(d['aliases']) or 'none'}")
    gate = d["gate"]
    out(f"  gate: {'pass' if gate['passed'] else 'FAIL'} ({gate['reason']})")
    for r in d["reports"]:
        counts = ", ".join(f"{n} {s}" for s, n in r["severity_counts"].items() if n) or "clean"
        out(
            f"  report #{r['id']} {r['command']} {r['generated_at']} "
            f"by {r['attached_by']}: {counts}"
        )
    for m in d["promotions"]:
        out(f"  {m['action']} to '{m['alias']}' at {m['at']} by {m['by']}: {m['reason']}")
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from tripwire.response.registry import PromotionRefusedError

    reg = _reg(args)
    try:
        v, prev = reg.promote(
            args.version,
            args.alias,
            fail_on=args.fail_on,
            by=args.by,
            allow_unscanned=args.allow_unscanned,
            reason=args.reason,
        )
    except PromotionRefusedError as exc:
        # A policy refusal, like findings at or above --fail-on in a scan: exit 1.
        print(f"tripwire: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    was = f" (was {prev.label})" if prev is not None else ""
    out(f"'{args.alias}' -> {v.label} {v.sha256[:12]}{was}")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    reg = _reg(args)
    v, prev = reg.rollback(args.alias, fail_on=args.fail_on, by=args.by, reason=args.reason)
    out(f"'{args.alias}' rolled back to {v.label} {v.sha256[:12]} (was {prev.label})")
    return EXIT_OK


def _resolve(args: argparse.Namespace) -> int:
    out(str(_reg(args).resolve(args.alias)))
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    moves = _reg(args).history(args.alias)
    if args.json:
        out(json.dumps(moves, indent=2))
        return EXIT_OK
    for m in moves:
        prev = f" from {m['previous']}" if m["previous"] else ""
        out(
            f"{m['at']} {m['alias']}: {m['action']} to {m['version']}{prev} "
            f"by {m['by']}: {m['reason']}"
        )
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    reg = _reg(args)
    problems = reg.verify()
    for p in problems:
        out(p)
    if not problems:
        out(f"{len(reg.versions())} stored model file(s) and their metadata match the registry")
    return EXIT_FINDINGS if problems else EXIT_OK
