"""Label flips: tripwire's scan beside cleanlab's ``find_label_issues``, side by side.

For each cell (attack, rate), seed and architecture: flip labels of bundled MNIST (4,000
training digits), train the reference recipe on the flipped data (``cnn-small``, the
default, and ``resnet-mini``, a residual design), take its penultimate features, and
score the same samples with

- ``tripwire:scan``: ``scan_data`` without the model (what ``scan-data --features``
  reports: every feature and label detector, the ensemble's verdict);
- ``tripwire:labels``: the label family alone (``confident-learning`` and
  ``knn-label``, the ensemble's quorum);
- ``cleanlab(scan probs)``: ``find_label_issues`` on the probabilities the scan's label
  checks read (the feature proxy pooled with input-space neighbours,
  :func:`tripwire.detectors.oos.label_probabilities`): the issue's comparison;
- ``cleanlab(feature probs)``: ``find_label_issues`` on the feature proxy's
  probabilities alone (what the scan read before session 9).

Reported: precision, recall, F1, flag rate, AUROC of the score, and the error ratio
``(1 - F1) / (1 - F1 of cleanlab(scan probs))`` (issue #4 asks for at most 0.7).
Nothing is tuned here; cells already in ``--out`` are skipped (resumable).

    PYTHONPATH=src python benchmarks/label_noise.py --out runs/label_noise.jsonl
    PYTHONPATH=src python benchmarks/label_noise.py --cells pair-flip:0.045 --out ...
    PYTHONPATH=src python benchmarks/label_noise.py --data ../shared/datasets/fashion_mnist.npz \
        --subset 10000 --pairs '6>0:0.045,2>4:0.045,7>5:0.03' --out ...
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
    ("label-flip", 0.1, {}),
    ("label-flip", 0.2, {}),
    ("pair-flip", 0.1, {}),
    ("pair-flip", 0.2, {}),
    # Flips concentrated in one class: 180 of the ~400 ones (45%) labelled 7, where
    # cleanlab's assumptions break (issue #4's bar: AUROC >= 0.95, recall >= 0.9).
    ("pair-flip", 0.045, {"source": 1, "target": 7}),
    # The same bar on other pairs, so that no rule is fitted to the ones and sevens:
    # 4 -> 9 at 45% (look-alikes) and 3 -> 8 at 30% of the source class.
    ("pair-flip", 0.045, {"source": 4, "target": 9}),
    ("pair-flip", 0.03, {"source": 3, "target": 8}),
]


def _metrics(flags: np.ndarray, truth: np.ndarray, score: np.ndarray | None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    flags = np.asarray(flags, bool)
    tp = int((flags & truth).sum())
    out: dict[str, Any] = {"flagged": int(flags.sum()), "flag_rate": round(float(flags.mean()), 5)}
    if truth.any():
        p = tp / max(int(flags.sum()), 1)
        r = tp / int(truth.sum())
        out.update(
            precision=round(p, 4),
            recall=round(r, 4),
            f1=round(2 * p * r / (p + r), 4) if p + r > 0 else 0.0,
        )
        if score is not None:
            out["auroc"] = round(float(roc_auc_score(truth, score)), 4)
    return out


def load_data(data: str, subset: int) -> tuple[Any, Any]:
    """Train and test splits of ``data`` (``bundled:mnist`` or an ``.npz`` of the
    shared datasets); with ``subset``, that many training and a fifth as many test
    samples, drawn at random per class in equal numbers (seeded, the same every run)."""
    from tripwire.io import load_dataset

    train = load_dataset(data, split="train", show_progress=False)
    test = load_dataset(data, split="test", show_progress=False)
    if subset:
        rng = np.random.default_rng(12345)

        def take(ds: Any, n: int) -> Any:
            per = n // ds.n_classes
            idx = [
                rng.choice(np.flatnonzero(ds.y == c), per, replace=False)
                for c in range(ds.n_classes)
            ]
            return ds.subset(np.sort(np.concatenate(idx)))

        train, test = take(train, subset), take(test, max(subset // 5, test.n_classes))
    return train, test


def run_cell(
    kind: str,
    rate: float,
    seed: int,
    arch: str,
    epochs: int,
    params: dict[str, Any],
    dump: Path | None = None,
    data: str = "bundled:mnist",
    subset: int = 0,
) -> dict[str, Any]:
    import torch
    from cleanlab.filter import find_label_issues

    from tripwire.attacks import poison_dataset
    from tripwire.detectors.oos import label_probabilities, oos_probabilities
    from tripwire.models.train import TrainConfig, train_model
    from tripwire.scan.data import scan_data

    train, test = load_data(data, subset)
    ds = train if kind == "clean" else poison_dataset(train, kind, rate=rate, seed=seed, **params)
    truth = np.zeros(len(ds), bool) if ds.poisoned is None else ds.poisoned
    t0 = time.perf_counter()
    res = train_model(
        ds, TrainConfig(arch=arch, epochs=epochs, seed=seed), test=test, show_progress=False
    )
    train_s = time.perf_counter() - t0
    net = res.model.eval()
    x = ds.model_input()
    with torch.inference_mode():
        feats = np.concatenate(
            [net.features(torch.from_numpy(x[s : s + 512])).numpy() for s in range(0, len(x), 512)]
        ).astype(np.float64)
    rows = np.arange(len(ds))
    p_feat = oos_probabilities(feats, ds.y, n_classes=ds.n_classes, random_state=seed)
    p_scan, _ = label_probabilities(
        feats, ds.y, images=x, n_classes=ds.n_classes, random_state=seed
    )
    if dump is not None:
        # What the label checks read, for offline study of the rules (no pickles).
        name = kind + (f"-{params['source']}-{params['target']}" if params else "")
        dump.mkdir(parents=True, exist_ok=True)
        np.savez(
            dump / f"{arch}_{name}_{rate}_{seed}.npz",
            features=feats.astype(np.float32),
            probs=p_scan,
            y=ds.y,
            truth=truth,
        )
    t1 = time.perf_counter()
    scan = scan_data(ds, feats, seed=seed)
    scan_s = time.perf_counter() - t1
    labels = scan_data(ds, feats, detectors=["confident-learning", "knn-label"], seed=seed)
    out = {
        "data": data + (f"[{subset}]" if subset else ""),
        "arch": arch,
        "attack": kind + (f"({params['source']}->{params['target']})" if params else ""),
        "rate": rate,
        "seed": seed,
        "clean_accuracy": round(res.accuracy, 4),
        "train_s": round(train_s, 1),
        "scan_s": round(scan_s, 1),
        "rows": {
            "tripwire:scan": _metrics(scan.flags, truth, scan.scores),
            "tripwire:labels": _metrics(labels.flags, truth, labels.scores),
            "cleanlab(scan probs)": _metrics(
                find_label_issues(ds.y, p_scan), truth, 1 - p_scan[rows, ds.y]
            ),
            "cleanlab(feature probs)": _metrics(
                find_label_issues(ds.y, p_feat), truth, 1 - p_feat[rows, ds.y]
            ),
        },
        "scan_flags_by_detector": {k: len(v.flagged) for k, v in scan.detectors.items()},
    }
    ref = out["rows"]["cleanlab(scan probs)"].get("f1")
    if ref is not None:
        for row in out["rows"].values():
            if "f1" in row and ref < 1.0:
                row["error_ratio"] = round((1 - row["f1"]) / (1 - ref), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/label_noise.jsonl")
    ap.add_argument("--archs", default="cnn-small,resnet-mini")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument(
        "--cells", default="", help="only these cells, e.g. 'pair-flip:0.045,label-flip:0.05'"
    )
    ap.add_argument("--dump", type=Path, help="store each cell's features and probabilities")
    ap.add_argument("--data", default="bundled:mnist", help="bundled:mnist or an .npz path")
    ap.add_argument("--subset", type=int, default=0, help="training samples to draw (0: all)")
    ap.add_argument(
        "--pairs",
        default="",
        help="concentrated flips instead of the MNIST ones, e.g. '6>0:0.045,7>5:0.03' "
        "(source>target:rate of the whole set)",
    )
    args = ap.parse_args()
    cells = list(CELLS)
    if args.pairs:
        cells = [c for c in cells if not c[2]]
        for item in args.pairs.split(","):
            pair, rate = item.split(":")
            src, tgt = pair.split(">")
            cells.append(("pair-flip", float(rate), {"source": int(src), "target": int(tgt)}))
    only = {tuple(c.split(":")) for c in args.cells.split(",") if c}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["arch"], r["attack"], r["rate"], r["seed"]))
    for arch in args.archs.split(","):
        for kind, rate, params in cells:
            if only and (kind, f"{rate:g}") not in only:
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                name = kind + (f"({params['source']}->{params['target']})" if params else "")
                if (arch, name, rate, seed) in done:
                    continue
                row = run_cell(
                    kind, rate, seed, arch, args.epochs, params, args.dump, args.data, args.subset
                )
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                brief = {k: (v.get("f1"), v["flag_rate"]) for k, v in row["rows"].items()}
                print(arch, kind, rate, seed, brief, flush=True)


if __name__ == "__main__":
    main()
