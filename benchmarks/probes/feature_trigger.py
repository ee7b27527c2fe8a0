"""Probe: a universal trigger in an inner layer's activations, per class (feature-space NC).

Neural Cleanse asks how small an input-space trigger sends clean inputs to a class; the
input-dependent (WaNet) and large global (SIG) triggers escape that question (sessions
21-23). Here the question is asked after inner layer ``--split``: for each class ``t``,
how small a universal additive change of the activations (``full``: one ``C x H x W``
change; ``channel``: one value per channel at every position) sends 90% of the other
classes' clean inputs to ``t``? The activations stay non-negative (they follow a ReLU
or a pooling of one). Sizes are relative to the clean activations' mean L2 norm; the
ladder of budgets is ``warp_search.py``'s. Prints one JSON line: sizes per class and
the MAD anomaly index of their logs.

    PYTHONPATH=src python benchmarks/probes/feature_trigger.py MODEL.pt DATA --split 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from clean_inputs import clean_inputs  # type: ignore[import-not-found]
from stimulation import split_model  # type: ignore[import-not-found]
from warp_search import budget_ladder  # type: ignore[import-not-found]

from tripwire.detectors.backdoor.reverse import mad_anomaly


def ladder(rest, act, y, n_out, family, budgets, steps, bs, asr, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    shape = act.shape[1:] if family == "full" else (act.shape[1], 1, 1)
    par = torch.randn((n_out, *shape), generator=gen) * 1e-3 * scale
    area = 1 if family == "full" else act.shape[2] * act.shape[3]

    def size(p):
        # The change's L2 norm on the full activation map, relative to the clean norm.
        return p.flatten(1).norm(dim=1) * (area**0.5) / scale

    def apply(a, p):
        return (a[None] + p[:, None]).clamp(min=0).reshape(-1, *a.shape[1:])

    return budget_ladder(
        rest,
        act,
        y,
        par,
        apply,
        size,
        budgets,
        lambda b: b * scale / (area**0.5) / 20,
        steps,
        bs,
        asr,
        gen,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--split", type=int, default=3)
    ap.add_argument("--family", choices=["full", "channel"], default="full")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--asr", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(2)
    net, x, y_np, n_cls = clean_inputs(a.model, a.data, a.per_class, a.seed)
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    y = torch.from_numpy(y_np)
    inner, rest, _ = split_model(net, a.split)
    with torch.no_grad():
        act = inner(x)
    scale = float(act.flatten(1).norm(dim=1).mean())
    budgets = [0.02 * 2 ** (i / 2) for i in range(16)]  # 0.02 .. 3.6 of the clean norm
    t0 = time.perf_counter()
    sizes, reach = ladder(
        rest, act, y, n_cls, a.family, budgets, a.steps, a.bs, a.asr, a.seed, scale
    )
    finite = np.where(np.isfinite(sizes), sizes, budgets[-1] * 2)
    idx_, _, _ = mad_anomaly(np.log(finite), min_scale=0.25)
    print(
        json.dumps(
            {
                "tag": a.tag,
                "split": a.split,
                "family": a.family,
                "shape": list(act.shape[1:]),
                "min_act": round(float(act.min()), 3),
                "sizes": [round(float(s), 3) for s in finite],
                "reach": [round(float(r), 2) for r in reach],
                "index": [round(float(v), 2) for v in idx_],
                "top": int(np.argmax(idx_)),
                "top_index": round(float(idx_.max()), 2),
                "class0_index": round(float(idx_[0]), 2),
                "time_s": round(time.perf_counter() - t0, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
