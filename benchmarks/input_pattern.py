"""``input-pattern`` on clean-label backdoors, dirty-label ones and clean data, per dataset.

The detector reads the inputs and labels only (no model), so each cell is quick: poison
the training set (target class 0, seed 0), run ``InputPatternDetector`` and score its
flags against the ground truth. Clean cells are the false-alarm side; dirty-label cells
show where the method does not apply (it is not tuned on them). ``--art`` adds a
clean-label backdoor made by ART (``PoisoningAttackCleanLabelBackdoor``: PGD against a
trained network, then ART's ``add_pattern_bd`` trigger; labels kept), an attack
tripwire did not make, on a 10,000-image MNIST subset.

    PYTHONPATH=src python benchmarks/input_pattern.py --data-dir ../shared/datasets \
        --art --out runs/input_pattern.jsonl
    PYTHONPATH=src python benchmarks/input_pattern.py --data-dir ../shared/datasets \
        --only gtsrb_subset.npz --out runs/input_pattern_gtsrb.jsonl

Prints a markdown table (the one in docs/benchmarks.md) and writes one JSON row per
cell to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from tripwire.attacks import poison_dataset
from tripwire.detectors import DetectorInput
from tripwire.detectors.poisoning.input_pattern import InputPatternDetector
from tripwire.io import Dataset, load_dataset

#: dataset file (or bundled name), training subset, cells as (kind, rate).
DATASETS: list[tuple[str, int | None, list[tuple[str, float]]]] = [
    (
        "mnist.npz",
        None,
        [
            ("clean", 0.0),
            ("sig", 0.01),
            ("sig", 0.05),
            ("label-consistent", 0.01),
            ("label-consistent", 0.05),
            ("badnets", 0.05),
            ("blend", 0.05),
            ("wanet", 0.05),
            ("label-flip", 0.05),
        ],
    ),
    ("fashion_mnist.npz", None, [("clean", 0.0), ("sig", 0.01), ("label-consistent", 0.01)]),
    (
        "cifar10-jpeg.tar.gz",
        10000,
        [
            ("clean", 0.0),
            ("sig", 0.01),
            ("sig", 0.05),
            ("label-consistent", 0.01),
            ("label-consistent", 0.05),
            ("badnets", 0.05),
            ("blend", 0.05),
            ("wanet", 0.05),
        ],
    ),
    (
        # Class 0 of the GTSRB subset has 210 images: 1% of the set is 59% of it.
        "gtsrb_subset.npz",
        None,
        [
            ("clean", 0.0),
            ("sig", 0.005),
            ("sig", 0.01),
            ("label-consistent", 0.005),
            ("label-consistent", 0.01),
            ("badnets", 0.05),
            ("blend", 0.05),
        ],
    ),
]
BUNDLED = [
    ("bundled:mnist", None, [("clean", 0.0), ("sig", 0.05), ("label-consistent", 0.01)]),
    ("bundled:digits", None, [("clean", 0.0), ("sig", 0.05), ("label-consistent", 0.05)]),
]


def measure(name: str, ds: Dataset, kind: str, rate: float, *, made_by: str) -> dict[str, Any]:
    """Run the detector on one attacked set and score it."""
    truth = np.zeros(len(ds), bool) if ds.poisoned is None else np.asarray(ds.poisoned)
    t0 = time.perf_counter()
    res = InputPatternDetector().detect(DetectorInput(labels=ds.y, data=ds))
    secs = time.perf_counter() - t0
    tp = int((res.flags & truth).sum())
    confirmed = [c for c in res.evidence["classes"] if c["confirmed"]]
    return {
        "data": name,
        "attack": kind,
        "made_by": made_by,
        "rate": rate,
        "n": len(ds),
        "poisons": int(truth.sum()),
        "flagged": int(res.flags.sum()),
        "precision": round(tp / max(int(res.flags.sum()), 1), 4) if res.flags.any() else None,
        "recall": round(tp / int(truth.sum()), 4) if truth.any() else None,
        "auroc": round(float(roc_auc_score(truth, res.scores)), 4) if truth.any() else None,
        "seconds": round(secs, 1),
        "confirmed": confirmed,
    }


def art_clean_label(train: Dataset, rate: float, seed: int = 0) -> Dataset:
    """ART's clean-label backdoor on ``train`` (target class 0), labels kept."""
    import torch
    from art.attacks.poisoning import PoisoningAttackBackdoor, PoisoningAttackCleanLabelBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd
    from art.estimators.classification import PyTorchClassifier

    from tripwire.io import make_dataset
    from tripwire.models.train import TrainConfig, train_model

    net = train_model(train, TrainConfig(arch="cnn-small", epochs=2, seed=seed)).model.eval()
    clf = PyTorchClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=train.input_shape,
        nb_classes=train.n_classes,
        clip_values=(0.0, 1.0),
    )
    backdoor = PoisoningAttackBackdoor(
        lambda x: add_pattern_bd(x, distance=2, pixel_value=1, channels_first=True)
    )
    target = np.zeros(train.n_classes, dtype=np.float32)
    target[0] = 1.0
    n_target = int((train.y == 0).sum())
    attack = PoisoningAttackCleanLabelBackdoor(
        backdoor=backdoor,
        proxy_classifier=clf,
        target=target,
        pp_poison=min(1.0, rate * len(train) / n_target),
        norm=np.inf,
        eps=16 / 255,
        eps_step=2 / 255,
        max_iter=10,
        num_random_init=0,
    )
    x = train.model_input()
    onehot = np.eye(train.n_classes, dtype=np.float32)[train.y]
    x_p, _ = attack.poison(x, onehot)
    changed = np.abs(x_p - x).reshape(len(x), -1).max(axis=1) > 1e-6
    return make_dataset(x_p, train.y, path=f"{train.path} (ART clean-label)", poisoned=changed)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| data | attack (made by) | rate | poisons | flagged | precision | recall | AUROC "
        "| s | confirmed class: d, share, diversity, other-class ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    body = []
    for r in rows:
        conf = "; ".join(
            f"{c['class']}: {c['separation']:.1f}, {c['carrier_share']:.3f}, "
            f"{c['diversity']:.2f}, {fmt(c['other_class_ratio'])}"
            for c in r["confirmed"]
        )
        body.append(
            f"| {r['data']} | {r['attack']} ({r['made_by']}) | {r['rate']} | {r['poisons']} "
            f"| {r['flagged']} | {fmt(r['precision'])} | {fmt(r['recall'])} "
            f"| {fmt(r['auroc'])} | {r['seconds']} | {conf or '-'} |"
        )
    return head + "\n".join(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, help="../shared/datasets (else bundled data)")
    ap.add_argument("--art", action="store_true", help="add ART's clean-label backdoor")
    ap.add_argument("--out", type=Path, default=Path("runs/input_pattern.jsonl"))
    ap.add_argument(
        "--only",
        help="run only these datasets' cells (comma-separated file names, e.g. "
        "gtsrb_subset.npz); the ART cells still run with --art",
    )
    args = ap.parse_args()
    from tripwire.bench.runner import stratified_subset

    plan = BUNDLED if args.data_dir is None else DATASETS
    rows: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        for name, subset, cells in plan:
            if args.only and name not in args.only.split(","):
                continue
            src = name if args.data_dir is None else str(args.data_dir / name)
            train = load_dataset(src)
            if subset is not None:
                train = stratified_subset(train, subset, 0)
            for kind, rate in cells:
                ds = (
                    train
                    if kind == "clean"
                    else poison_dataset(train, kind, rate=rate, target=0, seed=0)
                )
                rows.append(measure(name, ds, kind, rate, made_by="tripwire"))
                out.write(json.dumps(rows[-1]) + "\n")
                print(json.dumps(rows[-1]), flush=True)
        if args.art:
            src = "bundled:mnist" if args.data_dir is None else str(args.data_dir / "mnist.npz")
            train = stratified_subset(load_dataset(src), 10000, 0)
            for rate in (0.01, 0.05):
                # ART poisons pp_poison of the target class's samples (PGD, then trigger).
                ds = art_clean_label(train, rate)
                name = f"{Path(src).name} (10k)"
                rows.append(measure(name, ds, "clean-label backdoor", rate, made_by="ART"))
                out.write(json.dumps(rows[-1]) + "\n")
                print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
