"""Repair's ingredients one by one on one model: pruning or not, each learning rate and
self-distillation weight, measured on the test images the repair never sees.

    PYTHONPATH=src python benchmarks/probes/repair_variants.py --report REPORT.json \\
        (--cell cifar10-10k:blend:0.05:0 | --model M.pt --poisoned P.npz --dataset cifar10) \\
        [--lr 0.01,0.001] [--distill 0,0.5,0.9] [--prune 0,1] [--epochs 10]

The clean set is the one ``benchmarks/repair.py`` draws (the first ``--clean`` of the
seed-11 permutation of the test split), split 70/30 as ``repair_model`` does; no
divergence guard, so each rate shows what it does by itself.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from repair import given_model, suite_model  # type: ignore[import-not-found]

from tripwire.attacks import apply_trigger
from tripwire.response.repair import (
    RepairConfig,
    classifier_head,
    fine_tune,
    logits,
    predict,
    prune_by_drive,
    read_scan_report,
    stratified_split,
    trigger_success,
    triggers_to_remove,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", required=True)
    ap.add_argument("--cell")
    ap.add_argument("--model")
    ap.add_argument("--poisoned")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--lr", default="0.01,0.001")
    ap.add_argument("--distill", default="0,0.9")
    ap.add_argument("--prune", default="1")
    ap.add_argument("--share", default="0.5", help="trigger shares (0: plain fine-tuning)")
    ap.add_argument("--prune-drop", type=float, default=0.03)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--clean", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cell:
        _, record, test, path, _ = suite_model(args.cell)
    else:
        _, record, test, path, _ = given_model(args, args.dataset)
    target = int(record["target"])
    order = np.random.default_rng(11).permutation(len(test))
    x, y = test.model_input(order[: args.clean]), test.y[order[: args.clean]]
    x_e, y_e = test.model_input(order[args.clean :]), test.y[order[args.clean :]]
    triggers = triggers_to_remove(read_scan_report(args.report))
    print("unlearning", [(t.target, t.method) for t in triggers])
    fit, _ = stratified_split(y, 0.3, 0)
    xf, yf = x[fit], y[fit]

    def real(v: np.ndarray) -> np.ndarray:
        return apply_trigger(v, record, seed=0)

    def line(label: str, module: torch.nn.Module) -> None:
        acc = float((predict(module, x_e, "cpu") == y_e).mean())
        asr = trigger_success(module, x_e, y_e, real, target, "cpu")
        print(f"{label}: accuracy {acc:.4f}, real ASR {asr:.4f}", flush=True)

    line("before", torch.jit.load(str(path), map_location="cpu"))
    for prune in map(int, args.prune.split(",")):
        for lr in map(float, args.lr.split(",")):
            for distill, share in product(
                map(float, args.distill.split(",")), map(float, args.share.split(","))
            ):
                module = torch.jit.load(str(path), map_location="cpu")
                cfg = replace(
                    RepairConfig(),
                    lr=lr,
                    distill=distill,
                    epochs=args.epochs,
                    tune_accuracy_drop=1.0,
                    trigger_share=max(share, 0.01),
                    prune_accuracy_drop=args.prune_drop,
                )
                teacher = logits(module, xf, "cpu") if distill > 0 else None
                head, pruned = None, None
                if prune:
                    head = classifier_head(module, xf, "cpu")
                    pruned = prune_by_drive(module, xf, yf, triggers, head, cfg, "cpu")
                    line(f"prune {len(pruned)}", module)
                fine_tune(
                    module,
                    xf,
                    yf,
                    triggers if share > 0 else [],
                    cfg,
                    "cpu",
                    head=head,
                    pruned=pruned,
                    teacher=teacher,
                )
                line(f"prune {prune} lr {lr} distill {distill} share {share}", module)


if __name__ == "__main__":
    main()
