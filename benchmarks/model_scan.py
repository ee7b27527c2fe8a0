"""Model-level backdoor scanning (``scan-model``) against a faithful Neural Cleanse baseline.

Trains (or reuses from ``--cache``) backdoored and clean models on MNIST, the GTSRB subset
and CIFAR-10 from ``--data-dir`` over a reduced grid (BadNets at several sizes, positions
and targets, blended, SIG, WaNet, and clean models of several seeds; one architecture of
a different design, ``resnet-mini``), then scans each with :func:`tripwire.scan.model.scan_model`
on a small clean set taken from the TEST split (never seen in training). With
``--nc`` it also runs class-by-class Neural Cleanse with its published defaults on the
same model and clean set, for detection and time side by side. One JSON line per model
goes to ``--results``; ``--table`` prints the Markdown table of a results file.

    PYTHONPATH=src python benchmarks/model_scan.py --data-dir /work/shared/datasets \
        --grid quick --cache /tmp/tw_model_scan --results runs/model_scan.jsonl [--nc]

Thresholds are never tuned here: the rule is Neural Cleanse's (anomaly index > 2).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripwire.attacks import attack_success_rate, poison_dataset
from tripwire.io import Dataset, load_dataset
from tripwire.models.loading import load_model
from tripwire.models.train import TrainConfig, save_model, train_model

FILES = {"mnist": "mnist.npz", "gtsrb": "gtsrb_subset.npz", "cifar10": "cifar10-jpeg.tar.gz"}


@dataclass(frozen=True)
class Case:
    dataset: str
    attack: str  # "clean" or an attack kind
    target: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    arch: str = "auto"
    seed: int = 0
    rate: float = 0.1
    n_train: int = 10000
    epochs: int = 8

    @property
    def name(self) -> str:
        extra = "-".join(f"{k}{v}" for k, v in sorted(self.params.items()))
        return "_".join(
            s
            for s in (
                self.dataset,
                self.attack,
                f"t{self.target}" if self.attack != "clean" else "",
                extra,
                self.arch,
                f"s{self.seed}",
            )
            if s
        )


def grid(name: str) -> list[Case]:
    """The reduced grids; ``quick`` runs on a loaded 2-core CPU in well under an hour."""
    mn = (
        [
            Case("mnist", "badnets", 0, {"size": 3}),
            Case("mnist", "badnets", 5, {"size": 4, "position": "top-left", "pattern": "random"}),
            Case("mnist", "blend", 3, {"alpha": 0.2}),
            Case("mnist", "sig", 7, {}, rate=0.08),
            Case("mnist", "wanet", 2, {}),
            Case("mnist", "badnets", 8, {"size": 3}, arch="resnet-mini", epochs=5),
        ]
        + [Case("mnist", "clean", seed=s) for s in range(4)]
        + [Case("mnist", "clean", arch="resnet-mini", epochs=5, seed=0)]
    )
    gt = [
        Case("gtsrb", "badnets", 1, {"size": 4}, n_train=12330, epochs=12),
        Case("gtsrb", "blend", 4, {"alpha": 0.2}, n_train=12330, epochs=12),
        Case("gtsrb", "clean", n_train=12330, epochs=12, seed=0),
        Case("gtsrb", "clean", n_train=12330, epochs=12, seed=1),
    ]
    cf = [
        Case("cifar10", "badnets", 6, {"size": 3}, n_train=10000, epochs=6),
        Case("cifar10", "blend", 9, {"alpha": 0.2}, n_train=10000, epochs=6),
        Case("cifar10", "clean", n_train=10000, epochs=6, seed=0),
        Case("cifar10", "clean", n_train=10000, epochs=6, seed=1),
    ]
    if name == "mnist":
        return mn
    if name == "mnist-null":
        # The clean-model false-alarm bar: at least 10 clean models, beside the backdoors.
        return mn[:5] + [Case("mnist", "clean", seed=s) for s in range(10)]
    if name == "cifar10-null":
        # The same false-alarm bar on CIFAR-10: ten clean models beside the backdoors.
        return cf[:2] + [
            Case("cifar10", "clean", n_train=10000, epochs=6, seed=s) for s in range(10)
        ]
    if name == "gtsrb-null":
        # The false-alarm bar on GTSRB (43 classes): ten clean models beside the backdoors.
        return gt[:2] + [
            Case("gtsrb", "clean", n_train=12330, epochs=12, seed=s) for s in range(10)
        ]
    if name == "timing":
        return cf[:1]
    if name == "quick":
        return mn + cf + gt
    raise SystemExit(f"unknown grid {name}")


_DATA: dict[tuple[str, str], Dataset] = {}


def data(data_dir: Path, ds: str, split: str) -> Dataset:
    key = (ds, split)
    if key not in _DATA:
        _DATA[key] = load_dataset(data_dir / FILES[ds], split=split, show_progress=False)
    return _DATA[key]


def train_case(case: Case, data_dir: Path, cache: Path) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) the model of ``case``; returns its path and accuracy / ASR."""
    path = cache / f"{case.name}.pt"
    meta_path = cache / f"{case.name}.bench.json"
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    tr = data(data_dir, case.dataset, "train")
    te = data(data_dir, case.dataset, "test")
    rng = np.random.default_rng(case.seed)
    if case.n_train < len(tr):
        tr = tr.subset(np.sort(rng.choice(len(tr), case.n_train, replace=False)))
    if case.attack != "clean":
        tr = poison_dataset(
            tr, case.attack, rate=case.rate, target=case.target, seed=case.seed, **case.params
        )
    t0 = time.perf_counter()
    r = train_model(
        tr,
        TrainConfig(arch=case.arch, epochs=case.epochs, seed=case.seed, threads=1),
        test=te,
        show_progress=False,
    )
    meta: dict[str, Any] = {
        "accuracy": round(r.accuracy, 4),
        "arch": r.arch,
        "train_s": round(time.perf_counter() - t0, 1),
    }
    if tr.attack is not None:
        net = r.model.eval()

        def predict(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return np.concatenate(
                    [
                        net(torch.from_numpy(x[s : s + 512])).argmax(1).numpy()
                        for s in range(0, len(x), 512)
                    ]
                )

        meta["attack_success"] = round(attack_success_rate(predict, te, tr.attack), 4)
    cache.mkdir(parents=True, exist_ok=True)
    save_model(r, path, tr)
    meta_path.write_text(json.dumps(meta))
    return path, meta


def clean_set(data_dir: Path, ds: str, n: int, seed: int) -> Dataset:
    """``n`` test images, stratified, as the auditor's small clean set."""
    te = data(data_dir, ds, "test")
    rng = np.random.default_rng(seed)
    per = max(1, n // te.n_classes)
    idx = np.concatenate(
        [rng.permutation(np.flatnonzero(te.y == c))[:per] for c in range(te.n_classes)]
    )
    return te.subset(np.sort(idx))


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    path, meta = train_case(case, args.data_dir, args.cache)
    row: dict[str, Any] = {
        "case": case.name,
        "dataset": case.dataset,
        "attack": case.attack,
        "target": None if case.attack == "clean" else case.target,
        "params": case.params,
        **meta,
    }
    if args.train_only:
        return row
    return scan_row(path, case.dataset, case.name, case.seed, row, args)


def scan_file(path: Path, dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Scan (and with ``--nc`` run Neural Cleanse on) one model file, clean set seed 0."""
    return scan_row(path, dataset, path.name, 0, {"case": path.name, "dataset": dataset}, args)


def scan_row(
    path: Path,
    dataset: str,
    name: str,
    seed: int,
    row: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from tripwire.detectors.backdoor.neural_cleanse import neural_cleanse
    from tripwire.scan.model import scan_model

    model = load_model(path)
    n_clean = args.clean_per_class * data(args.data_dir, dataset, "test").n_classes
    clean = clean_set(args.data_dir, dataset, n_clean, seed)
    res = scan_model(model, clean, random_state=0)
    row.update(
        {
            "verdict": res.verdict,
            "target_classes": res.target_classes,
            "fired": sorted({e for c in res.classes for e in c.fired}),
            "scan_s": round(res.time_s, 1),
            "max_index": {
                m: round(max(c.evidence[m]["anomaly_index"] for c in res.classes), 2)
                for m in res.methods
            },
            "clean_samples": len(clean),
            "per_class": {
                m: [c.evidence[m]["anomaly_index"] for c in res.classes] for m in res.methods
            },
        }
    )
    if args.nc and (args.nc_only is None or args.nc_only in name):
        nc = neural_cleanse(model, clean.model_input(), clean.y, random_state=0)
        row.update(
            {
                "nc_flagged": nc.flagged,
                "nc_max_index": round(float(nc.anomaly_index.max()), 2),
                "nc_s": round(nc.time_s, 1),
                "nc_epochs": nc.search.epochs.tolist(),
                "nc_index": np.round(nc.anomaly_index, 2).tolist(),
            }
        )
        row["speedup"] = round(nc.time_s / max(res.time_s, 1e-9), 2)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | acc | ASR | verdict | targets found | evidence | max index (patch/blend) "
        "| scan s | NC flagged | NC max index | NC s | speed-up |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        mi = r.get("max_index", {})
        lines.append(
            f"| {r['case']} | {r.get('accuracy', float('nan')):.3f} | "
            f"{r.get('attack_success', '-')} | "
            f"{r.get('verdict', '-')} | {r.get('target_classes', '-')} | "
            f"{','.join(r.get('fired', [])) or '-'} | "
            f"{mi.get('patch', '-')}/{mi.get('blend', '-')} | {r.get('scan_s', '-')} | "
            f"{r.get('nc_flagged', '-')} | {r.get('nc_max_index', '-')} | {r.get('nc_s', '-')} | "
            f"{r.get('speedup', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--grid", default="quick")
    ap.add_argument("--only", help="comma-separated substrings of case names to run")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tw_model_scan"))
    ap.add_argument("--results", type=Path, default=Path("runs/model_scan.jsonl"))
    ap.add_argument("--clean-per-class", type=int, default=20)
    ap.add_argument("--nc", action="store_true", help="also run the Neural Cleanse baseline")
    ap.add_argument("--nc-only", help="run the baseline only on cases whose name holds this")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="print the table of --results and exit")
    ap.add_argument(
        "--model", type=Path, help="scan this model file instead of the grid (with --dataset)"
    )
    ap.add_argument("--dataset", choices=sorted(FILES), help="the --model's dataset")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(x) for x in args.results.read_text().splitlines() if x.strip()]
        print(table(rows))
        return
    if not (args.data_dir / FILES["mnist"]).exists():
        raise SystemExit(f"no datasets under {args.data_dir}; skipping")
    torch.set_num_threads(args.threads)
    if args.model is not None:
        if args.dataset is None:
            raise SystemExit("--model needs --dataset")
        row = scan_file(args.model, args.dataset, args)
        with args.results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return
    cases = grid(args.grid)
    if args.only:
        keys = args.only.split(",")
        cases = [c for c in cases if any(k in c.name for k in keys)]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"# {platform.processor() or platform.machine()}, torch threads {args.threads}, "
        f"{len(cases)} cases",
        flush=True,
    )
    for case in cases:
        row = run_case(case, args)
        if not args.train_only:
            with args.results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
