"""Trigger reverse-engineering for every class at once, and the MAD outlier rule.

One engine serves three searches (all with Neural Cleanse's loss and cost schedule):

- ``patch`` (Neural Cleanse's trigger form): per class, a mask ``(H, W)`` and a pattern
  ``(C, H, W)``; loss = cross-entropy to the class + ``cost * |mask|_1``. A patch
  backdoor's target needs a much smaller mask than every other class.
- ``blend``: per class, ONE opacity ``alpha`` (a uniform mask) over a full-image
  pattern: ``x * (1 - alpha) + pattern * alpha``. Neural Cleanse fails on full-image
  triggers (blended, SIG, warping: BackdoorBench leaves 99.9% attack success on Blended
  and 98% on SIG after NC) because their mask is the whole image, so its L1 norm is as
  large as any clean class's. A blend-form search asks the question those attacks
  answer: how faint can a whole-image pattern be and still send inputs to the class?
  A model that learned "this faint global pattern means class t" needs a far smaller
  opacity for t than for the others. The trigger keeps the (mask, pattern) form, so
  ``ReversedTrigger.apply`` stamps it like any other.
- class by class with Neural Cleanse's published defaults
  (:data:`NEURAL_CLEANSE_DEFAULTS`), the baseline for speed.

Speed comes from batching: ``K`` classes x a small clean batch go through the model in
ONE forward/backward pass per step (Adam is elementwise, so each class's parameters
still move only by their own loss), and each class stops on its own once its attack
success holds at the threshold and its mask norm stops shrinking.

NumPy in and out; torch stays inside (the model facade's TorchScript module).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tripwire.detectors.backdoor.trigger import ReversedTrigger
from tripwire.errors import InputError
from tripwire.models.loading import Model

#: Neural Cleanse's consistency constant: MAD * 1.4826 estimates a normal sigma.
MAD_CONSISTENCY = 1.4826

#: Pixels (images x H x W) per forward/backward chunk of a batched step. On a CPU a
#: step over all K classes at once (120 CIFAR images) runs 10-20% slower per image than
#: the same step in chunks of about 64 images, whose activations stay in cache; the
#: gradients are summed, so the step is the same.
CHUNK_PIXELS = 64 * 32 * 32

MaskMode = Literal["patch", "blend"]


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameters of one trigger search (Neural Cleanse's names where it has them).

    Attributes
    ----------
    mask
        ``patch`` (free mask, NC) or ``blend`` (one opacity per class over the image).
    batch_size
        Clean inputs per class per step.
    steps_per_epoch
        Optimiser steps between two updates of the cost schedule (NC: one pass over its
        sample, ``ceil(N / batch_size)``); ``None`` means that.
    max_epochs
        Hard limit on schedule epochs per class (NC: 1000).
    lr, betas
        Adam (NC: 0.1, (0.5, 0.9)).
    init_cost
        The cost set once the attack first succeeds (NC: 1e-3).
    asr_threshold
        Attack success a trigger must reach (NC: 0.99).
    patience
        Epochs above (below) the threshold before the cost goes up (down) (NC: 5).
    cost_up, cost_down
        Cost multipliers (NC: 2 and 2**1.5).
    early_stop_patience
        Epochs without the best norm shrinking by ``early_stop_threshold`` before a class
        stops, once the cost has gone both up and down (NC: 25, threshold 1.0).
    exclude_target
        Measure loss and attack success on inputs not already of the class (NC: False).
    """

    mask: MaskMode = "patch"
    batch_size: int = 12
    steps_per_epoch: int | None = 4
    max_epochs: int = 60
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    init_cost: float = 1e-3
    asr_threshold: float = 0.99
    patience: int = 2
    cost_up: float = 2.0
    cost_down: float = 2.0**1.5
    early_stop_patience: int = 6
    early_stop_threshold: float = 0.99
    exclude_target: bool = True


#: Neural Cleanse's published defaults (bolunwang/backdoor, gtsrb_visualize_example.py).
NEURAL_CLEANSE_DEFAULTS = SearchConfig(
    mask="patch",
    batch_size=32,
    steps_per_epoch=None,
    max_epochs=1000,
    lr=0.1,
    betas=(0.5, 0.9),
    init_cost=1e-3,
    asr_threshold=0.99,
    patience=5,
    cost_up=2.0,
    cost_down=2.0**1.5,
    early_stop_patience=25,
    early_stop_threshold=1.0,
    exclude_target=False,
)


@dataclass
class SearchResult:
    """What one search found for each of its target classes."""

    triggers: list[ReversedTrigger]
    norms: npt.NDArray[np.float64]
    converged: npt.NDArray[np.bool_]
    epochs: npt.NDArray[np.int64]
    time_s: float
    config: SearchConfig
    device: str = "cpu"
    forward_images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def mad_anomaly(
    norms: npt.ArrayLike, *, min_scale: float = 0.0
) -> tuple[npt.NDArray[np.float64], float, float]:
    """Neural Cleanse's anomaly index of each class: ``(median - norm) / (1.4826 * MAD)``.

    Positive below the median (a small trigger, suspicious), negative above. Returns the
    per-class index, the median and the scale used (``max(1.4826 * MAD, min_scale)``). A
    zero scale (all norms equal) gives index 0 at the median and +-inf off it.
    """
    v = np.asarray(norms, dtype=np.float64)
    if v.ndim != 1 or v.size < 3:
        raise InputError(f"the MAD rule needs at least 3 classes, got {v.size}", "classes")
    med = float(np.median(v))
    mad = max(MAD_CONSISTENCY * float(np.median(np.abs(v - med))), min_scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = (
            np.where(v == med, 0.0, (med - v) / mad)
            if mad > 0
            else np.where(v == med, 0.0, np.sign(med - v) * np.inf)
        )
    return np.asarray(idx, dtype=np.float64), med, mad


def torch_module(model: Model) -> Any:
    """The model's torch module (gradients are needed), or a one-line error."""
    if model.kind == "onnx" or model._module is None:
        raise InputError(
            "trigger reverse-engineering needs gradients: give a TorchScript model "
            "(or a state dict with --arch), not an ONNX graph",
            model.path,
        )
    return model._module


def search_triggers(
    model: Model,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    targets: list[int] | None = None,
    config: SearchConfig | None = None,
    random_state: int = 0,
    class_by_class: bool = False,
) -> SearchResult:
    """Reverse-engineer a trigger for each class in ``targets`` from clean ``x, y``.

    Parameters
    ----------
    model
        A loaded model (TorchScript or state dict; gradients are taken through it).
    x, y
        Clean inputs, float32 NCHW in [0, 1], and their labels.
    targets
        Classes to search (default: every output of the model).
    config
        Search settings; :data:`NEURAL_CLEANSE_DEFAULTS` reproduces NC.
    class_by_class
        Search one class after the other (NC's way) instead of all at once.

    Raises
    ------
    InputError
        An ONNX model, inputs that are not images, an empty clean set.
    """
    cfg = config or SearchConfig()
    xa = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    ya = np.asarray(y, dtype=np.int64)
    if xa.ndim != 4:
        raise InputError(f"trigger search needs images (N, C, H, W), got {xa.shape}", "data")
    if len(xa) == 0 or len(xa) != len(ya):
        raise InputError("the clean set is empty or its labels do not match", "data")
    net = torch_module(model)
    n_out = model.num_classes or int(model.logits(xa[:1]).shape[1])
    tlist = list(range(n_out)) if targets is None else [int(t) for t in targets]
    return search_module(
        net,
        xa,
        ya,
        tlist,
        config=cfg,
        device=model.device,
        random_state=random_state,
        class_by_class=class_by_class,
    )


def search_module(
    net: Any,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    targets: list[int],
    *,
    config: SearchConfig | None = None,
    device: str = "cpu",
    random_state: int = 0,
    class_by_class: bool = False,
) -> SearchResult:
    """:func:`search_triggers` on a torch module directly (inputs already checked):
    ``repair`` searches the model it is fine-tuning, which has no :class:`Model` facade."""
    import torch

    cfg = config or SearchConfig()
    dev = torch.device(device)
    t0 = time.perf_counter()
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y).to(dev)
    gen = torch.Generator(device="cpu").manual_seed(random_state)
    groups = [[t] for t in targets] if class_by_class else [targets]
    parts = [_search(net, xt, yt, g, cfg, gen) for g in groups]
    masks = np.concatenate([p[0] for p in parts])
    patterns = np.concatenate([p[1] for p in parts])
    norms = np.concatenate([p[2] for p in parts])
    conv = np.concatenate([p[3] for p in parts])
    epochs = np.concatenate([p[4] for p in parts])
    images = int(sum(p[5] for p in parts))
    success = _attack_success(net, xt, yt, targets, masks, patterns)
    elapsed = time.perf_counter() - t0
    method = "neural-cleanse" if class_by_class else f"{cfg.mask}-batched"
    trig = [
        ReversedTrigger(
            target=t,
            mask=np.clip(masks[i], 0.0, 1.0),
            pattern=np.clip(patterns[i], 0.0, 1.0),
            method=method,
            attack_success=float(success[i]),
            extra={"converged": bool(conv[i]), "epochs": int(epochs[i])},
        )
        for i, t in enumerate(targets)
    ]
    return SearchResult(
        triggers=trig,
        norms=norms.astype(np.float64),
        converged=conv,
        epochs=epochs,
        time_s=elapsed,
        config=cfg,
        device=str(dev),
        forward_images=images,
    )


def _search(
    net: Any, xt: Any, yt: Any, targets: list[int], cfg: SearchConfig, gen: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The batched search over ``targets``; returns masks, patterns, norms, converged,
    epochs and the number of images pushed through the model."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    k = len(targets)
    n, c, h, w = (int(s) for s in xt.shape)
    dev = xt.device
    bs = min(cfg.batch_size, n)
    steps = cfg.steps_per_epoch or max(1, math.ceil(n / bs))
    area = float(h * w)
    per_chunk = max(1, CHUNK_PIXELS // (bs * h * w))
    # NC's initialisation: random mask and pattern, in tanh space.
    mshape = (k, 1, h, w) if cfg.mask == "patch" else (k, 1, 1, 1)
    m0 = torch.rand(mshape, generator=gen) if cfg.mask == "patch" else torch.full(mshape, 0.3)
    p0 = torch.rand((k, c, h, w), generator=gen)
    eps = 1e-4
    mask_p = torch.atanh((m0 - 0.5) * (2 - eps)).to(dev).requires_grad_(True)
    pat_p = torch.atanh((p0 - 0.5) * (2 - eps)).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([mask_p, pat_p], lr=cfg.lr, betas=cfg.betas)
    tgt_all = torch.as_tensor(targets, dtype=torch.int64, device=dev)

    cost = np.zeros(k)
    set_counter = np.zeros(k, dtype=np.int64)
    up_counter = np.zeros(k, dtype=np.int64)
    down_counter = np.zeros(k, dtype=np.int64)
    up_flag = np.zeros(k, dtype=bool)
    down_flag = np.zeros(k, dtype=bool)
    reg_best = np.full(k, np.inf)
    es_best = np.full(k, np.inf)
    es_counter = np.zeros(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    epochs = np.zeros(k, dtype=np.int64)
    best_m = np.zeros((k, h, w), dtype=np.float32)
    best_p = np.zeros((k, c, h, w), dtype=np.float32)
    images = 0

    def current(rows: Any) -> tuple[Any, Any]:
        m = (torch.tanh(mask_p[rows]) / (2 - eps) + 0.5).expand(-1, 1, h, w)
        p = torch.tanh(pat_p[rows]) / (2 - eps) + 0.5
        return m, p

    for _ in range(cfg.max_epochs):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        rows = torch.as_tensor(act, dtype=torch.int64, device=dev)
        tgt = tgt_all[rows]
        cost_t = torch.as_tensor(cost[act], dtype=torch.float32, device=dev)
        acc_sum = np.zeros(act.size)
        reg_sum = np.zeros(act.size)
        for _ in range(steps):
            bi = torch.randint(0, n, (bs,), generator=gen).to(dev)
            xb, yb = xt[bi], yt[bi]
            gm = torch.zeros_like(mask_p)
            gp = torch.zeros_like(pat_p)
            # Each class's loss depends on its own trigger only, so the classes can go
            # through the model in chunks and the gradients add up to the whole step's.
            for lo in range(0, act.size, per_chunk):
                sl = slice(lo, min(lo + per_chunk, act.size))
                kc = sl.stop - sl.start
                m, p = current(rows[sl])
                xin = xb[None] * (1 - m[:, None]) + (p * m)[:, None]
                logits = net(xin.reshape(kc * bs, c, h, w)).reshape(kc, bs, -1)
                tg = tgt[sl, None].expand(kc, bs)
                ce = F.cross_entropy(
                    logits.reshape(kc * bs, -1), tg.reshape(-1), reduction="none"
                ).reshape(kc, bs)
                wgt = (yb[None] != tg).float() if cfg.exclude_target else torch.ones_like(ce)
                denom = wgt.sum(1).clamp(min=1.0)
                l1 = m.abs().sum(dim=(1, 2, 3))
                loss = ((ce * wgt).sum(1) / denom + cost_t[sl] * l1).sum()
                dm, dp = torch.autograd.grad(loss, [mask_p, pat_p])
                gm += dm
                gp += dp
                with torch.no_grad():
                    hit = (logits.argmax(-1) == tg).float()
                    acc_sum[sl] += ((hit * wgt).sum(1) / denom).cpu().numpy()
                    reg_sum[sl] += l1.detach().cpu().numpy()
            mask_p.grad, pat_p.grad = gm, gp
            opt.step()
            images += act.size * bs
        avg_acc = acc_sum / steps
        avg_reg = reg_sum / steps
        epochs[act] += 1
        with torch.no_grad():
            m_now, p_now = current(rows)
        better = (avg_acc >= cfg.asr_threshold) & (avg_reg < reg_best[act])
        if better.any():
            sel = act[better]
            best_m[sel] = m_now[better][:, 0].cpu().numpy()
            best_p[sel] = p_now[better].cpu().numpy()
            reg_best[sel] = avg_reg[better]
        # Early stop (NC): once a trigger exists and the cost went both ways, stop when
        # the best norm has not shrunk by the threshold for early_stop_patience epochs.
        found = np.isfinite(reg_best[act])
        stale = found & (reg_best[act] >= cfg.early_stop_threshold * es_best[act])
        es_counter[act] = np.where(stale, es_counter[act] + 1, 0)
        es_best[act] = np.minimum(es_best[act], reg_best[act])
        done = up_flag[act] & down_flag[act] & (es_counter[act] >= cfg.early_stop_patience)
        # Cost schedule (NC): set the cost once the attack succeeds, then raise it while
        # it keeps succeeding and lower it while it fails.
        ok = avg_acc >= cfg.asr_threshold
        zero = cost[act] == 0
        set_counter[act] = np.where(zero & ok, set_counter[act] + 1, 0)
        newly = zero & (set_counter[act] >= cfg.patience)
        up_counter[act] = np.where(ok, up_counter[act] + 1, 0)
        down_counter[act] = np.where(ok, 0, down_counter[act] + 1)
        go_up = ~zero & (up_counter[act] >= cfg.patience)
        go_down = ~zero & ~go_up & (down_counter[act] >= cfg.patience)
        c_new = cost[act].copy()
        c_new[newly] = cfg.init_cost
        c_new[go_up] *= cfg.cost_up
        c_new[go_down] /= cfg.cost_down
        up_counter[act[go_up | newly]] = 0
        down_counter[act[go_down | newly]] = 0
        up_flag[act[go_up]] = True
        down_flag[act[go_down]] = True
        cost[act] = c_new
        active[act[done]] = False

    converged = np.isfinite(reg_best)
    # A class whose attack never reached the threshold keeps its last trigger; its norm is
    # that trigger's, so it ranks as hard to reach (as it is).
    if (~converged).any():
        sel = np.flatnonzero(~converged)
        rows = torch.as_tensor(sel, dtype=torch.int64, device=dev)
        with torch.no_grad():
            m_now, p_now = current(rows)
        best_m[sel] = m_now[:, 0].cpu().numpy()
        best_p[sel] = p_now.cpu().numpy()
        reg_best[sel] = best_m[sel].reshape(sel.size, -1).sum(1)
    norms = best_m.reshape(k, -1).sum(1).astype(np.float64)
    if cfg.mask == "blend":
        norms = norms / area  # report the opacity itself: one number per class
    return best_m, best_p, norms, converged, epochs, images


def _attack_success(
    net: Any, xt: Any, yt: Any, targets: list[int], masks: np.ndarray, patterns: np.ndarray
) -> npt.NDArray[np.float64]:
    """Share of clean inputs not of each target that its trigger sends there."""
    import torch

    out = np.zeros(len(targets))
    dev = xt.device
    with torch.inference_mode():
        for i, t in enumerate(targets):
            keep = yt != t
            if not bool(keep.any()):
                continue
            xs = xt[keep]
            m = torch.from_numpy(masks[i]).to(dev)[None, None]
            p = torch.from_numpy(patterns[i]).to(dev)[None]
            hits = 0
            for s in range(0, len(xs), 512):
                xb = xs[s : s + 512]
                pred = net(xb * (1 - m) + p * m).argmax(1)
                hits += int((pred == t).sum())
            out[i] = hits / len(xs)
    return out


def with_steps(cfg: SearchConfig, **changes: Any) -> SearchConfig:
    """A copy of ``cfg`` with some fields changed (for benchmarks and tests)."""
    return replace(cfg, **changes)
