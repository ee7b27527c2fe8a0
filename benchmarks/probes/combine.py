"""The ensemble's verdict on the cells stored by ``std_cell.py`` (seed 0 unless
``--seed``; full MNIST unless ``--data`` names another of the standard suite's
datasets).

With ``--rule FILE`` the ``combine`` of another version of ``tripwire/scan/ensemble.py``
is used instead of the installed one (the rule before a change):

    PYTHONPATH=src python benchmarks/probes/combine.py
    git show 9dae490:src/tripwire/scan/ensemble.py > /tmp/ensemble_9dae490.py
    PYTHONPATH=src python benchmarks/probes/combine.py --rule /tmp/ensemble_9dae490.py

``--probe-dir`` reads the stored cells from another folder (copies in which one
detector's outputs were recomputed).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.bench.runner import attacked, load_suite_data
from tripwire.detectors import DetectorResult
from tripwire.detectors.input_space import InputSpace, group_spread, other_class_confirmation

sys.path.insert(0, str(Path(__file__).parents[1]))
from ensemble_ranking import stored_results

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_suite

DATA_DIR = "../shared/datasets"


def load_rule(path: Path | None) -> Any:
    if path is None:
        from tripwire.scan.ensemble import combine

        return combine
    spec = importlib.util.spec_from_file_location("ensemble_rule", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ensemble_rule"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.combine


def stored_cell(path: Path, seed: int = 0) -> tuple[Any, dict[str, DetectorResult], InputSpace]:
    """The cell's dataset, its detectors' results and its input space."""
    name, kind, rate, _ = path.stem.split("_")
    suite, spec = standard_suite(name)
    train, _ = load_suite_data(spec, DATA_DIR)
    cell = next(a for a in suite.attacks if a.kind == kind)
    ds, _, _ = attacked(train, cell, float(rate), seed)
    results = stored_results(np.load(path, allow_pickle=False))
    return ds, results, InputSpace(ds.model_input(), random_state=seed)


def stored(path: Path, seed: int = 0) -> tuple[Any, dict[str, DetectorResult], Any]:
    """The cell's dataset, its detectors' results and the input-space confirmation."""
    ds, results, space = stored_cell(path, seed)
    return ds, results, other_class_confirmation(space, ds.y)


def evidence(combine: Any, ds: Any, space: InputSpace, seed: int = 0) -> dict[str, Any]:
    """What ``scan-data`` passes ``combine`` besides the results, as far as that version
    of it takes (a rule from before the spread check takes no ``spread``)."""
    kw: dict[str, Any] = {
        "confirm_other": other_class_confirmation(space, ds.y),
        "labels": ds.y,
    }
    if "spread" in inspect.signature(combine).parameters:
        kw["spread"] = group_spread(space, ds.y, random_state=seed)
    return kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", type=Path, help="another ensemble.py whose combine() to use")
    ap.add_argument(
        "--probe-dir", type=Path, default=Path("runs/probe"), help="where the stored cells are"
    )
    ap.add_argument("--data", default="mnist", help="the dataset whose cells to combine")
    ap.add_argument("--seed", type=int, default=0, help="the cells' seed")
    args = ap.parse_args()
    combine = load_rule(args.rule)
    for path in sorted(args.probe_dir.glob(f"{args.data}_*_{args.seed}.npz")):
        ds, results, space = stored_cell(path, args.seed)
        truth = np.asarray(ds.poisoned) if ds.poisoned is not None else np.zeros(len(ds), bool)
        e = combine(results, len(ds), **evidence(combine, ds, space, args.seed))
        tp = int((e.flags & truth).sum())
        row = {
            "cell": path.stem,
            "flagged": int(e.flags.sum()),
            "precision": round(tp / max(int(e.flags.sum()), 1), 3),
            "recall": round(tp / max(int(truth.sum()), 1), 3),
            "feature-clusters": {
                k: v for k, v in e.families["feature-clusters"].items() if k != "members"
            },
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
