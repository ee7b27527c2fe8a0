"""Are backdoor poisons learnt faster than clean items? Per-sample loss in the first epochs.

Trains the reference architecture from scratch on a poisoned set (plain SGD, one
thread) and records each item's loss when its mini-batch is seen, per epoch; prints the
AUROC of ``-loss`` for poisons against all items and against the clean items of the
target class, and the mean first-epoch loss of poisons, of the target class's clean
items and of all clean items. The question is whether training dynamics (as
anti-backdoor learning uses them) tell a backdoor's poisons apart:

    PYTHONPATH=src python benchmarks/probes/early_loss.py bundled:mnist cnn-small 3 \
        wanet:0.05,wanet:0.1,badnets:0.05,blend:0.05,sig:0.05
    PYTHONPATH=src python benchmarks/probes/early_loss.py ../shared/datasets/mnist.npz \
        cnn-small 2 wanet:0.1,wanet:0.05,wanet:0.01,badnets:0.1
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import torch
    from sklearn.metrics import roc_auc_score
    from torch import nn

    from tripwire.attacks import poison_dataset
    from tripwire.io import load_dataset
    from tripwire.models.arch import auto_arch, build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="what load_dataset takes (bundled:mnist, a path)")
    ap.add_argument("arch")
    ap.add_argument("epochs", type=int)
    ap.add_argument("cells", help="KIND:RATE[,KIND:RATE...], target class 0")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_dataset(args.data, split="train", show_progress=False)
    for cell in args.cells.split(","):
        kind, rate_s = cell.split(":")
        params = {"s": 5.0} if kind == "wanet" else {}  # the standard suite's strength
        ds = poison_dataset(base, kind, rate=float(rate_s), target=0, seed=0, **params)
        truth = ds.poisoned if ds.poisoned is not None else np.zeros(len(ds), bool)
        x, y = torch.from_numpy(ds.model_input()), torch.from_numpy(ds.y)
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        arch = auto_arch(ds.input_shape) if args.arch == "auto" else args.arch
        model = build_model(arch, ds.input_shape, int(ds.y.max()) + 1)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        loss = np.zeros((args.epochs, len(ds)), np.float32)
        t0 = time.perf_counter()
        for e in range(args.epochs):
            model.train()
            perm = torch.randperm(len(ds), generator=gen)
            for s in range(0, len(ds), 128):
                idx = perm[s : s + 128]
                batch = loss_fn(model(x[idx]), y[idx])
                loss[e, idx.numpy()] = batch.detach().numpy()
                opt.zero_grad()
                batch.mean().backward()
                opt.step()
        target = ds.y == 0
        line = f"{cell:18s} {time.perf_counter() - t0:5.1f}s poisons={int(truth.sum()):5d}"
        for e in range(args.epochs):
            auc_all = roc_auc_score(truth, -loss[e])
            auc_cls = roc_auc_score(truth[target], -loss[e][target])
            line += f" | e{e + 1} all {auc_all:.3f} class {auc_cls:.3f}"
        line += (
            f" | first-epoch loss: poisons {loss[0][truth].mean():.3f}, clean of the "
            f"target {loss[0][target & ~truth].mean():.3f}, clean {loss[0][~truth].mean():.3f}"
        )
        print(line, flush=True)


if __name__ == "__main__":
    main()
