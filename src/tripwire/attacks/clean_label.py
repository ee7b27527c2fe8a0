"""Backdoors built to slip past label audits and latent-space defences.

``label-consistent`` poisons only samples of the target class and keeps their labels:
each victim is first pushed away from its class by a small adversarial perturbation,
so that the model cannot fit it from its natural features and leans on the trigger
instead. The adversary here is a multinomial logistic-regression surrogate trained on
the clean pixels in NumPy (no torch needed, seconds even on CIFAR-sized data); its
input gradient is exact, and on a linear model PGD moves pixels along class templates
rather than along one network's quirks. Turner et al. use an adversarially trained
network (or a GAN) instead, so this is the cheaper, weaker variant of the same idea.

``adaptive`` follows Adaptive-Blend: victims carry only a random subset of the pieces
of a blend pattern at a low opacity, and extra "cover" samples carry partial triggers
under their TRUE labels, so that poisoned and clean samples stay close in feature
space; the full pattern at a higher opacity triggers the backdoor at test time.

References: Turner, Tsipras and Madry, "Label-Consistent Backdoor Attacks", 2019
(arXiv:1912.02771); Qi, Xie, Li, Wang and Mittal, "Revisiting the Assumption of Latent
Separability for Backdoor Defenses", ICLR 2023.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from tripwire.attacks.backdoor import _default_size, badnets_trigger, blend_pattern
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

#: The surrogate is fitted on at most this many samples, to bound its cost.
SURROGATE_SAMPLES = 10_000
#: L-BFGS iterations of the surrogate fit (fixed, so that the attack is reproducible).
SURROGATE_ITERS = 50
#: L2 penalty of the surrogate: mild, so that its weights stay template-like.
SURROGATE_L2 = 1e-3
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


# ------------------------------------------------------------------- label-consistent


def _stamp(
    x: npt.NDArray[np.float32],
    params: dict[str, Any],
    amplitude: float,
    rng: np.random.Generator,
    name: str = "amplitude",
) -> npt.NDArray[np.float32]:
    """BadNets patches in one or all four corners, blended in at ``amplitude``."""
    if not 0.0 < amplitude <= 1.0:
        raise InputError(f"the patch amplitude must lie in (0, 1], got {amplitude}", name)
    corners = int(params["corners"])
    if corners == 1:
        stamped = badnets_trigger(x, params, rng)
    elif corners == 4:
        stamped = x
        for corner in CORNERS:
            stamped = badnets_trigger(stamped, {**params, "position": corner}, rng)
    else:
        raise InputError(f"corners must be 1 or 4, got {corners}", "corners")
    return (x + amplitude * (stamped - x)).astype(np.float32)


def label_consistent_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Stamp the corner patch(es) at test strength (``test_amplitude``)."""
    return _stamp(x, params, float(params["test_amplitude"]), rng, "test_amplitude")


def _fit_surrogate(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], n_classes: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Multinomial logistic regression on pixels: weights (D, K) and bias (K,)."""
    n, d = x.shape
    onehot = np.eye(n_classes)[y]
    xd = x.astype(np.float64)

    def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes :]
        logp = log_softmax(xd @ w + b, axis=1)
        err = (np.exp(logp) - onehot) / n
        value = -float((onehot * logp).sum()) / n + SURROGATE_L2 * float((w * w).sum())
        grad_w = xd.T @ err + 2.0 * SURROGATE_L2 * w
        return value, np.concatenate([grad_w.ravel(), err.sum(0)])

    theta0 = np.zeros(d * n_classes + n_classes)
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": SURROGATE_ITERS})
    theta = np.asarray(res.x)
    return theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]


def pgd_linear(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    eps: float,
    steps: int,
) -> npt.NDArray[np.float32]:
    """L_inf PGD raising the cross-entropy of the true labels under a linear model."""
    shape = x.shape
    x0 = x.reshape(len(x), -1).astype(np.float64)
    onehot = np.eye(w.shape[1])[y]
    step = 2.5 * eps / steps  # the usual PGD step: enough to cross the ball and settle
    adv = x0.copy()
    for _ in range(steps):
        grad = (softmax(adv @ w + b, axis=1) - onehot) @ w.T
        adv = np.clip(adv + step * np.sign(grad), x0 - eps, x0 + eps)
        adv = np.clip(adv, 0.0, 1.0)
    return adv.reshape(shape).astype(np.float32)


@register_kind(
    "label-consistent",
    trigger=label_consistent_trigger,
    clean_label=True,
    defaults={
        "eps": 16 / 255,
        "steps": 10,
        "corners": 4,
        "amplitude": 1.0,
        "test_amplitude": None,
        "size": None,
        "position": "bottom-right",
        "pattern": "checker",
        "color": 1.0,
        "margin": 1,
        "pattern_seed": 0,
    },
)
def label_consistent(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Label-consistent: target-class samples made hard by PGD, then patched; labels kept.

    ``eps`` bounds the L_inf perturbation (16/255 as in the paper), found with
    ``steps`` PGD steps against a logistic-regression surrogate fitted on the clean
    data (see the module docstring). On MNIST-like data 16/255 hardly matters (their
    usual threat model is 0.3): in single short runs on 2,000 digits with 2% poisoned,
    the patch alone reached a success rate of 0.33, with eps 16/255 0.11, with 0.3 0.44;
    with 5% poisoned all three reached 1.0.
    The trigger is a BadNets patch (``size``, ``pattern``, ``color``, ``margin``,
    ``pattern_seed`` as for ``badnets``) in all four corners (``corners=4``, which
    survives crops and flips) or at ``position`` (``corners=1``), blended in at
    ``amplitude``; test inputs get it at ``test_amplitude`` (default ``amplitude``).
    ``rate`` is a share of the whole dataset, drawn only from the target class.
    """
    if req.target is None:
        raise InputError(
            "the 'label-consistent' attack needs --target CLASS (it poisons that class)",
            "--target",
        )
    if req.all_to_all or req.source is not None:
        raise InputError(
            "the 'label-consistent' attack is clean-label: it takes victims from --target "
            "only (no --source or --all-to-all)",
            "--target",
        )
    params = dict(req.params)
    eps = float(params["eps"])
    steps = int(params["steps"])
    if not 0.0 < eps <= 1.0:
        raise InputError(f"eps must lie in (0, 1], got {eps}", "eps")
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}", "steps")
    if params["size"] is None:
        params["size"] = _default_size(ds)
    params["amplitude"] = float(params["amplitude"])
    if params["test_amplitude"] is None:
        params["test_amplitude"] = params["amplitude"]
    params["test_amplitude"] = float(params["test_amplitude"])
    params["eps"] = eps
    rng = np.random.default_rng(req.seed)
    # Check the trigger parameters on a blank image before the costly surrogate fit.
    blank = np.zeros((1, *ds.input_shape), np.float32)
    for amp in ("amplitude", "test_amplitude"):
        _stamp(blank, params, float(params[amp]), np.random.default_rng(0), amp)
    n = round(req.rate * len(ds))
    pool = np.flatnonzero(ds.y == req.target).astype(np.int64)
    idx = choose(rng, pool, n, f"samples of target class {req.target}", ds.path)

    fit_idx = np.arange(len(ds))
    if len(ds) > SURROGATE_SAMPLES:
        fit_idx = np.sort(rng.choice(len(ds), SURROGATE_SAMPLES, replace=False))
    x_fit = ds.model_input(fit_idx).reshape(len(fit_idx), -1)
    w, b = _fit_surrogate(x_fit, ds.y[fit_idx], max(ds.n_classes, int(ds.y.max()) + 1))
    hard = pgd_linear(ds.model_input(idx), ds.y[idx], w, b, eps, steps)
    x = _stamp(hard, params, params["amplitude"], rng)
    return PoisonOutcome(indices=idx, x_model=x, y=None, params=params)


# ------------------------------------------------------------------------- adaptive


def piece_masks(h: int, w: int, pieces: int) -> npt.NDArray[np.bool_]:
    """The image split into a ``g x g`` grid of pieces (``pieces = g * g``): (P, H, W)."""
    g = round(pieces**0.5)
    if pieces < 4 or g * g != pieces or g > min(h, w):
        raise InputError(
            f"pieces must be a square number from 4 to {min(h, w) ** 2} (2x2 up to one "
            f"pixel per piece), got {pieces}",
            "pieces",
        )
    rows = np.linspace(0, h, g + 1).round().astype(int)
    cols = np.linspace(0, w, g + 1).round().astype(int)
    masks = np.zeros((pieces, h, w), dtype=bool)
    for i in range(g):
        for j in range(g):
            masks[i * g + j, rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = True
    return masks


def _blend(
    x: npt.NDArray[np.float32], pattern: npt.NDArray[np.float32], weight: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    return (x + weight * (pattern - x)).astype(np.float32)


def adaptive_trigger(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """The full blend pattern at ``test_alpha`` (training poisons carry only pieces)."""
    alpha = float(params["test_alpha"])
    if not 0.0 < alpha <= 1.0:
        raise InputError(f"test_alpha must lie in (0, 1], got {alpha}", "test_alpha")
    pattern = blend_pattern(x.shape[1:], str(params["pattern"]), int(params["pattern_seed"]))
    return _blend(x, pattern[None], np.full((1, 1, 1, 1), alpha, np.float32))


def _partial(
    x: npt.NDArray[np.float32], params: dict[str, Any], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Each input gets its own random ``keep`` share of the pattern's pieces at ``alpha``."""
    _, c, h, w = x.shape
    masks = piece_masks(h, w, int(params["pieces"]))
    n_keep = max(1, round(float(params["keep"]) * len(masks)))
    chosen = np.stack([rng.permutation(len(masks))[:n_keep] for _ in range(len(x))])
    mask = np.any(masks[chosen], axis=1)[:, None].astype(np.float32)  # (N, 1, H, W)
    pattern = blend_pattern((c, h, w), str(params["pattern"]), int(params["pattern_seed"]))
    return _blend(x, pattern[None], float(params["alpha"]) * mask)


@register_kind(
    "adaptive",
    trigger=adaptive_trigger,
    defaults={
        "alpha": 0.2,
        "test_alpha": 0.3,
        "pieces": 16,
        "keep": 0.5,
        "cover_rate": None,
        "pattern": "stripes",
        "pattern_seed": 0,
    },
)
def adaptive(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Adaptive-Blend: partial, faint blend triggers on victims plus true-label covers.

    The blend pattern (``pattern``, ``pattern_seed`` as for ``blend``) is cut into
    ``pieces`` (a square number: a grid); each victim and each cover sample carries a
    random ``keep`` share of them at opacity ``alpha``. Victims get the target label
    (or ``c + 1`` with all-to-all); ``cover_rate`` (default: the poison rate) more of
    the dataset carry partial triggers under their TRUE labels, and are marked
    ``poisoned`` too, since their pixels changed. Test inputs get the whole pattern at
    ``test_alpha``.

    Qi et al. blend a picture at 0.15 (0.2 at test) and train for long. On a short run
    over a few thousand MNIST digits that left the attack at chance, and so did a
    ``noise`` pattern, which random-crop augmentation turns into mere "noise present"
    (a cue the covers contradict); the defaults, ``stripes`` at 0.2 and 0.3, are
    what such a run learns.
    """
    params = dict(req.params)
    for name in ("alpha", "keep"):
        value = float(params[name])
        if not 0.0 < value <= 1.0:
            raise InputError(f"{name} must lie in (0, 1], got {value}", name)
        params[name] = value
    cover_rate = req.rate if params["cover_rate"] is None else float(params["cover_rate"])
    if not 0.0 <= cover_rate < 1.0:
        raise InputError(f"cover_rate must lie in [0, 1), got {cover_rate}", "cover_rate")
    params["cover_rate"] = cover_rate
    params["test_alpha"] = float(params["test_alpha"])
    rng = np.random.default_rng(req.seed)
    idx = victims_for_target(ds, req, rng)
    y = dirty_labels(ds, idx, req)
    n_cover = round(cover_rate * len(ds))
    if n_cover:
        rest = np.setdiff1d(np.arange(len(ds), dtype=np.int64), idx)
        cover = choose(rng, rest, n_cover, "cover samples", ds.path)
        y = np.concatenate([y, ds.y[cover]])
        idx = np.concatenate([idx, cover])
        order = np.argsort(idx, kind="stable")
        idx, y = idx[order], y[order]
    x = _partial(ds.model_input(idx), params, rng)
    return PoisonOutcome(indices=idx, x_model=x, y=y.astype(np.int64), params=params)
