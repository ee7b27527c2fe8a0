"""``tripwire attack``: the red team from the command line.

- ``attack poison DATA --kind KIND --rate R [--target C] --out OUT.npz``
- ``attack asr MODEL --data POISONED.npz [--test DATA]``: attack success rate of a model
  on triggered test inputs, re-applying the trigger recorded in the poisoned file
- ``attack list``: the attack kinds and their parameters
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from tripwire.cli.common import add_data_args, load_data, out
from tripwire.errors import EXIT_OK, InputError, MissingSplitError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "attack", help="run attacks: poison a dataset, measure attack success, list kinds"
    )
    asub = p.add_subparsers(
        dest="attack_command", metavar="ACTION", required=True, parser_class=type(p)
    )

    pp = asub.add_parser("poison", help="poison a share of a training set")
    add_data_args(pp)
    pp.add_argument("--kind", required=True, help="attack kind (see `tripwire attack list`)")
    pp.add_argument(
        "--rate",
        required=True,
        type=float,
        help="fraction of the whole training set to poison, in (0, 1)",
    )
    pp.add_argument("--target", type=int, help="the attacker's class")
    pp.add_argument("--source", type=int, help="the class victims are taken from")
    pp.add_argument(
        "--all-to-all", action="store_true", help="dirty-label variant: class c becomes c+1"
    )
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="kind-specific parameter, repeatable (for example size=4)",
    )
    pp.add_argument("--out", required=True, metavar="OUT.npz")
    pp.set_defaults(func=run_poison)

    pa = asub.add_parser("asr", help="attack success rate of a model on triggered test inputs")
    pa.add_argument("model", metavar="MODEL")
    pa.add_argument(
        "--data",
        required=True,
        metavar="POISONED.npz",
        help="a file written by `tripwire attack poison` (its attack record)",
    )
    pa.add_argument(
        "--test", metavar="DATA", help="clean test data (default: POISONED's own test split)"
    )
    pa.add_argument("--arch", help="architecture of a state-dict model")
    pa.add_argument("--seed", type=int, default=0)
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(func=run_asr)

    pe = asub.add_parser(
        "extract",
        help="clone a model through its prediction API (OIP v2 URL) or a local model file",
    )
    victim = pe.add_mutually_exclusive_group(required=True)
    victim.add_argument("--url", help="an Open Inference Protocol v2 server (http[s]://host:port)")
    victim.add_argument("--model", help="a local model file to attack directly (for testing)")
    pe.add_argument("--name", help="the model's name on the server (default: the URL's only one)")
    pe.add_argument(
        "--kind", required=True, help="random, jbda, knockoff, knockoff-adaptive, paced or sybil"
    )
    pe.add_argument("--budget", required=True, type=int, help="number of queried samples")
    pe.add_argument(
        "--eval",
        required=True,
        metavar="DATA",
        help="the victim's task data, to measure accuracy and fidelity (test split)",
    )
    pe.add_argument(
        "--natural", metavar="DATA", help="natural images of another distribution (knockoff kinds)"
    )
    pe.add_argument("--seed-data", metavar="DATA", help="the attacker's small seed set (jbda)")
    pe.add_argument("--budgets", help="comma-separated budgets to report (default: a ladder)")
    pe.add_argument("--api-key", help="bearer key for the server")
    pe.add_argument("--client-id", default="attacker-0", help="X-Client-Id to send")
    pe.add_argument("--seed", type=int, default=0)
    pe.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    pe.add_argument("--out", required=True, metavar="STOLEN.pt")
    pe.add_argument("--json", action="store_true", help="print the result record as JSON")
    pe.set_defaults(func=run_extract)

    pl = asub.add_parser("list", help="list the attack kinds and their parameters")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=run_list)
    return p


def parse_params(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; values are read as JSON where they parse, else as text."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError("expected NAME=VALUE", f"--param {item}")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def run_poison(args: argparse.Namespace) -> int:
    from tripwire.attacks import poison_dataset
    from tripwire.io import save_dataset

    if not str(args.out).lower().endswith(".npz"):
        raise InputError("poisoned datasets are written as .npz files", args.out)
    params = parse_params(args.param)
    ds = load_data(args)
    bad = poison_dataset(
        ds,
        args.kind,
        rate=args.rate,
        target=args.target,
        source=args.source,
        seed=args.seed,
        all_to_all=args.all_to_all,
        **params,
    )
    save_dataset(bad, args.out)
    n = int(bad.poisoned.sum()) if bad.poisoned is not None else 0
    out(f"poisoned {n} of {len(bad)} samples with {args.kind}; written to {args.out}")
    return EXIT_OK


def run_asr(args: argparse.Namespace) -> int:
    from tripwire.attacks import attack_success_rate
    from tripwire.io import load_dataset
    from tripwire.models.loading import load_model

    poisoned = load_dataset(args.data)
    if poisoned.attack is None:
        raise InputError("has no attack record (write it with `tripwire attack poison`)", args.data)
    if args.test:
        try:
            test = load_dataset(args.test, split="test")
        except MissingSplitError:
            test = load_dataset(args.test)
    else:
        try:
            test = load_dataset(args.data, split="test")
        except MissingSplitError:
            raise InputError("has no test split: pass --test DATA", args.data) from None
    model = load_model(args.model, arch=args.arch, input_shape=test.input_shape)
    model.check_input(test.input_shape, test.n_classes)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.logits(x).argmax(1))

    asr = attack_success_rate(predict, test, poisoned.attack, seed=args.seed)
    acc = float((predict(test.model_input()) == test.y).mean())
    result = {
        "attack": poisoned.attack,
        "attack_success_rate": round(asr, 6),
        "clean_accuracy": round(acc, 6),
        "test_samples": len(test),
    }
    if args.json:
        out(json.dumps(result, indent=2))
    else:
        out(
            f"attack success rate {asr:.4f}, clean accuracy {acc:.4f} "
            f"({poisoned.attack['kind']}, {len(test)} test samples)"
        )
    return EXIT_OK


def _eval_split(spec: str) -> Any:
    from tripwire.io import load_dataset

    try:
        return load_dataset(spec, split="test")
    except MissingSplitError:
        return load_dataset(spec)


def run_extract(args: argparse.Namespace) -> int:
    from tripwire.attacks.extraction import EXTRACTION_KINDS, Victim, extract, save_stolen
    from tripwire.io import load_dataset
    from tripwire.models.loading import load_model

    if args.kind not in EXTRACTION_KINDS:
        raise InputError(
            f"unknown extraction kind (choose from {', '.join(EXTRACTION_KINDS)})", args.kind
        )
    if args.budget < 1:
        raise InputError("the budget must be at least 1 query", "--budget")
    if not str(args.out).endswith(".pt"):
        raise InputError("the stolen model is written as TorchScript: use a .pt name", args.out)
    budgets = None
    if args.budgets:
        try:
            budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
        except ValueError:
            raise InputError("expected comma-separated integers", "--budgets") from None
        if not budgets or budgets[0] < 1 or budgets[-1] > args.budget:
            raise InputError(f"budgets must lie in 1..{args.budget}", "--budgets")
    eval_data = _eval_split(args.eval)
    natural = load_dataset(args.natural) if args.natural else None
    seed_data = load_dataset(args.seed_data) if args.seed_data else None
    if args.model:
        model = load_model(args.model)
        model.check_input(eval_data.input_shape, eval_data.n_classes)
        victim = Victim.from_model(model, name=args.model)
    else:
        if not args.name:
            raise InputError("name the model on the server with --name", "--url")
        victim = Victim.from_oip(args.url, args.name, api_key=args.api_key)
    result = extract(
        victim,
        args.kind,
        budget=args.budget,
        input_shape=eval_data.input_shape,
        n_classes=eval_data.n_classes,
        eval_data=eval_data,
        seed=args.seed,
        seed_data=seed_data,
        natural_data=natural,
        budgets_to_report=budgets,
        client_id=args.client_id,
        **parse_params(args.param),
    )
    save_stolen(result, args.out)
    record = result.to_dict()
    record.pop("queries", None)
    if args.json:
        out(json.dumps(record, indent=2))
    else:
        for row in record["per_budget"]:
            out(
                f"budget {row['budget']:>7}: stolen accuracy {row['accuracy']:.4f}, "
                f"fidelity {row['fidelity']:.4f}"
            )
        out(f"victim accuracy {record['victim_accuracy']:.4f}; stolen model: {args.out}")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    from tripwire.attacks import kinds

    rows: list[dict[str, Any]] = [
        {
            "kind": k.name,
            "clean_label": k.clean_label,
            "needs_images": k.needs_images,
            "has_trigger": k.trigger is not None,
            "params": k.defaults,
            "summary": k.summary,
        }
        for k in kinds().values()
    ]
    if args.json:
        out(json.dumps(rows, indent=2))
    else:
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
            out(
                f"{r['kind']:<18} {'clean-label' if r['clean_label'] else 'dirty-label':<12} "
                f"{params}"
            )
    return EXIT_OK
