"""Probe: what a training run's own dynamics say about each training item.

Trains the suite's recipe on one cell's attacked training set with every item's margin
recorded in every epoch (``train_model(record_margins=True)``) and ranks the items by
candidate scores against the cell's ground truth:

- ``aum``: minus the area under the margin (Pleiss et al., NeurIPS 2020): a flipped label
  is fought by its look-alikes for most of training before it is memorised;
- ``early``: the margin over the first quarter of the epochs, robust-z within its class
  (anti-backdoor learning's observation: a trigger is learnt faster than any natural
  feature).

Prints one JSON line (AUROC and average precision of each score, flags of the robust
cut, seconds) and stores the margins in ``--save`` when given.

    PYTHONPATH=src python benchmarks/probes/dynamics.py standard cifar10-10k label-flip 0.05 0
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from tripwire.bench.runner import attacked, load_suite_data
from tripwire.bench.suites import get_suite
from tripwire.models.train import TrainConfig, train_model


def robust_z_within(v: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v, dtype=np.float64)
    for c in np.unique(y):
        m = y == c
        med = np.median(v[m])
        mad = 1.4826 * np.median(np.abs(v[m] - med)) + 1e-9
        out[m] = (v[m] - med) / mad
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("data")
    ap.add_argument("kind")
    ap.add_argument("rate", type=float)
    ap.add_argument("seed", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--arch", default=None)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--save")
    a = ap.parse_args()
    torch.set_num_threads(2)
    suite = get_suite(a.suite)
    spec = next(d for d in suite.data if d.name == a.data)
    if a.arch:
        spec = replace(spec, arch=a.arch)
    cell = next(c for c in suite.attacks_for(spec) if c.kind == a.kind)
    train, test = load_suite_data(spec, a.data_dir)
    ds, truth, _ = attacked(train, cell, a.rate, a.seed)
    t0 = time.perf_counter()
    res = train_model(
        ds,
        TrainConfig(arch=spec.arch, epochs=a.epochs or spec.epochs, seed=a.seed),
        test=test,
        show_progress=False,
        record_margins=True,
    )
    secs = time.perf_counter() - t0
    m = np.asarray(res.margins, dtype=np.float64)
    e = m.shape[0]
    scores = {
        "aum": -m.mean(0),
        "aum_first_half": -m[: max(1, e // 2)].mean(0),
        "last": -m[-1],
        "early": robust_z_within(m[: max(1, e // 4)].mean(0), ds.y),
    }
    out = {
        "cell": [a.data, a.kind, a.rate, a.seed],
        "arch": res.arch,
        "epochs": e,
        "accuracy": round(res.accuracy, 4),
        "train_s": round(secs, 1),
        "n_pos": int(truth.sum()),
    }
    if truth.any():
        for k, v in scores.items():
            out[k] = {
                "auroc": round(float(roc_auc_score(truth, v)), 4),
                "ap": round(float(average_precision_score(truth, v)), 4),
            }
        # AUM's own cut: items whose margin area is negative (another class won on average).
        flag = m.mean(0) < 0
        tp = int((flag & truth).sum())
        out["aum_negative"] = {"flags": int(flag.sum()), "tp": tp}
    else:
        out["aum_negative"] = {"flags": int((m.mean(0) < 0).sum())}
    print(json.dumps(out), flush=True)
    if a.save:
        np.savez_compressed(a.save, margins=m.astype(np.float32), truth=truth, y=ds.y)


if __name__ == "__main__":
    main()
