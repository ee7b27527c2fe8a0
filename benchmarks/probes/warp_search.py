"""Probe: per-class trigger searches for input-dependent and additive full-image triggers.

For each class ``t``, how small a trigger of a given family sends 90% of clean inputs of
other classes to ``t``? An ascending ladder of budgets, projected gradient (Adam + a
projection onto the budget) at each rung, warm-started from the rung below; a class
stops at the first rung where its trigger reaches the attack-success threshold.

- ``warp``: a smooth displacement field, a ``k x k`` control grid upsampled bicubically
  to the image (``grid_sample``, border padding); size = mean displacement in pixels.
- ``additive``: one additive image ``x + delta`` (clipped to [0, 1]); size = L2 norm.

Prints one JSON line per model: sizes per class and the MAD anomaly index of log sizes.

    PYTHONPATH=src python benchmarks/probes/warp_search.py MODEL.pt DATA --family warp
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from clean_inputs import clean_inputs  # type: ignore[import-not-found]

from tripwire.detectors.backdoor.reverse import mad_anomaly


def warp_apply(x: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
    """x (n, c, h, w) warped by each class's field; ctrl (K, 2, k, k) in pixels."""
    kc = ctrl.shape[0]
    n, c, h, w = x.shape
    flow = F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1, 1, h)
    xs = torch.linspace(-1, 1, w)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], -1)[None]  # (1, h, w, 2), grid_sample's (x, y) order
    off = torch.stack([flow[:, 0] * 2 / (w - 1), flow[:, 1] * 2 / (h - 1)], -1)
    grid = (base + off)[:, None].expand(kc, n, h, w, 2).reshape(kc * n, h, w, 2)
    xin = x[None].expand(kc, n, c, h, w).reshape(kc * n, c, h, w)
    return F.grid_sample(xin, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp_size(ctrl: torch.Tensor, h: int, w: int) -> torch.Tensor:
    flow = F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True)
    return flow.pow(2).sum(1).add(1e-12).sqrt().mean(dim=(1, 2))


def add_apply(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    kc = delta.shape[0]
    n, c, h, w = x.shape
    return (x[None] + delta[:, None]).clamp(0, 1).reshape(kc * n, c, h, w)


def add_size(delta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def budget_ladder(forward, x, y, par, apply, size, budgets, lr_of, steps, bs, asr, gen):
    """For each class ``t`` (row ``t`` of ``par``), the smallest budget of ``budgets`` at
    which a trigger of size at most that budget sends ``asr`` of the other classes'
    inputs to ``t``: projected Adam at each rung, warm-started from the rung below.
    ``apply(xb, p)`` gives the ``(len(p) * len(xb), ...)`` triggered batch, ``forward``
    its logits, ``size(p)`` each trigger's size. Returns sizes (inf: never) and the
    last attack success of each class."""
    n_out, n = par.shape[0], x.shape[0]
    sizes = np.full(n_out, np.inf)
    reach = np.zeros(n_out)
    active = np.ones(n_out, dtype=bool)
    tg_all = torch.arange(n_out)
    for b in budgets:
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        p = par[act].clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr_of(b))
        tg = tg_all[act]
        for _ in range(steps):
            bi = torch.randint(0, n, (bs,), generator=gen)
            xb, yb = x[bi], y[bi]
            out = forward(apply(xb, p))
            ce = F.cross_entropy(
                out, tg[:, None].expand(-1, bs).reshape(-1), reduction="none"
            ).reshape(act.size, bs)
            wgt = (yb[None] != tg[:, None]).float()
            loss = ((ce * wgt).sum(1) / wgt.sum(1).clamp(min=1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                p.mul_(torch.clamp(b / size(p), max=1.0).view(-1, *([1] * (p.dim() - 1))))
        with torch.no_grad():
            par[act] = p.detach()
            hits = np.zeros(act.size)
            cnt = np.zeros(act.size)
            for lo in range(0, n, 50):
                xb, yb = x[lo : lo + 50], y[lo : lo + 50]
                pred = forward(apply(xb, p)).reshape(act.size, len(xb), -1).argmax(-1)
                keep = yb[None] != tg[:, None]
                hits += ((pred == tg[:, None]) & keep).sum(1).numpy()
                cnt += keep.sum(1).numpy()
            rate = hits / np.maximum(cnt, 1)
        reach[act] = rate
        ok = rate >= asr
        sizes[act[ok]] = b
        active[act[ok]] = False
    return sizes, reach


def ladder_search(
    net, x, y, n_out, family, k, budgets, steps, bs, asr, seed
) -> tuple[np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    _, c, h, w = x.shape
    if family == "warp":
        par = torch.randn((n_out, 2, k, k), generator=gen) * 0.01
        apply, size = warp_apply, warp_size
    else:
        par = torch.randn((n_out, c, h, w), generator=gen) * 1e-3
        apply, size = add_apply, add_size
    return budget_ladder(
        net,
        x,
        y,
        par,
        apply,
        lambda p: size(p, h, w),
        budgets,
        lambda b: b / 10 if family == "warp" else b / 50,
        steps,
        bs,
        asr,
        gen,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--family", choices=["warp", "additive"], default="warp")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--asr", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(2)
    net, x, y_np, n_cls = clean_inputs(a.model, a.data, a.per_class, a.seed)
    y = torch.from_numpy(y_np)
    for q in net.parameters():
        q.requires_grad_(False)
    if a.family == "warp":
        budgets = [0.125 * 2 ** (i / 2) for i in range(15)]  # 0.125 .. 16 px
    else:
        budgets = [0.25 * 2 ** (i / 2) for i in range(15)]  # L2 0.25 .. 32
    t0 = time.perf_counter()
    sizes, _ = ladder_search(net, x, y, n_cls, a.family, a.k, budgets, a.steps, a.bs, a.asr, a.seed)
    dt = time.perf_counter() - t0
    finite = np.where(np.isfinite(sizes), sizes, budgets[-1] * 2)
    idx_, _, _ = mad_anomaly(np.log(finite), min_scale=0.25)
    print(
        json.dumps(
            {
                "tag": a.tag,
                "family": a.family,
                "k": a.k,
                "sizes": [round(float(s), 3) for s in finite],
                "index": [round(float(v), 2) for v in idx_],
                "top": int(np.argmax(idx_)),
                "top_index": round(float(idx_.max()), 2),
                "class0_index": round(float(idx_[0]), 2),
                "time_s": round(dt, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
