"""Probe: the maximum achievable classification margin per class (MM-BD's statistic).

For each class ``t``: gradient ascent over free inputs in [0, 1] (tanh space) on
``z_t(x) - max_{j != t} z_j(x)`` from several random starts; the class's statistic is
the largest margin reached. A backdoor's target class, whatever its trigger's form (patch,
blend, SIG, warp), is reached through a learned shortcut that yields far larger margins
than any clean class (Wang et al., "MM-BD", IEEE S&P 2024). Prints one JSON line: the
statistic per class and a robust index of log statistics ABOVE the median.

    PYTHONPATH=src python benchmarks/probes/max_margin.py MODEL.pt DATA --tag x
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tripwire.detectors.backdoor.reverse import mad_anomaly, torch_module
from tripwire.io import load_dataset
from tripwire.models.loading import load_model


def max_margin(net, shape, n_out, starts, steps, lr, seed, init=None) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    c, h, w = shape
    if init is None:
        x0 = torch.rand((n_out, starts, c, h, w), generator=gen)
    else:
        x0 = init[None].expand(n_out, -1, -1, -1, -1).clone()
    z = torch.atanh((x0 - 0.5) * 1.999).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    tg = torch.arange(n_out)
    best = torch.full((n_out,), -np.inf)
    for _ in range(steps):
        x = torch.tanh(z) / 1.999 + 0.5
        out = net(x.reshape(-1, c, h, w)).reshape(n_out, -1, n_out)
        zt = out.gather(2, tg[:, None, None].expand(-1, out.shape[1], 1))[..., 0]
        other = out.clone()
        other.scatter_(2, tg[:, None, None].expand(-1, out.shape[1], 1), -1e9)
        margin = zt - other.max(2).values
        loss = -margin.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        best = torch.maximum(best, margin.detach().max(1).values)
    return best.numpy()


def universal_margin(net, x, y, n_out, eps, steps, bs, lr, seed) -> np.ndarray:
    """Per class, one additive delta (|delta|_inf <= eps) maximising the mean margin to the
    class over clean inputs of other classes; returns the mean margin reached."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    z = (torch.randn((n_out, c, h, w), generator=gen) * 0.01).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    tg = torch.arange(n_out)
    for _ in range(steps):
        bi = torch.randint(0, n, (bs,), generator=gen)
        xb, yb = x[bi], y[bi]
        xin = (xb[None] + eps * torch.tanh(z)[:, None]).clamp(0, 1)
        out = net(xin.reshape(-1, c, h, w)).reshape(n_out, bs, n_out)
        idx = tg[:, None, None].expand(-1, bs, 1)
        zt = out.gather(2, idx)[..., 0]
        margin = zt - out.scatter(2, idx, -1e9).max(2).values
        wgt = (yb[None] != tg[:, None]).float()
        loss = -((margin * wgt).sum(1) / wgt.sum(1).clamp(min=1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = np.zeros(n_out)
    with torch.no_grad():
        for t in range(n_out):
            keep = y != t
            xin = (x[keep] + eps * torch.tanh(z[t])).clamp(0, 1)
            out = net(xin)
            zt = out[:, t].clone()
            out[:, t] = -1e9
            res[t] = float((zt - out.max(1).values).median())
    return res


def clean_margins(net, x, y, n_out) -> np.ndarray:
    """Each class's own clean margin: the median ``z_y - max_{j != y} z_j`` over the
    correctly classified clean inputs ``x`` of that class (1 where there are none)."""
    with torch.no_grad():
        lg = net(x).numpy()
    rows = np.arange(len(y))
    own = lg[rows, y]
    lg[rows, y] = -np.inf
    cm = own - lg.max(1)
    clean = np.ones(n_out)
    for t in range(n_out):
        ok = (y == t) & (cm > 0)
        if ok.any():
            clean[t] = np.median(cm[ok])
    return clean


def ratio_index(stat: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The MAD index of each class's log max margin over its clean margin (larger =
    more suspicious)."""
    ratio = stat / np.maximum(clean, 1e-3)
    idx, _, _ = mad_anomaly(-np.log(np.maximum(ratio, 1e-6)), min_scale=0.25)
    return idx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--starts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clean-init", action="store_true")
    ap.add_argument("--tag", default="")
    ap.add_argument("--universal", type=float, default=0.0, help="L-inf budget")
    ap.add_argument("--per-class", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ds = load_dataset(a.data, split="test")
    n_cls = int(ds.y.max()) + 1
    model = load_model(a.model, input_shape=ds.input_shape)
    net = torch_module(model)
    for q in net.parameters():
        q.requires_grad_(False)
    init = None
    if a.clean_init:
        rng = np.random.default_rng(a.seed)
        init = torch.from_numpy(
            np.ascontiguousarray(
                ds.model_input(rng.choice(len(ds), a.starts, replace=False)), dtype=np.float32
            )
        )
    t0 = time.perf_counter()
    if a.universal > 0:
        from tripwire.scan.model import stratified_subset

        sub = stratified_subset(ds.y, a.per_class * n_cls, a.seed)
        xs = torch.from_numpy(np.ascontiguousarray(ds.model_input(sub), dtype=np.float32))
        stat = universal_margin(
            net, xs, torch.from_numpy(ds.y[sub]), n_cls, a.universal, a.steps, 16, a.lr, a.seed
        )
        stat = np.maximum(stat, 1e-3)
    else:
        stat = max_margin(net, ds.input_shape, n_cls, a.starts, a.steps, a.lr, a.seed, init)
    dt = time.perf_counter() - t0
    idx, _, _ = mad_anomaly(-np.log(np.maximum(stat, 1e-6)), min_scale=0.25)
    # Each class's own clean margin: the median over correctly classified clean inputs.
    rng = np.random.default_rng(a.seed + 1)
    sel = rng.choice(len(ds), min(len(ds), 50 * n_cls), replace=False)
    xs = torch.from_numpy(np.ascontiguousarray(ds.model_input(sel), dtype=np.float32))
    clean = clean_margins(net, xs, ds.y[sel], n_cls)
    ridx = ratio_index(stat, clean)
    print(
        json.dumps(
            {
                "tag": a.tag,
                "stat": [round(float(s), 2) for s in stat],
                "index": [round(float(v), 2) for v in idx],
                "top": int(np.argmax(idx)),
                "top_index": round(float(idx.max()), 2),
                "class0_index": round(float(idx[0]), 2),
                "clean": [round(float(v), 2) for v in clean],
                "ratio_index": [round(float(v), 2) for v in ridx],
                "ratio_top": int(np.argmax(ridx)),
                "ratio_top_index": round(float(ridx.max()), 2),
                "time_s": round(dt, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
