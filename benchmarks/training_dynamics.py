"""The training-margin detector (area under the margin) on the standard suite's cells.

For each cell: the suite's attacked training set and cached model (``runs/std-cache``,
trained there when missing), one more training run of the suite's recipe on the same
data with every item's margin recorded and 1% of the labels planted as calibrators
(``record_dynamics``; saved to and reused from ``--margins-dir``), then, side by side
in the same run:

- ``training-margin`` alone (its robust cut);
- the scan's ensemble verdict without and with the training run's margins
  (``scan_data`` on the suite model's features, what ``scan-data --model`` and
  ``scan-data --model --dynamics`` give);
- cleanlab's ``find_label_issues`` on the same out-of-sample probabilities.

One JSON line per cell; errors (1 - F1) against cleanlab's as the ratio issue #4 sets
its label-flip bar on (at most 0.7x). ``--dump DIR`` also saves every detector's
scores, thresholds and flags per cell (``DIR/<cell>.npz``) for analyses of the ranking.

    PYTHONPATH=src python benchmarks/training_dynamics.py \\
        --cells cifar10-10k:label-flip:0.05:0 cifar10-10k:clean:0.0:0 \\
        --margins-dir runs/dynamics --out runs/training_dynamics.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from tripwire.bench.metrics import flag_metrics
from tripwire.bench.runner import detector_input
from tripwire.detectors.poisoning.dynamics import Dynamics, record_dynamics
from tripwire.scan.data import DataScanResult, scan_data

sys.path.insert(0, str(Path(__file__).parent / "probes"))
from cells import standard_cell  # type: ignore[import-not-found]


def summary(truth: np.ndarray, scores: np.ndarray | None, flags: np.ndarray) -> dict[str, Any]:
    m = flag_metrics(truth, flags)
    out = {k: m[k] for k in ("n_flagged", "precision", "recall", "f1")}
    if scores is not None and truth.any() and not truth.all():
        out["auroc"] = round(float(roc_auc_score(truth, scores)), 4)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def save_scores(
    path: Path,
    truth: np.ndarray,
    labels: np.ndarray,
    dyn: Dynamics,
    probs: np.ndarray,
    before: DataScanResult,
    after: DataScanResult,
) -> None:
    """Every detector's scores, threshold and flags, and the families' flags, of the
    scan with ``--dynamics`` (``after``); the verdict's scores of both scans."""
    arrays = {f"score:{k}": r.scores for k, r in after.detectors.items()}
    arrays |= {f"flags:{k}": r.flags for k, r in after.detectors.items()}
    arrays |= {f"threshold:{k}": np.float64(r.threshold) for k, r in after.detectors.items()}
    if after.ensemble is not None:
        arrays |= {f"family:{k}": v for k, v in after.ensemble.family_flags.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        truth=truth,
        labels=np.asarray(labels),
        calibrators=dyn.calibrators,
        probs=probs,
        ensemble=before.scores,
        ensemble_dynamics=after.scores,
        flags_dynamics=after.flags,
        **arrays,
    )


def run_cell(
    name: str, kind: str, rate: float, seed: int, margins_dir: Path, dump: Path | None = None
) -> dict[str, Any]:
    spec, ds, truth, model = standard_cell(name, kind, rate, seed)
    truth = np.asarray(truth, dtype=bool)
    path = margins_dir / f"{name}_{kind}_{rate}_{seed}.npz"
    t0 = time.perf_counter()
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            dyn = Dynamics(margins=z["margins"], calibrators=z["calibrators"])
        train_s = None
    else:
        dyn = record_dynamics(ds, arch=spec.arch, epochs=spec.epochs, seed=seed)
        train_s = round(time.perf_counter() - t0, 1)
        margins_dir.mkdir(parents=True, exist_ok=True)
        np.savez(path, margins=dyn.margins, calibrators=dyn.calibrators)
    margins = dyn.margins
    inputs, forward_s = detector_input(ds, model, seed)
    feats, probs = inputs.features, inputs.probs
    if feats is None or probs is None:  # detector_input makes both
        raise RuntimeError("incomplete detector input")
    row: dict[str, Any] = {
        "cell": [name, kind, rate, seed],
        "n": len(ds),
        "n_positive": int(truth.sum()),
        "epochs": int(margins.shape[0]),
        "calibrators": int(dyn.calibrators.size),
        "dynamics_train_s": train_s,
        "forward_s": round(forward_s, 2),
    }
    net = inputs.model
    before = scan_data(ds, feats, seed=seed, model=net)
    after = scan_data(ds, feats, seed=seed, model=net, margins=margins, calibrators=dyn.calibrators)
    tm = after.detectors["training-margin"]
    row["training_margin"] = summary(truth, tm.scores, tm.flags)
    row["training_margin_cut"] = tm.calibration.to_dict()
    if after.ensemble is not None:
        row["labels_family"] = after.ensemble.families.get("labels")
        fam = after.ensemble.family_flags.get("labels")
        if fam is not None:
            row["labels_family_flags"] = summary(truth, None, fam)
    row["ensemble"] = summary(truth, before.scores, before.flags)
    row["ensemble_dynamics"] = summary(truth, after.scores, after.flags)
    if dump is not None:  # every score, for analyses of the ranking after the run
        save_scores(dump / path.name, truth, ds.y, dyn, probs, before, after)
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:  # the baselines extra is not installed
        return row
    cl = np.asarray(find_label_issues(ds.y, probs), dtype=bool)
    row["cleanlab"] = summary(truth, 1.0 - probs[np.arange(len(ds)), ds.y], cl)
    if truth.any():
        err_cl = 1.0 - (row["cleanlab"]["f1"] or 0.0)
        for key in ("training_margin", "ensemble", "ensemble_dynamics"):
            err = 1.0 - (row[key]["f1"] or 0.0)
            row[key]["errors_vs_cleanlab"] = round(err / max(err_cl, 1e-9), 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", required=True, metavar="DATA:KIND:RATE:SEED")
    ap.add_argument("--margins-dir", type=Path, default=Path("runs/dynamics"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dump", type=Path, help="save every detector's scores here, per cell")
    args = ap.parse_args()
    for cell in args.cells:
        name, kind, rate, seed = cell.split(":")
        row = run_cell(name, kind, float(rate), int(seed), args.margins_dir, args.dump)
        line = json.dumps(row)
        print(line, flush=True)
        with args.out.open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
