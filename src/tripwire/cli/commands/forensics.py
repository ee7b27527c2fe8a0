"""``tripwire forensics data``: which samples and source introduced a poison, and which
registered model versions were trained on them. ``tripwire forensics client``: what a
gateway client queried and obtained, and how much of the model leaked to it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tripwire.cli.common import add_data_args, console, load_data, out, positive_int
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
    c = kinds.add_parser(
        "client",
        help="from the gateway's store: a client's timeline, what it obtained, what leaked",
        description=(
            "Read the gateway's query log, timelines and alerts for one or more clients: "
            "a per-request timeline with the detectors' scores and alerts, the labelled "
            "samples each client obtained and how they cover the classes (and, with "
            "--reference, the input space), and, with --model and --data, the fidelity "
            "of a surrogate trained on exactly the logged inputs and answers, over the "
            "first 10/25/50/100% of the log. Writes a JSON and HTML incident report."
        ),
    )
    c.add_argument(
        "--store",
        required=True,
        metavar="sqlite:PATH|redis://HOST:PORT/DB",
        help="the gateway's store (what tripwire guard --store named)",
    )
    c.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID",
        help="client to investigate (repeatable; default: every client with an alert)",
    )
    c.add_argument("--model", metavar="MODEL.pt", help="the served model, for the surrogate")
    c.add_argument(
        "--data",
        metavar="EVAL",
        help="labelled evaluation data of the model's input distribution, for the surrogate",
    )
    add_data_args(c, positional=False)
    c.add_argument(
        "--reference",
        metavar="DATA",
        help="data of the model's input distribution, for input-space coverage",
    )
    c.add_argument(
        "--epochs",
        type=positive_int,
        help="surrogate training epochs (default: the extraction attack's schedule)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the surrogates (default 0)")
    c.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads for the surrogates (default 1: small models gain little from more)",
    )
    c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    add_report_args(c)
    c.set_defaults(func=run_client)
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


def run_client(args: argparse.Namespace) -> int:
    from tripwire.gateway.store import open_store
    from tripwire.reports import exit_code_for
    from tripwire.response.client_forensics import to_report

    if args.seed < 0:
        raise InputError("must not be negative", "--seed")
    if bool(args.model) != bool(args.data):
        raise InputError("--model and --data go together (the surrogate needs both)", "--model")
    data = load_data(args) if args.data else None
    reference = load_data(args, spec=args.reference, split="train") if args.reference else None
    model = None
    if args.model:
        from tripwire.models.loading import load_model

        model = load_model(args.model, input_shape=data.input_shape if data else None)
    store = open_store(args.store, existing=True)
    try:
        clients = list(dict.fromkeys(args.client))
        if not clients:
            clients = sorted({str(a["client"]) for a in store.alerts() if a.get("client")})
            if not clients:
                raise InputError("no client has an alert here: name one with --client", args.store)
        results = []
        for cid in clients:
            if model is not None:
                console.print(f"client '{cid}': training surrogates on its logged answers")
            results.append(
                _one_client(store, cid, args, model=model, data=data, reference=reference)
            )
    finally:
        store.close()
    inputs: dict[str, dict[str, object]] = {}
    if args.model:
        inputs["model"] = {"path": str(args.model)}
    if data is not None:
        inputs["data"] = data.describe()
    if reference is not None:
        inputs["reference"] = reference.describe()
    rep = to_report(results, store=args.store, inputs=inputs)
    emit_report(rep, args)
    for r in results:
        leak = (
            "surrogate not measured"
            if r.surrogate is None
            else (
                f"surrogate fidelity {r.surrogate['curve'][-1]['fidelity']:.3f} "
                f"(kappa {r.surrogate['curve'][-1]['kappa']:.3f}; model accuracy "
                f"{r.surrogate['victim_accuracy']:.3f})"
            )
        )
        out(
            f"{r.client}: {r.requests} requests, {r.samples_answered} samples answered "
            f"({r.labelled_samples} logged with payloads), {r.classes['covered']}/"
            f"{r.classes['n_classes']} classes, {len(r.alerts)} alert(s); {leak}"
        )
        for note in r.notes:
            out(f"note ({r.client}): {note}")
    return exit_code_for([f for r in results for f in r.findings], args.fail_on)


def _one_client(
    store: Any, client: str, args: argparse.Namespace, *, model: Any, data: Any, reference: Any
) -> Any:
    from tripwire.response.client_forensics import client_forensics

    torch_threads = None
    if model is not None:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
    try:
        return client_forensics(
            store,
            client,
            store_name=args.store,
            model=model,
            eval_data=data,
            reference=reference,
            epochs=args.epochs,
            seed=args.seed,
            show_progress=True,
        )
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
