"""One cell of a benchmark suite, timed: each detector's cost beside one forward pass.

Runs :func:`tripwire.bench.runner.run_poison_cell` for one dataset, attack and rate of
a suite (seed 0, no retraining) and prints each row's AUROC, F1, seconds and seconds
per forward pass over the training set. Models come from (and go to) ``--cache-dir``,
so a second run times the detectors alone.

    PYTHONPATH=src python benchmarks/suite_cell.py mnist badnets 0.01 \
        --data-dir ../shared/datasets --cache-dir runs/std-cache
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    from tripwire.bench.runner import load_suite_data, run_poison_cell
    from tripwire.bench.suites import get_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the suite's dataset name (mnist, cifar10-10k, gtsrb)")
    ap.add_argument("attack")
    ap.add_argument("rate", type=float)
    ap.add_argument("--suite", default="standard")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/std-cache"))
    args = ap.parse_args()
    suite = get_suite(args.suite)
    spec = next(s for s in suite.data if s.name == args.data)
    attack = next(a for a in suite.attacks_for(spec) if a.kind == args.attack)
    t0 = time.perf_counter()
    train, test = load_suite_data(spec, args.data_dir)
    rows, _ = run_poison_cell(
        train, test, spec, attack, args.rate, 0, cache_dir=args.cache_dir, log=print
    )
    print("| detector | AUROC | F1 | seconds | x forward pass |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = (r["detector"], r["auroc"], r["f1"], r["time_s"], r["time_vs_forward"])
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"forward pass {rows[0]['forward_s']} s; cell total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
