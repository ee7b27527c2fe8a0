"""Why repair loses CIFAR-10 accuracy: fine-tune the suite's CIFAR-10 blend model on the
defender's clean set with each ingredient of the repair switched on in turn.

    PYTHONPATH=src python benchmarks/probes/repair_cifar.py cifar10-10k:blend:0.05:0 \\
        runs/s21/scan/cifar10-10k_blend.json [--lr 0.01,0.001] [--share 0,0.5]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from repair import suite_model  # type: ignore[import-not-found]

from tripwire.attacks import apply_trigger
from tripwire.response.repair import (
    RepairConfig,
    fine_tune,
    predict,
    read_scan_report,
    stratified_split,
    trigger_success,
    triggers_to_remove,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cell")
    ap.add_argument("report")
    ap.add_argument("--lr", default="0.01,0.001")
    ap.add_argument("--share", default="0,0.5")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--clean", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, record, test, path, _ = suite_model(args.cell)
    target = int(record["target"])
    order = np.random.default_rng(11).permutation(len(test))
    x, y = test.model_input(order[: args.clean]), test.y[order[: args.clean]]
    x_e, y_e = test.model_input(order[args.clean :]), test.y[order[args.clean :]]
    triggers = triggers_to_remove(read_scan_report(args.report))
    fit, _ = stratified_split(y, 0.3, 0)

    def real(v: np.ndarray) -> np.ndarray:
        return apply_trigger(v, record, seed=0)

    for lr in map(float, args.lr.split(",")):
        for share in map(float, args.share.split(",")):
            module = torch.jit.load(str(path), map_location="cpu")
            # No divergence guard: the probe shows what each rate does by itself.
            cfg = replace(
                RepairConfig(),
                lr=lr,
                trigger_share=share,
                epochs=args.epochs,
                tune_accuracy_drop=1.0,
            )
            acc0 = float((predict(module, x_e, "cpu") == y_e).mean())
            fine_tune(module, x[fit], y[fit], triggers if share > 0 else [], cfg, "cpu")
            acc1 = float((predict(module, x_e, "cpu") == y_e).mean())
            asr = trigger_success(module, x_e, y_e, real, target, "cpu")
            print(f"lr {lr} share {share}: accuracy {acc0:.4f} -> {acc1:.4f}, real ASR {asr:.4f}")
            for t in triggers:
                m = t.mask
                print(f"  {t.method}: mask mean {float(m.mean()):.3f}, max {float(m.max()):.3f}")


if __name__ == "__main__":
    main()
