"""Probe: where clean inputs go when the model's neurons are perturbed adversarially.

ANP (Wu & Wang, NeurIPS 2021) observed that a backdoored model, under small adversarial
multiplicative noise on its neurons (each neuron's weights and bias scaled by
``1 + delta``, ``|delta| <= eps``, chosen to raise the clean loss), sends the clean
inputs it now gets wrong to the backdoor's target: the backdoor is a shortcut the noise
finds first. BAN (Xu et al., NeurIPS 2024) turns this into a model-level detector for
input-dependent triggers (WaNet, IAD), which trigger searches miss. This is asked here of
the standard suite's models: for each class, the share of other classes' clean inputs
sent to it under the noise (mean over restarts), and its MAD index above the median.

    PYTHONPATH=src python benchmarks/probes/neuron_noise.py MODEL.pt DATA --eps 0.1,0.2,0.4
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from tripwire.detectors.backdoor.reverse import mad_anomaly, torch_module
from tripwire.io import load_dataset
from tripwire.models.loading import load_model
from tripwire.scan.model import stratified_subset


def noisy_params(net: Any, layers: str) -> list[tuple[str, torch.Tensor]]:
    """The parameters the noise scales: batch-norm affine ones (``bn``, as ANP), every
    layer's but the last linear one (``hidden``), or all (``all``)."""
    named = dict(net.named_modules())
    params = list(net.named_parameters())
    last = max(i for i, (n, p) in enumerate(params) if p.dim() == 2)
    head = params[last][0].rsplit(".", 1)[0]
    out = []
    for n, p in params:
        owner = n.rsplit(".", 1)[0]
        kind = named[owner].original_name if owner in named else ""
        if layers == "bn" and "BatchNorm" not in kind:
            continue
        if layers == "hidden" and owner == head:
            continue
        out.append((n, p))
    return out


def perturb(
    net: Any,
    params: list[tuple[str, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    seed: int,
) -> np.ndarray:
    """Per-neuron multiplicative noise in ``[-eps, eps]`` raised by signed gradient
    ascent on the clean cross-entropy (random start); returns the perturbed model's
    predictions on ``x``. The weights are restored before returning."""
    gen = torch.Generator().manual_seed(seed)
    orig = [p.detach().clone() for _, p in params]
    deltas = [
        (torch.rand((p.shape[0],) + (1,) * (p.dim() - 1), generator=gen) * 2 - 1) * eps
        for _, p in params
    ]
    alpha = eps / 4
    try:
        for _ in range(steps):
            for (_, p), o, d in zip(params, orig, deltas, strict=True):
                p.data = o * (1 + d)
                p.grad = None
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            for (_, p), o, d in zip(params, orig, deltas, strict=True):
                g = p.grad * o  # d loss / d delta, elementwise
                if g.dim() > 1:
                    g = g.sum(dim=tuple(range(1, g.dim())), keepdim=True)
                d.add_(alpha * g.sign()).clamp_(-eps, eps)
        with torch.no_grad():
            for (_, p), o, d in zip(params, orig, deltas, strict=True):
                p.data = o * (1 + d)
            pred = net(x).argmax(1).numpy()
    finally:
        for (_, p), o in zip(params, orig, strict=True):
            p.data = o
            p.grad = None
    return pred


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--eps", default="0.1,0.2,0.3,0.4")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--layers", default="bn", choices=["bn", "hidden", "all"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(2)
    ds = load_dataset(a.data, split=a.split)
    n_cls = int(ds.y.max()) + 1
    net = torch_module(load_model(a.model, input_shape=ds.input_shape))
    net.eval()
    sub = stratified_subset(ds.y, a.per_class * n_cls, a.seed)
    x = torch.from_numpy(np.ascontiguousarray(ds.model_input(sub), dtype=np.float32))
    y = torch.from_numpy(ds.y[sub].astype(np.int64))
    yn = y.numpy()
    params = noisy_params(net, a.layers)
    for q in net.parameters():
        q.requires_grad_(True)
    with torch.no_grad():
        pred0 = net(x).argmax(1).numpy()
    acc0 = float((pred0 == yn).mean())
    # Only inputs the model gets right count: its own confusions would dilute the shares.
    right = pred0 == yn
    for eps in (float(e) for e in a.eps.split(",")):
        t0 = time.perf_counter()
        share = np.zeros(n_cls)
        err = 0.0
        for r in range(a.restarts):
            pred = perturb(net, params, x, y, eps, a.steps, a.seed * 100 + r)
            err += float((pred[right] != yn[right]).mean()) / a.restarts
            for t in range(n_cls):
                other = (yn != t) & right
                share[t] += float((pred[other] == t).mean()) / a.restarts
        idx, _, _ = mad_anomaly(-share, min_scale=1e-3)
        order = np.argsort(-idx)
        print(
            json.dumps(
                {
                    "tag": a.tag,
                    "layers": a.layers,
                    "eps": eps,
                    "clean_acc": round(acc0, 3),
                    "error": round(err, 3),
                    "top": [int(c) for c in order[:3]],
                    "top_index": [round(float(idx[c]), 2) for c in order[:3]],
                    "top_share": [round(float(share[c]), 3) for c in order[:3]],
                    "class0_index": round(float(idx[0]), 2),
                    "class0_share": round(float(share[0]), 3),
                    "time_s": round(time.perf_counter() - t0, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
