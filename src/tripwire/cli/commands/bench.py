"""``tripwire bench``: run a benchmark suite and write results.csv/json and report.html."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripwire.cli.common import console, out
from tripwire.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from tripwire.bench.suites import Suite


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="run the attack x detector benchmark (suites: quick, standard, full)"
    )
    p.add_argument(
        "--suite",
        default="quick",
        help="quick (bundled data, minutes), standard (the shared datasets, about three "
        "hours) or full (issue #4's whole grid on the same data, about ten hours)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where results go")
    p.add_argument("--data-dir", help="the shared datasets (standard and full suites)")
    p.add_argument(
        "--cache-dir",
        default=os.environ.get(
            "TRIPWIRE_CACHE", str(Path.home() / ".cache" / "tripwire" / "bench")
        ),
        help="models and finished cells, keyed by data, attack and seed (outside the repo)",
    )
    p.add_argument("--resume", action="store_true", help="reuse finished cells from the cache")
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="run no new cell: write the outputs over the cells already finished in "
        "--cache-dir (a long suite's table part-way)",
    )
    p.add_argument(
        "--trusted",
        type=int,
        metavar="N",
        help="calibrate the detectors on the scores of N verified training samples of "
        "each cell (drawn class-balanced among the unpoisoned ones; what scan-data "
        "--trusted-source does) instead of by robust statistics; cached apart",
    )
    p.add_argument(
        "--dynamics",
        action="store_true",
        help="feed training-margin one more training run per cell with 1%% of the labels "
        "planted as calibrators, as scan-data --dynamics does (doubles the training); "
        "cached apart",
    )
    p.add_argument(
        "--data",
        metavar="NAMES",
        help="run only these of the suite's datasets (comma-separated, e.g. cifar10-10k)",
    )
    p.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="run only these seeds' cells (comma-separated, e.g. 2); a cell keeps its cache "
        "key, so runs over different seeds complete one suite",
    )
    p.add_argument(
        "--attacks",
        metavar="KINDS",
        help="run only these of the suite's attacks (comma-separated, e.g. clean,badnets,"
        "label-flip); a cell keeps its cache key",
    )
    p.add_argument(
        "--arch",
        metavar="ARCH",
        help="train the suite's models with this architecture instead of the suite's own "
        "(cnn-small, cnn-compact or resnet-mini: the check against tuning to one design); "
        "datasets are then named <name>@<arch>",
    )
    p.add_argument(
        "--train-only",
        action="store_true",
        help="only train and cache every model the suite needs (no detection, no outputs); "
        "a later run with the same --cache-dir reuses them",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tripwire.bench.report import write_outputs
    from tripwire.bench.runner import run_suite, train_suite_models
    from tripwire.bench.suites import get_suite, only_attacks, only_data, with_arch
    from tripwire.scan.data import MIN_TRUSTED

    suite = get_suite(args.suite)
    if args.trusted is not None and args.trusted < MIN_TRUSTED:
        raise InputError(
            f"needs at least {MIN_TRUSTED} verified samples, got {args.trusted}", "--trusted"
        )
    if args.data:
        suite = only_data(suite, [n.strip() for n in args.data.split(",") if n.strip()])
    if args.attacks:
        suite = only_attacks(suite, [k.strip() for k in args.attacks.split(",") if k.strip()])
    if args.arch:
        suite = with_arch(suite, args.arch)
    seeds = _seeds(args.seeds, suite) if args.seeds else None
    started = time.perf_counter()
    if args.train_only:
        n = train_suite_models(
            suite,
            cache_dir=Path(args.cache_dir),
            data_dir=args.data_dir,
            seeds=seeds,
            dynamics=args.dynamics,
            log=lambda msg: console.print(msg),
        )
        out(
            f"{n} models ready in {args.cache_dir} "
            f"({time.perf_counter() - started:.0f} s); nothing written to {args.out}"
        )
        return EXIT_OK
    result = run_suite(
        suite,
        out_dir=Path(args.out),
        cache_dir=Path(args.cache_dir),
        data_dir=args.data_dir,
        resume=args.resume,
        finished_only=args.finished_only,
        trusted=args.trusted,
        dynamics=args.dynamics,
        seeds=seeds,
        log=lambda msg: console.print(msg),
    )
    wall = time.perf_counter() - started
    write_outputs(suite.name, result, Path(args.out), wall)
    left = result.get("unfinished", [])
    out(
        f"{len(result['rows'])} result rows in {wall:.0f} s; written to {args.out} "
        "(results.csv, results.json, report.html)"
        + (f"; {len(left)} cells not finished yet, left out" if left else "")
    )
    return EXIT_OK


def _seeds(text: str, suite: Suite) -> set[int]:
    """``--seeds`` as a set of ints, each one that the (selected) suite runs."""
    try:
        seeds = {int(s) for s in text.split(",") if s.strip()}
    except ValueError:
        raise InputError(f"seeds must be integers, got '{text}'", "--seeds") from None
    known = sorted({s for d in suite.data for s in d.seeds})
    unknown = sorted(seeds - set(known))
    if not seeds or unknown:
        named = ", ".join(map(str, unknown)) if unknown else repr(text)
        raise InputError(
            f"the {suite.name} suite has no seed {named} (it has {', '.join(map(str, known))})",
            "--seeds",
        )
    return seeds
