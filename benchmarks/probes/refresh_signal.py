"""Does a repaired model still show its backdoor to an all-class trigger search?

Repairs MODEL with the fired triggers of a scan-model REPORT (no refresh rounds; or
takes MODEL as already repaired with ``--repaired``), then runs the patch search over
every class at several attack-success thresholds and prints each class's trigger size
and the target's anomaly index (the scan's rule) against the largest of the others.
Session 28 looked here for a signal that a refresh round is needed (docs/benchmarks.md).

    PYTHONPATH=src python benchmarks/probes/refresh_signal.py MODEL CLEAN REPORT POISONED \
        [--repaired]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tripwire.attacks import apply_trigger
from tripwire.detectors.backdoor.reverse import SearchConfig, mad_anomaly, search_module
from tripwire.io.loader import load_dataset
from tripwire.models.loading import load_model
from tripwire.response.repair import (
    RepairConfig,
    read_scan_report,
    repair_model,
    triggers_to_remove,
)
from tripwire.scan.model import MIN_LOG_SCALE


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("clean", help="clean set (the first --samples are used)")
    ap.add_argument("report", help="scan-model report of MODEL (or of the model it came from)")
    ap.add_argument("poisoned", help="data whose attack record gives the real trigger")
    ap.add_argument("--repaired", action="store_true", help="MODEL is repaired already")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--thresholds", default="0.99,0.8,0.5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.clean)
    ds = ds.subset(np.arange(min(len(ds), args.samples)))
    attack = load_dataset(args.poisoned).attack or {}
    model = load_model(args.model, input_shape=ds.input_shape)
    net = model._module
    triggers = triggers_to_remove(read_scan_report(args.report))
    target = triggers[0].target
    x, y = ds.model_input(), ds.y
    cfg = RepairConfig(epochs=0, method="unlearn") if args.repaired else RepairConfig()
    res = repair_model(
        net,
        x,
        y,
        triggers,
        cfg,
        real_trigger=lambda a: apply_trigger(a, attack),
        real_target=target,
    )
    print(f"real ASR on the held-out part: {res.real_asr_before} -> {res.real_asr_after}")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    n_out = int(net(torch.from_numpy(x[:1])).shape[1])
    for thr in (float(t) for t in args.thresholds.split(",")):
        t0 = time.perf_counter()
        found = search_module(
            net,
            x,
            y,
            list(range(n_out)),
            config=SearchConfig(mask="patch", asr_threshold=thr),
            random_state=1,
        )
        idx, _, _ = mad_anomaly(np.log(np.maximum(found.norms, 1e-12)), min_scale=MIN_LOG_SCALE)
        print(
            f"ASR {thr}: sizes {np.round(found.norms, 1).tolist()}; target {target} index "
            f"{idx[target]:.2f}, largest other {np.delete(idx, target).max():.2f} "
            f"({time.perf_counter() - t0:.1f} s)"
        )


if __name__ == "__main__":
    main()
