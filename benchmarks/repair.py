"""Backdoor repair: attack success and clean accuracy before and after ``repair_model``.

For each attack, trains (or reuses, with ``--model-dir``) a backdoored model on a subset of
the training split, takes ``--clean`` clean inputs from the test split as the defender's
small clean set, and repairs with the trigger in (mask, pattern) form. With ``--trigger
known`` that is the planted trigger itself (``trigger_from_attack``), standing in for the
reversed trigger of ``scan-model``; say so when reporting. Before/after figures are
measured on the rest of the test split (never seen by the repair) and also reported on
the repair's own held-out share of the clean set. One JSON line per case.

    PYTHONPATH=src python benchmarks/repair.py --data-dir /work/shared/datasets \
        --datasets mnist --attacks badnets,blend --results runs/repair/results.jsonl

A model trained elsewhere (``--model``, with the poisoned data it was trained on for the
real trigger): write the clean set, scan it with ``tripwire scan-model``, then repair
with the triggers the scan reversed::

    B="benchmarks/repair.py --datasets cifar10 --model M.pt --poisoned P.npz"
    PYTHONPATH=src python $B --save-clean /tmp/clean.npz
    tripwire scan-model M.pt --data /tmp/clean.npz --max-samples 200 --out /tmp/scan.json
    PYTHONPATH=src python $B --report /tmp/scan.json --methods both
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripwire.attacks import apply_trigger, poison_dataset
from tripwire.io import Dataset, load_dataset, save_dataset
from tripwire.models.arch import auto_arch
from tripwire.models.train import TrainConfig, save_model, train_model
from tripwire.response.repair import (
    RepairConfig,
    predict,
    read_scan_report,
    repair_model,
    trigger_from_attack,
    trigger_success,
    triggers_to_remove,
)

FILES = {"mnist": "mnist.npz", "gtsrb": "gtsrb_subset.npz", "cifar10": "cifar10-jpeg.tar.gz"}
#: Same attack settings as benchmarks/input_detection.py, so that its models can be reused.
ATTACKS: dict[str, dict[str, Any]] = {"badnets": {}, "blend": {"alpha": 0.2}}


def _subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    rng = np.random.default_rng(seed)
    return ds.subset(np.sort(rng.choice(len(ds), n, replace=False)))


def own_model(
    args: argparse.Namespace, name: str, attack: str
) -> tuple[Any, dict[str, Any], Dataset, Path, bool]:
    """This benchmark's own backdoored model (trained here or reused from
    ``--model-dir``), its attack record, the test split, the model's path, and whether
    it was trained here."""
    path = Path(args.data_dir) / FILES[name]
    train = _subset(load_dataset(path, split="train"), args.train_samples, args.seed)
    test = load_dataset(path, split="test")
    poisoned = poison_dataset(
        train, attack, rate=args.rate, target=args.target, seed=args.seed, **ATTACKS[attack]
    )
    record = poisoned.attack or {}
    arch = auto_arch(train.input_shape)
    model_path = Path(args.model_dir) / f"{name}-{attack}-{arch}.pt"
    trained_here = not model_path.exists()
    if trained_here:
        res = train_model(
            poisoned,
            TrainConfig(arch=arch, seed=args.seed, threads=args.threads),
            test=test,
            show_progress=False,
        )
        model_path.parent.mkdir(parents=True, exist_ok=True)
        save_model(res, model_path, poisoned)
    module = torch.jit.load(str(model_path), map_location="cpu")
    return module, record, test, model_path, trained_here


def suite_model(cell: str) -> tuple[Any, dict[str, Any], Dataset, Path, bool]:
    """The standard suite's model of ``cell`` (``DATA:KIND:RATE:SEED``, from
    ``runs/std-cache``, trained there if missing), its attack record, the dataset's
    whole test split, the model's path, and False."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "probes"))
    from cells import CACHE, DATA_DIR, standard_cell  # type: ignore[import-not-found]

    from tripwire.bench.runner import cached_model_path

    data, kind, rate, seed = cell.split(":")
    spec, ds, _, _ = standard_cell(data, kind, float(rate), int(seed))
    if ds.attack is None:
        raise SystemExit(f"{cell}: no attack to repair")
    model_path = cached_model_path(ds, spec, int(seed), CACHE)
    test = load_dataset(spec.spec.format(data_dir=DATA_DIR), split="test")
    module = torch.jit.load(str(model_path), map_location="cpu")
    return module, ds.attack, test, model_path, False


def given_model(
    args: argparse.Namespace, name: str
) -> tuple[Any, dict[str, Any], Dataset, Path, bool]:
    """``--model``, the attack record of ``--poisoned`` (the data it was trained on),
    the test split of dataset ``name``, the model's path, and False."""
    record = load_dataset(args.poisoned).attack
    if not record:
        raise SystemExit(f"{args.poisoned}: records no attack")
    test = load_dataset(Path(args.data_dir) / FILES[name], split="test")
    module = torch.jit.load(str(args.model), map_location="cpu")
    return module, record, test, Path(args.model), False


def run_case(args: argparse.Namespace, name: str, attack: str, method: str) -> dict[str, Any]:
    if args.model or args.cell:
        module, record, test, model_path, trained_here = (
            given_model(args, name) if args.model else suite_model(args.cell)
        )
        target = int(record.get("target", args.target))
    else:
        module, record, test, model_path, trained_here = own_model(args, name, attack)
        target = args.target

    rng = np.random.default_rng(args.seed + 11)
    order = rng.permutation(len(test))
    clean_idx, eval_idx = order[: args.clean], order[args.clean :]
    if args.save_clean:
        # The defender's clean set, for a scan-model run whose report --report reads.
        save_dataset(test.subset(np.sort(clean_idx)), args.save_clean)
        print(f"wrote the clean set ({len(clean_idx)} inputs) to {args.save_clean}")
        raise SystemExit(f"model: {model_path}")
    x_c, y_c = test.model_input(clean_idx), test.y[clean_idx]
    x_e, y_e = test.model_input(eval_idx), test.y[eval_idx]

    def real(x: np.ndarray) -> np.ndarray:
        return apply_trigger(x, record, seed=args.seed)

    def on_eval() -> tuple[float, float]:
        acc = float((predict(module, x_e, "cpu") == y_e).mean())
        return acc, trigger_success(module, x_e, y_e, real, target, "cpu")

    acc0, asr0 = on_eval()
    if args.report:
        # Reversed triggers from a scan-model report made on the same clean digits
        # (the first --clean of the seed+11 permutation of the test split).
        summary = read_scan_report(args.report)
        triggers = triggers_to_remove(summary)
        scan_norms = summary.norms
        source = f"reversed by scan-model ({args.report})"
    else:
        scan_norms = None
        triggers = [trigger_from_attack(record, test.input_shape)]
        source = "known (planted trigger as the reversed one)"
    result = repair_model(
        module,
        x_c,
        y_c,
        triggers,
        RepairConfig(
            method=method,
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            trigger_share=args.trigger_share,
            distill=args.distill,
            temperature=args.temperature,
            refresh=args.refresh,
        ),
        real_trigger=real,
        real_target=target,
        scan_norms=scan_norms,
    )
    acc1, asr1 = on_eval()
    return {
        "dataset": name,
        "cell": args.cell,
        "attack": attack,
        "method": method,
        "trigger": source,
        "trigger_share": args.trigger_share,
        "distill": args.distill,
        "temperature": args.temperature,
        "refresh": args.refresh,
        "lr": args.lr,
        "model": str(model_path),
        "trained_here": trained_here,
        "clean_set": len(clean_idx),
        "eval_samples": len(eval_idx),
        "accuracy_before": acc0,
        "accuracy_after": acc1,
        "accuracy_drop_points": 100 * (acc0 - acc1),
        "asr_before": asr0,
        "asr_after": asr1,
        "repair": result.to_dict(),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", default="/work/shared/datasets")
    ap.add_argument("--datasets", default="mnist")
    ap.add_argument("--attacks", default="badnets,blend")
    ap.add_argument("--methods", default="both,unlearn,prune")
    ap.add_argument("--train-samples", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--target", type=int, default=0)
    ap.add_argument("--clean", type=int, default=1000, help="size of the defender's clean set")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--trigger-share", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--distill", type=float, default=0.0, help="RepairConfig.distill")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument(
        "--refresh",
        type=int,
        default=0,
        help="RepairConfig.refresh (default 0, as before session 28, so that older "
        "commands reproduce their figures)",
    )
    ap.add_argument("--report", help="use the reversed triggers of this scan-model report")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", default="runs/input", help="reuse/write backdoored models")
    ap.add_argument("--results", default="runs/repair/results.jsonl")
    ap.add_argument(
        "--cell",
        help="repair the standard suite's model of DATA:KIND:RATE:SEED instead "
        "(runs/std-cache; --datasets, --attacks, --rate, --target, --train-samples unused)",
    )
    ap.add_argument(
        "--model",
        help="repair this model instead (trained on --poisoned, whose attack record gives "
        "the real trigger; the first of --datasets names its test split)",
    )
    ap.add_argument(
        "--save-clean",
        metavar="NPZ",
        help="write the defender's clean set (for scan-model) and stop",
    )
    ap.add_argument("--poisoned", help="the poisoned data --model was trained on (.npz)")
    args = ap.parse_args()
    if bool(args.model) != bool(args.poisoned):
        ap.error("--model and --poisoned go together")
    torch.set_num_threads(args.threads)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    cases = (
        [(args.cell.split(":")[0], args.cell.split(":")[1])]
        if args.cell
        else [(args.datasets.split(",")[0], "given")]
        if args.model
        else [(n, a) for n in args.datasets.split(",") for a in args.attacks.split(",")]
    )
    for (name, attack), method in product(cases, args.methods.split(",")):
        t0 = time.perf_counter()
        row = run_case(args, name, attack, method)
        row["case_s"] = round(time.perf_counter() - t0, 1)
        with open(args.results, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(
            f"{name} {attack} {method}: acc {row['accuracy_before']:.4f} -> "
            f"{row['accuracy_after']:.4f} ({row['accuracy_drop_points']:+.2f} pts lost) "
            f"ASR {row['asr_before']:.4f} -> {row['asr_after']:.4f} "
            f"(pruned {len(row['repair']['pruned_neurons'])}) | {row['case_s']} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
