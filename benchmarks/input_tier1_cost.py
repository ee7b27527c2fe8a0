"""Cost of tier 1 of the run-time triggered-input detector relative to plain inference.

Times ``Model.logits`` against ``Model.logits_and_features`` + ``score_outputs`` (what a
gateway does per request) on the same test inputs, interleaved, median of ``--reps``.

    PYTHONPATH=src python benchmarks/input_tier1_cost.py MODEL.pt \
        --data /work/shared/datasets/mnist.npz
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tripwire.detectors.backdoor.input_trigger import TriggeredInputDetector
from tripwire.io import load_dataset
from tripwire.models.loading import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="/work/shared/datasets/mnist.npz")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    test = load_dataset(args.data, split="test")
    idx = np.random.default_rng(0).permutation(len(test))[: 500 + args.n]
    x, y = test.model_input(idx), test.y[idx]
    det = TriggeredInputDetector(strip_overlays=8).fit(model, x[:500], y[:500])
    xs = x[500:]
    for batch in (int(b) for b in args.batches.split(",")):
        plain, tier1 = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for s in range(0, len(xs), batch):
                model.logits(xs[s : s + batch], batch_size=batch)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in range(0, len(xs), batch):
                z, f = model.logits_and_features(xs[s : s + batch], batch_size=batch)
                det.score_outputs(z, f)
            tier1.append(time.perf_counter() - t0)
        p, t = float(np.median(plain)), float(np.median(tier1))
        print(
            f"batch {batch}: plain {p / len(xs) * 1e6:.0f} us/input, with tier 1 "
            f"{t / len(xs) * 1e6:.0f} us/input, ratio {t / p:.2f}x",
            flush=True,
        )
    # The scoring alone, per input at batch 1: what tier 1 adds beyond the forward pass
    # (the load on a shared machine makes the ratios above noisy; this is not).
    z, f = model.logits_and_features(xs)
    runs = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        for i in range(len(xs)):
            det.score_outputs(z[i : i + 1], f[i : i + 1])
        runs.append((time.perf_counter() - t0) / len(xs) * 1e6)
    print(f"score_outputs alone: min {min(runs):.1f} us, median {np.median(runs):.1f} us per input")


if __name__ == "__main__":
    main()
