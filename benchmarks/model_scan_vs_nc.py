"""scan-model against a faithful class-by-class Neural Cleanse on one small BadNets model.

Trains cnn-small on the bundled digits upscaled to 16x16 (1,397 images, 12 epochs) with
a 3x3 BadNets patch (target 3, 10%), then runs ``scan_model`` and ``neural_cleanse``
(published defaults) one after the other in this process on the same 400 held-out
digits, and prints one JSON line each (flagged classes, time, NC's per-class epochs,
norms and raw-L1 anomaly indices). Runs anywhere (bundled data only).

    PYTHONPATH=src python benchmarks/model_scan_vs_nc.py --model /tmp/dig_badnets.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tripwire.attacks import poison_dataset
from tripwire.detectors.backdoor.neural_cleanse import neural_cleanse
from tripwire.io import load_dataset, make_dataset
from tripwire.models.loading import load_model
from tripwire.models.train import TrainConfig, save_model, train_model
from tripwire.scan.model import scan_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("/tmp/tw_dig16_badnets.pt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    d8 = load_dataset("bundled:digits")
    ds = make_dataset(np.kron(d8.x, np.ones((1, 2, 2), dtype=d8.x.dtype)), d8.y, path="d16")
    order = np.random.default_rng(0).permutation(len(ds))
    train, clean = ds.subset(np.sort(order[400:])), ds.subset(np.sort(order[:400]))
    if not args.model.exists():
        poisoned = poison_dataset(train, "badnets", rate=0.1, target=3, size=3)
        r = train_model(poisoned, TrainConfig(epochs=12, seed=0, threads=1), test=clean)
        save_model(r, args.model, poisoned)
    model = load_model(args.model)
    res = scan_model(model, clean, random_state=0)
    print(json.dumps({"scan": res.target_classes, "s": round(res.time_s, 1), **res.timings}))
    nc = neural_cleanse(model, clean.model_input(), clean.y, random_state=0)
    print(
        json.dumps(
            {
                "nc": nc.flagged,
                "s": round(nc.time_s, 1),
                "idx": np.round(nc.anomaly_index, 2).tolist(),
                "epochs": nc.search.epochs.tolist(),
                "norms": np.round(nc.search.norms, 1).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
