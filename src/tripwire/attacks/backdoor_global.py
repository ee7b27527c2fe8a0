"""Backdoors with image-wide triggers: the ``sig`` signal and the ``wanet`` warp.

Both triggers are invisible to patch-shaped defences: ``sig`` adds a faint horizontal
sinusoid to the whole image and poisons only samples of the target class, which keep
their labels (clean label); ``wanet`` moves pixels along a smooth, fixed warping field
and relabels its victims (dirty label). As in :mod:`tripwire.attacks.backdoor`, each
trigger is a pure function of model-space inputs (float32 NCHW in [0, 1]) and the
recorded parameters; the warping field is regenerated from ``pattern_seed``, so it is
re-applied exactly to test inputs.

References: Barni, Kallas and Tondi, "A New Backdoor Attack in CNNs by Training Set
Corruption Without Label Poisoning", ICIP 2019 (SIG); Nguyen and Tran, "WaNet -
Imperceptible Warping-based Backdoor Attack", ICLR 2021.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.attacks.base import (
    PoisonOutcome,
    PoisonRequest,
    choose,
    dirty_labels,
    register_kind,
    victims_for_target,
)
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset

#: Images warped per block, to bound the memory of the gathers on large sets.
_BLOCK = 1024


# --------------------------------------------------------------------------- sig


def sig_signal(width: int, delta: float, freq: float) -> npt.NDArray[np.float32]:
    """The horizontal sinusoid ``delta * sin(2 pi j freq / W)`` over columns ``j``."""
    j = np.arange(width, dtype=np.float64)
    return (delta * np.sin(2.0 * np.pi * j * freq / width)).astype(np.float32)


def _sig_add(x: npt.NDArray[np.float32], delta: float, freq: float) -> npt.NDArray[np.float32]:
    if not 0.0 < delta <= 1.0:
        raise InputError(f"the signal amplitude must lie in (0, 1], got {delta}", "delta")
    if freq <= 0:
        raise InputError(f"the signal frequency must be positive, got {freq}", "freq")
    signal = sig_signal(x.shape[-1], delta, freq)
    # The same signal on every row and channel: a column-only pattern, as in the paper.
    out: npt.NDArray[np.float32] = np.clip(x + signal[None, None, None, :], 0.0, 1.0)
    return out.astype(np.float32)


def sig_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Add the sinusoid at test strength (``test_delta``, else ``delta``)."""
    test_delta = params.get("test_delta")
    delta = float(params["delta"] if test_delta is None else test_delta)
    return _sig_add(x, delta, float(params["freq"]))


@register_kind(
    "sig",
    trigger=sig_trigger,
    clean_label=True,
    defaults={"delta": 60 / 255, "freq": 6, "test_delta": None},
)
def sig(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """SIG: a horizontal sinusoid added to target-class samples, labels kept.

    ``rate`` is a share of the whole dataset, drawn only from the target class: a
    clean-label backdoor needs a large share of that class (half of it, say) to win
    over the class's natural features. ``delta`` is the training amplitude in [0, 1]
    units, ``freq`` the number of periods across the width (6, as in the paper).
    ``test_delta`` is the amplitude applied to test inputs, by default
    ``1.5 * delta`` (at most 1): like Barni et al., who test with a stronger signal
    than they train with.

    The paper trains with 20/255 over full datasets and long runs. The default 60/255
    is what a short run on a few thousand MNIST digits needs: there, training at 20/255
    to 40/255 gave success rates of 0.09 to 0.45 even when testing at 100/255 (on black
    backgrounds the negative half of the wave is clipped away). Test strength stays at
    1.5x because a much stronger sinusoid (128/255) already sways a clean model
    towards one class.
    """
    if req.target is None:
        raise InputError(
            "the 'sig' attack needs --target CLASS (it poisons that class)", "--target"
        )
    if req.all_to_all or req.source is not None:
        raise InputError(
            "the 'sig' attack is clean-label: it takes victims from --target only "
            "(no --source or --all-to-all)",
            "--target",
        )
    rng = np.random.default_rng(req.seed)
    params = dict(req.params)
    params["delta"] = float(params["delta"])
    if params["test_delta"] is None:
        params["test_delta"] = min(1.0, 1.5 * params["delta"])
    params["test_delta"] = float(params["test_delta"])
    if not 0.0 < params["test_delta"] <= 1.0:
        raise InputError(
            f"the test amplitude must lie in (0, 1], got {params['test_delta']}", "test_delta"
        )
    n = round(req.rate * len(ds))
    pool = np.flatnonzero(ds.y == req.target).astype(np.int64)
    idx = choose(rng, pool, n, f"samples of target class {req.target}", ds.path)
    x = _sig_add(ds.model_input(idx), params["delta"], float(params["freq"]))
    return PoisonOutcome(indices=idx, x_model=x, y=None, params=params)


# --------------------------------------------------------------------------- wanet


def _cubic_matrix(n_out: int, n_in: int) -> npt.NDArray[np.float64]:
    """Bicubic (a = -0.75) upsampling weights with aligned corners, shape (n_out, n_in)."""
    a = -0.75
    m = np.zeros((n_out, n_in))
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for i in range(n_out):
        src = i * scale
        base = int(np.floor(src))
        t = src - base
        for off in (-1, 0, 1, 2):
            d = abs(t - off)
            if d <= 1.0:
                wgt = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
            elif d < 2.0:
                wgt = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
            else:
                continue
            # Out-of-range taps reuse the border sample, as torch's bicubic does.
            m[i, min(max(base + off, 0), n_in - 1)] += wgt
    return m


def warp_field(h: int, w: int, k: int, pattern_seed: int) -> npt.NDArray[np.float64]:
    """The normalised displacement field, shape (2, H, W) (x then y), mean |ctrl| = 1.

    A random ``k x k`` control grid in [-1, 1] per axis, divided by its mean absolute
    value and upsampled bicubically to the image size.
    """
    if k < 2 or k > min(h, w):
        raise InputError(f"the control grid size k must lie in 2..{min(h, w)}, got {k}", "k")
    ctrl = np.random.default_rng(pattern_seed).uniform(-1.0, 1.0, (2, k, k))
    ctrl /= np.abs(ctrl).mean()
    my, mx = _cubic_matrix(h, k), _cubic_matrix(w, k)
    field: npt.NDArray[np.float64] = np.einsum("hk,ckl,wl->chw", my, ctrl, mx)
    return field


def _source_coords(
    h: int, w: int, params: dict[str, Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pixel coordinates each output pixel samples from, shape (H, W) each."""
    s = float(params["s"])
    if s <= 0:
        raise InputError(f"the warping strength s must be positive, got {s}", "s")
    field = warp_field(h, w, int(params["k"]), int(params["pattern_seed"]))
    yy, xx = np.indices((h, w), dtype=np.float64)
    # WaNet offsets the [-1, 1] sampling grid by s * field / size; in pixels (aligned
    # corners) that is s * field * (size - 1) / (2 * size).
    sx = xx + s * field[0] * (w - 1) / (2.0 * w)
    sy = yy + s * field[1] * (h - 1) / (2.0 * h)
    return sy, sx


def bilinear_sample(
    x: npt.NDArray[np.float32], sy: npt.NDArray[np.float64], sx: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Sample ``x`` (N, C, H, W) at pixel coordinates ``sy``/``sx`` ((H, W) or (N, H, W)).

    Coordinates are clamped to the image, as WaNet clamps its grid to [-1, 1].
    """
    n, c, h, w = x.shape
    sy = np.broadcast_to(np.clip(sy, 0.0, h - 1), (n, h, w))
    sx = np.broadcast_to(np.clip(sx, 0.0, w - 1), (n, h, w))
    out = np.empty_like(x)
    ch = np.arange(c)[None, :, None, None]
    for s in range(0, n, _BLOCK):
        yb, xb = sy[s : s + _BLOCK], sx[s : s + _BLOCK]
        y0 = np.floor(yb).astype(np.int64)
        x0 = np.floor(xb).astype(np.int64)
        y1 = np.minimum(y0 + 1, h - 1)
        x1 = np.minimum(x0 + 1, w - 1)
        wy = (yb - y0)[:, None].astype(np.float32)
        wx = (xb - x0)[:, None].astype(np.float32)
        img = x[s : s + _BLOCK]
        nb = np.arange(img.shape[0])[:, None, None, None]
        y0, y1, x0, x1 = y0[:, None], y1[:, None], x0[:, None], x1[:, None]
        top = img[nb, ch, y0, x0] * (1 - wx) + img[nb, ch, y0, x1] * wx
        bottom = img[nb, ch, y1, x0] * (1 - wx) + img[nb, ch, y1, x1] * wx
        out[s : s + _BLOCK] = top * (1 - wy) + bottom * wy
    return out


def wanet_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Warp each input along the fixed field drawn from ``pattern_seed``."""
    sy, sx = _source_coords(x.shape[2], x.shape[3], params)
    return bilinear_sample(x, sy, sx)


def _noise_warp(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """The fixed warp plus per-sample, per-pixel noise of up to half a pixel ("cross")."""
    n, _, h, w = x.shape
    sy, sx = _source_coords(h, w, params)
    # WaNet adds uniform [-1, 1] / size to the normalised grid: about +-0.5 px.
    ny = rng.uniform(-1.0, 1.0, (n, h, w)) * (h - 1) / (2.0 * h)
    nx = rng.uniform(-1.0, 1.0, (n, h, w)) * (w - 1) / (2.0 * w)
    return bilinear_sample(x, sy[None] + ny, sx[None] + nx)


@register_kind(
    "wanet",
    trigger=wanet_trigger,
    defaults={"k": 4, "s": 0.5, "noise_rate": 0.0, "pattern_seed": 0},
)
def wanet(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """WaNet: a smooth, fixed warping field applied to victims, who get the target label.

    ``k`` is the control-grid size, ``s`` the strength (pixels move by about ``s / 2``
    on average); the field comes from ``pattern_seed``. Noise mode (``noise_rate`` > 0,
    the paper uses twice the poison rate) warps an extra share of the dataset with the
    field plus random per-pixel noise and keeps their TRUE labels, so that the model
    learns the exact field rather than any warp. Those "cross" samples are marked
    ``poisoned`` too, since their pixels changed.

    The default ``s = 0.5`` is the paper's invisible warp (about 0.2 px), learnt over
    long runs; a short run on a few thousand MNIST digits ignores it (success rate
    0.08 with 10% poisoned) and needs ``s`` of 5 to 6 (0.93 at ``s = 6``).
    """
    noise_rate = float(req.params["noise_rate"])
    if not 0.0 <= noise_rate < 1.0:
        raise InputError(f"noise_rate must lie in [0, 1), got {noise_rate}", "noise_rate")
    rng = np.random.default_rng(req.seed)
    params = dict(req.params)
    idx = victims_for_target(ds, req, rng)
    x = wanet_trigger(ds.model_input(idx), params, rng)
    y = dirty_labels(ds, idx, req)
    n_noise = round(noise_rate * len(ds))
    if n_noise:
        rest = np.setdiff1d(np.arange(len(ds), dtype=np.int64), idx)
        cross = choose(rng, rest, n_noise, "noise-mode samples", ds.path)
        x = np.concatenate([x, _noise_warp(ds.model_input(cross), params, rng)])
        y = np.concatenate([y, ds.y[cross]])
        order = np.argsort(np.concatenate([idx, cross]), kind="stable")
        idx = np.concatenate([idx, cross])[order]
        x, y = x[order], y[order]
    return PoisonOutcome(indices=idx, x_model=x, y=y.astype(np.int64), params=params)
