"""Probe: does a classifier of a flagged group against the rest of its class, on an
inner layer's activations, find the group's members the scan left unflagged?

The dirty-label scan flags most of a backdoor's poisons by their penultimate features
(activation clustering); a few (WaNet on CIFAR-10: 32 of 500) sit in the clean cluster
there. Earlier layers carry the trigger's own signature (the warp, the pattern) before
the network folds it into the class. Per split: channel-pooled activations (mean and
max per channel) of the class's training items, a cross-validated logistic regression
of flagged against unflagged, and each unflagged item's out-of-fold probability. Prints,
per split, where the unflagged poisons rank among the unflagged items of the class.

    PYTHONPATH=src:benchmarks/probes python benchmarks/probes/group_refine.py \
        cifar10-10k wanet 0.05 0 runs/s34/dump/cifar10-10k_wanet_0.05_0.npz
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from cells import standard_cell  # type: ignore[import-not-found]
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from stimulation import split_model  # type: ignore[import-not-found]


def pooled(inner, x: np.ndarray, bs: int = 256) -> np.ndarray:
    """Mean and max of each channel of ``inner(x)`` (the raw input when ``inner`` is
    None), batched."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            a = torch.from_numpy(np.ascontiguousarray(x[i : i + bs], dtype=np.float32))
            if inner is not None:
                a = inner(a)
            out.append(torch.cat([a.mean((2, 3)), a.amax((2, 3))], 1).numpy())
    return np.concatenate(out)


def out_of_fold(f: np.ndarray, pos: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each item's out-of-fold probability of belonging to the flagged group."""
    p = np.zeros(len(f))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(f, pos):
        sc = StandardScaler().fit(f[tr])
        clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
        clf.fit(sc.transform(f[tr]), pos[tr])
        p[te] = clf.predict_proba(sc.transform(f[te]))[:, 1]
    return p


def main() -> None:
    name, kind, rate, seed, dump = sys.argv[1:6]
    torch.set_num_threads(2)
    _, ds, truth, model = standard_cell(name, kind, float(rate), int(seed))
    truth = np.asarray(truth, dtype=bool)
    z = np.load(dump)
    flags = z["flags_dynamics"].astype(bool)
    labels = np.asarray(ds.y)
    cls = int(np.bincount(labels[flags], minlength=int(labels.max()) + 1).argmax())
    members = np.where(labels == cls)[0]
    pos = flags[members]
    net = model.module
    net.eval()
    x = ds.model_input(members)
    _, _, n_layers = split_model(net, 0)
    feats = {}
    for split in range(n_layers + 1):
        inner = split_model(net, split)[0] if split else None
        feats[split] = pooled(inner, x)
    feats["late"] = np.concatenate([feats[s] for s in range(n_layers // 2, n_layers + 1)], 1)
    feats["features"] = np.asarray(model.features(x), dtype=np.float64)
    for split, f in feats.items():
        p = out_of_fold(f, pos.astype(int), int(seed))
        rest = ~pos
        pr, tr = p[rest], truth[members][rest]
        order = np.argsort(-pr)
        row = {
            "split": split,
            "dims": f.shape[1],
            "class": cls,
            "flagged": int(pos.sum()),
            "unflagged": int(rest.sum()),
            "unflagged_poisons": int(tr.sum()),
            "auroc_unflagged": (
                round(float(roc_auc_score(tr, pr)), 3) if 0 < tr.sum() < len(tr) else None
            ),
            "poisons_in_top": {k: int(tr[order[:k]].sum()) for k in (10, 20, 40, 80)},
            "flagged_oof_median": round(float(np.median(p[pos])), 3),
            "above (items, poisons)": {
                c: [int((pr > c).sum()), int((pr[tr] > c).sum())] for c in (0.5, 0.7, 0.9)
            },
            "flagged below 0.5 (items, clean)": [
                int((p[pos] < 0.5).sum()),
                int((p[pos] < 0.5).sum() - truth[members][pos][p[pos] < 0.5].sum()),
            ],
            "flagged clean": int((~truth[members][pos]).sum()),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
