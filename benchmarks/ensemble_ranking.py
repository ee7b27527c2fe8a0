"""How well the ensemble's combined score ranks poisons: the family rule beside a plain max.

For each cell (attack, rate, seed) and architecture: poison bundled MNIST (4,000
training digits), train the reference recipe (``cnn-small``, and ``resnet-mini`` as the
design of another kind), run every data detector as the bench runner does (features,
the scan's two-view probabilities, the model for the behavioural check), and combine
their scores by

- ``family``: :func:`tripwire.scan.ensemble.combine` as shipped (a sample scores at
  least 1 exactly when a family flags it; squashed evidence below 1 elsewhere), given
  what ``scan-data`` gives it (which items look like another class as inputs);
- ``max``: the rule before session 10, kept here only as the baseline: each detector's
  score on the common scale ``(s - median) / (threshold - median)``, maximised.

Reported per cell: AUROC and average precision of each combined score, the best
single detector's AUROC (what a perfect chooser of one detector would get), and the
verdict's flags, precision and recall; also without the input-space confirmation of
feature-cluster flags (``unconfirmed_*``), and without the class-share gate of
feature-cluster flags (``ungated_*``, the rule before session 11), and without the
near-copy check of feature-cluster groups (``unspread_*``, the rule before session
18). The detectors' outputs are cached per cell in ``--cache-dir`` (npz, no pickles), so the
table can be recomputed without retraining; ``--refresh a,b`` runs the named detectors
again on cached cells (after a change to them), and detectors new since a cell was
cached are added to it.

    PYTHONPATH=src python benchmarks/ensemble_ranking.py --cache-dir /tmp/ens-cache \
        --out runs/ensemble_ranking.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CELLS: list[tuple[str, float, dict[str, Any]]] = [
    ("clean", 0.0, {}),
    ("label-flip", 0.05, {}),
    ("label-flip", 0.2, {}),
    ("pair-flip", 0.2, {}),
    ("badnets", 0.05, {}),
    ("blend", 0.05, {}),
    ("sig", 0.05, {}),
    ("wanet", 0.05, {"s": 5.0}),  # the standard suite's strength (tripwire.bench.suites)
    ("label-consistent", 0.05, {}),
    ("badnets", 0.01, {}),
    # The rest of issue #4's clean-label and adaptive kinds (session 15).
    ("adaptive", 0.05, {}),
    ("feature-collision", 0.05, {}),
]


def _cell_data(kind: str, rate: float, params: dict[str, Any], seed: int) -> Any:
    from tripwire.attacks import poison_dataset
    from tripwire.io import load_dataset

    train = load_dataset("bundled:mnist", split="train")
    if kind == "clean":
        return train
    target = None if "flip" in kind else 0
    return poison_dataset(train, kind, rate=rate, target=target, seed=seed, **params)


def _cell_inputs(
    arch: str, kind: str, rate: float, params: dict[str, Any], seed: int, cache: Path
) -> Any:
    """What the bench runner hands the detectors for one cell (the model is cached)."""
    from tripwire.bench.runner import load_suite_data, train_cached
    from tripwire.bench.suites import DataSpec

    spec = DataSpec(name="mnist-5k", spec="bundled:mnist", seeds=(seed,), epochs=5, arch=arch)
    _, test = load_suite_data(spec, None)
    ds = _cell_data(kind, rate, params, seed)
    return ds, detector_input(ds, train_cached(ds, test, spec, seed, cache / "models"), seed)


def detector_input(ds: Any, model: Any, seed: int) -> Any:
    """The bench runner's detector input for a trained model
    (:func:`tripwire.bench.runner.detector_input`, without its timing)."""
    from tripwire.bench.runner import detector_input as runner_input

    return runner_input(ds, model, seed)[0]


def detector_outputs(
    arch: str,
    kind: str,
    rate: float,
    params: dict[str, Any],
    seed: int,
    cache: Path,
    refresh: frozenset[str] = frozenset(),
) -> Path:
    """Run every data detector on one cell; returns the npz holding their outputs.

    A cached cell is reused; the detectors named in ``refresh`` (changed since it was
    cached) are run again on it, and detectors new since then are added.
    """
    from tripwire.detectors import Need, available

    f = cache / f"{arch}_{kind}_{rate}_{seed}.npz"
    have = frozenset({Need.FEATURES, Need.LABELS, Need.PROBS, Need.DATA, Need.MODEL})
    detectors = available(satisfiable_with=have)
    names = [cls.name for cls in detectors]
    arrays: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    if f.exists():
        z = np.load(f, allow_pickle=False)
        thresholds = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
        todo = [n for n in names if n in refresh or n not in thresholds]
        if not todo:
            return f
    else:
        todo = names
    ds, inputs = _cell_inputs(arch, kind, rate, params, seed, cache)
    arrays["truth"] = ds.poisoned if ds.poisoned is not None else np.zeros(len(ds), bool)
    arrays["y"] = ds.y
    for cls in detectors:
        if cls.name not in todo:
            continue
        r = cls().detect(inputs)
        arrays[f"s__{cls.name}"] = np.asarray(r.scores, float)
        arrays[f"f__{cls.name}"] = np.asarray(r.flags, bool)
        thresholds[cls.name] = float(r.threshold)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, meta=np.array(json.dumps(thresholds)), **arrays)
    return f


def stored_results(z: Any) -> dict[str, Any]:
    """The detector results held in a cell's npz (``s__``/``f__`` arrays, thresholds in
    ``meta``), as :class:`~tripwire.detectors.DetectorResult` for the ensemble."""
    from tripwire.detectors import Calibration, DetectorResult, Threat

    return {
        d: DetectorResult(
            detector=d,
            threat=Threat.BACKDOOR,
            scores=z[f"s__{d}"],
            threshold=t,
            flags=z[f"f__{d}"],
            calibration=Calibration(method="fixed", threshold=t),
        )
        for d, t in json.loads(str(z["meta"])).items()
    }


def rankings(path: Path, ds: Any, seed: int) -> dict[str, Any]:
    """AUROC / AP of both combined scores and of the best single detector."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from tripwire.detectors.input_space import (
        InputSpace,
        group_spread,
        other_class_confirmation,
    )
    from tripwire.scan.ensemble import combine, common_scale

    z = np.load(path, allow_pickle=False)
    truth = z["truth"]
    if not np.array_equal(z["y"], ds.y):
        raise ValueError(f"{path} holds another dataset than this cell's")
    # What scan-data hands the ensemble about the inputs.
    space = InputSpace(ds.model_input(), random_state=seed)
    confirm = other_class_confirmation(space, ds.y)
    spread = group_spread(space, ds.y, random_state=seed)
    results = stored_results(z)
    family = combine(results, len(truth), confirm_other=confirm, labels=ds.y, spread=spread)
    # The same verdict without the near-copy check of feature-cluster groups (session 18).
    unspread = combine(results, len(truth), confirm_other=confirm, labels=ds.y)
    plain_max = np.max(np.vstack([common_scale(r) for r in results.values()]), axis=0)
    # The same verdict without the input-space confirmation of feature-cluster flags.
    unconfirmed = combine(results, len(truth), labels=ds.y)
    # ... and without the class-share gate of feature-cluster flags (before session 11).
    ungated = combine(results, len(truth), confirm_other=confirm)
    out: dict[str, Any] = {
        "n_poisoned": int(truth.sum()),
        "flagged": int(family.flags.sum()),
        "unconfirmed_flagged": int(unconfirmed.flags.sum()),
        "ungated_flagged": int(ungated.flags.sum()),
        "unspread_flagged": int(unspread.flags.sum()),
    }
    if not truth.any():
        out["flag_rate"] = round(float(family.flags.mean()), 5)
        out["unconfirmed_flag_rate"] = round(float(unconfirmed.flags.mean()), 5)
        out["ungated_flag_rate"] = round(float(ungated.flags.mean()), 5)
        out["unspread_flag_rate"] = round(float(unspread.flags.mean()), 5)
        return out
    for name, score in (("family", family.scores), ("max", plain_max)):
        out[f"{name}_auroc"] = round(float(roc_auc_score(truth, score)), 4)
        out[f"{name}_ap"] = round(float(average_precision_score(truth, score)), 4)
    per = {d: roc_auc_score(truth, r.scores) for d, r in results.items()}
    best = max(per, key=lambda d: per[d])
    out["best_detector"], out["best_auroc"] = best, round(float(per[best]), 4)
    tp = int((family.flags & truth).sum())
    out["family_precision"] = round(tp / max(int(family.flags.sum()), 1), 4)
    out["family_recall"] = round(tp / int(truth.sum()), 4)
    tp_u = int((unconfirmed.flags & truth).sum())
    out["unconfirmed_precision"] = round(tp_u / max(int(unconfirmed.flags.sum()), 1), 4)
    out["unconfirmed_recall"] = round(tp_u / int(truth.sum()), 4)
    tp_g = int((ungated.flags & truth).sum())
    out["ungated_precision"] = round(tp_g / max(int(ungated.flags.sum()), 1), 4)
    out["ungated_recall"] = round(tp_g / int(truth.sum()), 4)
    tp_s = int((unspread.flags & truth).sum())
    out["unspread_precision"] = round(tp_s / max(int(unspread.flags.sum()), 1), 4)
    out["unspread_recall"] = round(tp_s / int(truth.sum()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/ens-cache"))
    ap.add_argument("--out", type=Path, default=Path("runs/ensemble_ranking.jsonl"))
    ap.add_argument("--archs", default="cnn-small,resnet-mini")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument(
        "--cells", help="only these cells, as KIND:RATE[,KIND:RATE...] (default: all of CELLS)"
    )
    ap.add_argument(
        "--refresh", default="", help="detectors to run again on cached cells (changed since)"
    )
    args = ap.parse_args()
    chosen = None if not args.cells else {tuple(c.split(":")) for c in args.cells.split(",")}
    refresh = frozenset(d for d in args.refresh.split(",") if d)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in args.archs.split(","):
        for kind, rate, params in CELLS:
            if chosen is not None and (kind, str(rate)) not in chosen:
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                f = detector_outputs(arch, kind, rate, params, seed, args.cache_dir, refresh)
                ds = _cell_data(kind, rate, params, seed)
                row = {
                    "arch": arch,
                    "attack": kind,
                    "rate": rate,
                    "seed": seed,
                    **rankings(f, ds, seed),
                }
                rows.append(row)
                print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
