"""One standard-suite cell as the probes load it: data, attack, the suite's cached model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.bench.runner import attacked, load_suite_data, train_cached
from tripwire.bench.suites import DataSpec, Suite, get_suite, with_arch

DATA_DIR = "../shared/datasets"
CACHE = Path("runs/std-cache")


def standard_suite(name: str) -> tuple[Suite, DataSpec]:
    """The standard suite and its dataset ``name``; ``<name>@<arch>`` names that dataset
    with another architecture's models, as ``tripwire bench --arch`` runs it."""
    suite = get_suite("standard")
    if "@" in name:
        suite = with_arch(suite, name.split("@", 1)[1])
    spec = next((d for d in suite.data if d.name == name), None)
    if spec is None:
        raise SystemExit(f"{name}: not a dataset of the standard suite")
    return suite, spec


def standard_data(
    name: str, kind: str, rate: float, seed: int
) -> tuple[DataSpec, Any, np.ndarray, Any]:
    """The standard suite's dataset ``name`` attacked by ``kind`` at ``rate`` (seed
    ``seed``): its spec, the attacked training set, the poisoned mask and the test set."""
    suite, spec = standard_suite(name)
    spec = replace(spec, spec=spec.spec.format(data_dir=DATA_DIR))
    cell = next(a for a in suite.attacks if a.kind == kind)
    train, test = load_suite_data(spec, DATA_DIR)
    ds, truth, _ = attacked(train, cell, rate, seed)
    return spec, ds, truth, test


def standard_cell(
    name: str, kind: str, rate: float, seed: int
) -> tuple[DataSpec, Any, np.ndarray, Any]:
    """:func:`standard_data`'s spec, attacked training set and poisoned mask, and the
    model the suite trained on it (from ``runs/std-cache``, trained there if missing)."""
    spec, ds, truth, test = standard_data(name, kind, rate, seed)
    return spec, ds, truth, train_cached(ds, test, spec, seed, CACHE)


def cell_results(cell: str) -> tuple[Any, np.ndarray, Any, dict[str, Any]]:
    """One cell named ``data:attack:rate:seed`` as ``tripwire bench`` scans it: the
    attacked training set, the poisoned mask (boolean), the detectors' inputs (the
    suite model's features, input space and model) and every detector's result."""
    from tripwire.bench.runner import detector_input, run_detectors

    name, kind, rate, seed = cell.split(":")
    _, ds, truth, model = standard_cell(name, kind, float(rate), int(seed))
    inputs, _ = detector_input(ds, model, int(seed))
    ours, _ = run_detectors(inputs)
    return ds, np.asarray(truth, dtype=bool), inputs, ours
