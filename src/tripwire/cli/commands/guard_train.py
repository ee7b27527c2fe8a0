"""``tripwire guard-train``: retrain the extraction stream classifier.

Generates the red-team attack streams (every extraction kind) and the benign workloads
on bundled victims, replays them through the extraction monitor, fits the logistic
stream classifier (alert thresholds calibrated on the benign clients only), evaluates it
leaving one attack family out at a time, and writes the weights as JSON (by default
over the copy shipped in the package) plus an evaluation report.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tripwire.cli.common import console, out, positive_int
from tripwire.errors import EXIT_OK, InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "guard-train",
        help="retrain the extraction stream classifier on attack and benign streams",
    )
    p.add_argument(
        "--out",
        metavar="JSON",
        help=(
            "where the weights go (default: the package's shipped classifier, the colour "
            "one when a --data victim takes colour images)"
        ),
    )
    p.add_argument("--report", metavar="JSON", help="write the evaluation report here")
    p.add_argument(
        "--settings",
        default="digits,mnist",
        help="bundled victim settings, comma-separated (digits, mnist; empty: none)",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DATA",
        help="a further victim task from a data file (repeatable; pair each with --natural)",
    )
    p.add_argument(
        "--natural",
        action="append",
        default=[],
        metavar="DATA",
        help="the knockoff attackers' natural data of another domain for each --data",
    )
    p.add_argument(
        "--max-train",
        type=positive_int,
        default=10_000,
        help="victim training samples drawn from each --data (seeded)",
    )
    p.add_argument("--seeds", default="0", help="attack and workload seeds, comma-separated")
    p.add_argument("--budget", type=positive_int, default=1000, help="queries per attack")
    p.add_argument(
        "--benign-per-kind", type=positive_int, default=3, help="benign clients per kind"
    )
    p.add_argument(
        "--cache-dir",
        default=os.environ.get(
            "TRIPWIRE_CACHE", str(Path.home() / ".cache" / "tripwire" / "guard-train")
        ),
        help="victim models are cached here (outside the repository)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from importlib import resources

    from tripwire.bench.extraction_detection import (
        TrainingSetting,
        feature_table,
        file_setting,
        leave_one_family_out,
        train_classifier,
        training_traces,
    )
    from tripwire.detectors.extraction.classifier import (
        COLOUR_FILE,
        DEFAULT_FILE,
        is_colour_image,
    )

    bundled = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in bundled if s not in ("digits", "mnist")]
    if bad:
        raise InputError(f"unknown setting(s) {', '.join(bad)}", "--settings")
    if len(args.data) != len(args.natural):
        raise InputError(
            f"{len(args.data)} --data but {len(args.natural)} --natural: pair each data "
            "file with natural data of another domain",
            "--natural",
        )
    if not bundled and not args.data:
        raise InputError("no victim settings: give --settings or --data", "--settings")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise InputError("seeds must be integers", "--seeds") from None
    settings: list[str | TrainingSetting] = list(bundled)
    for data, natural in zip(args.data, args.natural, strict=True):
        # The victim's training subset follows the first seed: other seeds, other victims.
        st = file_setting(data, natural, max_train=args.max_train, seed=seeds[0])
        settings.append(st)
        console.print(
            f"{data}: {len(st.train)} training, {len(st.test)} test, "
            f"{len(st.natural)} natural samples ({st.name})"
        )
    started = time.perf_counter()
    traces, calibration = training_traces(
        settings,
        seeds=seeds,
        budget=args.budget,
        benign_per_kind=args.benign_per_kind,
        cache_dir=Path(args.cache_dir),
        log=lambda m: console.print(m),
    )
    x, y, _kinds, clients = feature_table(traces)
    lofo = leave_one_family_out(traces, calibration=calibration)
    clf = train_classifier(
        x,
        y,
        clients,
        calibration=calibration,
        info={
            "trained_on": {
                "settings": [x if isinstance(x, str) else x.name for x in settings],
                "seeds": seeds,
                "budget": args.budget,
                "benign_per_kind": args.benign_per_kind,
            },
            "command": "tripwire guard-train",
        },
    )
    # Without --out, the shipped copy for the inputs trained on: the colour classifier
    # when any victim takes colour images (the monitor picks it for such models).
    colour = any(
        not isinstance(st, str) and is_colour_image(st.train.input_shape) for st in settings
    )
    shipped = COLOUR_FILE if colour else DEFAULT_FILE
    target = (
        Path(args.out)
        if args.out
        else Path(str(resources.files("tripwire.detectors.extraction") / "data" / shipped))
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    clf.save(target)
    benign_alarms = sum(
        1
        for t in traces
        if t.label == 0 and any(clf.score(f) >= clf.thresholds[0] for _, f in t.rows)
    )
    missed = [
        t.client
        for t in traces
        if t.label == 1 and not any(clf.score(f) >= clf.thresholds[0] for _, f in t.rows)
    ]
    report = {
        "classifier": str(target),
        "thresholds": list(clf.thresholds),
        "rows": len(y),
        "benign_clients": sum(t.label == 0 for t in traces),
        "benign_training_clients_alarmed": benign_alarms,
        "calibration_clients": len(calibration),
        "attack_clients_missed_in_sample": missed,
        "leave_one_family_out": lofo,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    for fam, r in lofo.items():
        out(
            f"left out {fam}: {r['detected']}/{r['clients']} detected, "
            f"at {r['queries_until_detection']}"
        )
    out(f"stream classifier written to {target} ({report['wall_s']} s)")
    return EXIT_OK
