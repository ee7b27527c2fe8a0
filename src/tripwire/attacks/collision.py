"""Clean-label feature collision: ``feature-collision`` ("Poison Frogs!").

Shafahi et al., "Poison Frogs! Targeted Clean-Label Poisoning Attacks on Neural
Networks", NeurIPS 2018. The attacker wants one target instance ``t`` (of some class
other than the base class ``b = --target``) classified as ``b``. Poisons are base-class
samples ``x_b`` perturbed to

    p = argmin_x ||f(x) - f(t)||^2 + beta * ||x - x_b||^2,

where ``f`` is the penultimate-layer feature map of a network: each poison looks like a
base-class sample (and keeps its true, base label) but sits on top of the target in
feature space, so a model trained on it learns to put the target's neighbourhood into
the base class. There is no trigger: the attack aims at one instance, and
:func:`collision_success` says whether a model was fooled on it.

The attacker here trains a surrogate (the reference trainer's architecture for the
data, briefly, on the clean data) and takes ``f`` from its ``features()``; the victim
trains its own model from scratch, so this is the paper's harder end-to-end setting,
where the authors needed many poisons and the watermark trick to succeed. The target
is a sample of the dataset itself and is trained on with its own true label, which
makes success rarer still; that is the price of recording it by sample id and index.

PyTorch is imported only when the attack runs, so that the rest of the attack
registry loads without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tripwire.attacks.base import PoisonOutcome, PoisonRequest, register_kind
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset, from_model_space, to_model_space

if TYPE_CHECKING:
    from tripwire.models.arch import ContractModule

Predict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]

KIND = "feature-collision"

DEFAULTS: dict[str, Any] = {
    "target_index": None,  # position of the target instance; None: chosen (see below)
    "watermark": 0.3,  # opacity of the target blended into each base (paper, Sec. 4.2)
    "beta": 0.25,  # beta_0; scaled by (feature dim / input dim)^2 as in the paper
    "steps": 300,
    "lr": 0.01,  # Adam step size, in pixel units of [0, 1]
    "surrogate_epochs": 6,
}

#: Poisons optimised per batch: bounds memory on large requests.
_BATCH = 256


def _int_param(params: dict[str, Any], name: str, low: int) -> int:
    value = params[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}", name)
    return value


def _float_param(params: dict[str, Any], name: str, low: float, high: float) -> float:
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{name} must be a number in [{low}, {high}], got {value!r}", name)
    return float(value)


def train_surrogate(ds: Dataset, epochs: int, seed: int) -> ContractModule:
    """The attacker's feature extractor: the reference recipe, briefly, on ``ds``.

    Deterministic for a given seed and thread count, so a test can rebuild the exact
    feature space an attack used.
    """
    from tripwire.models.train import TrainConfig, train_model

    result = train_model(ds, TrainConfig(epochs=epochs, seed=seed), show_progress=False)
    model = result.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # only the poisons are optimised
    return model


def features(model: ContractModule, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Penultimate-layer features of model-space inputs, in eval mode."""
    import torch

    out: list[npt.NDArray[np.float32]] = []
    with torch.no_grad():
        for s in range(0, len(x), _BATCH):
            out.append(model.features(torch.from_numpy(x[s : s + _BATCH])).numpy())
    return np.concatenate(out).astype(np.float32)


def craft_collisions(
    model: ContractModule,
    bases: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    *,
    beta: float,
    steps: int,
    lr: float,
    watermark: float,
) -> npt.NDArray[np.float32]:
    """Optimise poisons that collide with ``target`` in ``model``'s feature space.

    Parameters
    ----------
    model
        Feature extractor with a ``features()`` method (eval mode, frozen).
    bases
        Base-class samples, model space ``(n, C, H, W)`` in [0, 1].
    target
        The target instance, model space ``(C, H, W)``.
    beta
        Weight of the proximity term (already scaled to the dimensions).
    steps, lr
        Adam iterations and step size.
    watermark
        Opacity of the target blended into each base before optimising; the blended
        base is also the anchor of the proximity term, as in the paper.

    Returns
    -------
    numpy.ndarray
        The poisons, float32, same shape as ``bases``, clamped to [0, 1].
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(target[None], dtype=np.float32))
    with torch.no_grad():
        ft = model.features(t)
    out = np.empty_like(bases, dtype=np.float32)
    for s in range(0, len(bases), _BATCH):
        b = torch.from_numpy(np.ascontiguousarray(bases[s : s + _BATCH], dtype=np.float32))
        anchor = ((1.0 - watermark) * b + watermark * t).clamp(0.0, 1.0)
        x = anchor.clone().requires_grad_(True)
        # Adam rather than the paper's fixed-step forward-backward splitting: its
        # per-pixel step normalisation needs no tuning to each surrogate's gradient scale.
        opt = torch.optim.Adam([x], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                collide = ((model.features(x) - ft) ** 2).sum(1)
                stay = ((x - anchor) ** 2).flatten(1).sum(1)
                loss = (collide + beta * stay).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
        out[s : s + len(b)] = x.detach().numpy()
    return out


def _given_target(ds: Dataset, req: PoisonRequest, base: int) -> int | None:
    """The ``target_index`` parameter, checked before any training is spent."""
    given = req.params["target_index"]
    if given is None:
        return None
    if not isinstance(given, int) or isinstance(given, bool) or not 0 <= given < len(ds):
        raise InputError(
            f"target_index must be a sample position in 0..{len(ds) - 1}, got {given!r}",
            "target_index",
        )
    label = int(ds.y[given])
    if label == base:
        raise InputError(
            f"sample {given} is of the base class {base}; the target must be of another",
            "target_index",
        )
    if req.source is not None and label != req.source:
        raise InputError(
            f"sample {given} is of class {label}, not --source {req.source}", "target_index"
        )
    return given


def _choose_target(
    ds: Dataset, pool: npt.NDArray[np.int64], base: int, proba: npt.NDArray[np.float32]
) -> int:
    """The attacker's pick among ``pool``, using the surrogate's probabilities."""
    # A target the surrogate already misclassifies would make success meaningless, so
    # candidates are those it gets right; among them the attacker takes the most
    # base-like, since the paper's attacks succeeded most easily on targets near the base.
    right = pool[proba[pool].argmax(1) == ds.y[pool]]
    if right.size:
        pool = right
    return int(pool[np.argmax(proba[pool, base])])


@register_kind(KIND, clean_label=True, defaults=DEFAULTS)
def feature_collision(ds: Dataset, req: PoisonRequest) -> PoisonOutcome:
    """Feature collision (Poison Frogs): base-class samples moved onto a target's features.

    ``--target`` is the base class. ``round(rate * N)`` base-class samples, the ones
    nearest to the target in the surrogate's feature space (least perturbation needed),
    are optimised with Adam on ``||f(x) - f(t)||^2 + beta * ||x - x_b||^2`` (``beta``
    = ``beta_0 * (feature dim / input dim)^2`` as in the paper) after blending in the
    target at ``watermark`` opacity, and keep their true labels. The target instance is
    ``target_index``, or else, among samples of ``--source`` (default: every class but
    the base) that the surrogate classifies correctly, the one it finds most base-like.
    """
    import torch

    if req.target is None:
        raise InputError(
            "feature-collision needs --target CLASS (the base class the target should "
            "be classified as)",
            "--target",
        )
    if req.all_to_all:
        raise InputError("feature-collision has no all-to-all variant", "--all-to-all")
    base = req.target
    watermark = _float_param(req.params, "watermark", 0.0, 0.99)
    beta0 = _float_param(req.params, "beta", 0.0, 1e6)
    lr = _float_param(req.params, "lr", 1e-6, 1.0)
    steps = _int_param(req.params, "steps", 1)
    epochs = _int_param(req.params, "surrogate_epochs", 1)
    pool = np.flatnonzero(ds.y == base).astype(np.int64)
    n = round(req.rate * len(ds))
    if n > pool.size:
        raise InputError(
            f"the dataset is too small for the requested rate: {n} base samples of class "
            f"{base} needed, {pool.size} available",
            ds.path,
        )
    given = _given_target(ds, req, base)
    candidates = np.flatnonzero(ds.y == req.source if req.source is not None else ds.y != base)
    if given is None and candidates.size == 0:
        raise InputError(f"no sample outside the base class {base} to target", ds.path)

    model = train_surrogate(ds, epochs, req.seed)
    x_all = ds.model_input()
    f_all = features(model, x_all)
    with torch.no_grad():
        logits = model.head(torch.from_numpy(f_all))
        proba = torch.softmax(logits, 1).numpy()
    if given is None:
        t_idx, how = (
            _choose_target(ds, candidates, base, proba),
            "most base-like of those the surrogate gets right",
        )
    else:
        t_idx, how = given, "given"

    dist0 = np.linalg.norm(f_all[pool] - f_all[t_idx], axis=1)
    idx = np.sort(pool[np.argsort(dist0, kind="stable")[:n]]).astype(np.int64)
    beta = beta0 * (f_all.shape[1] / x_all[0].size) ** 2
    poisons = craft_collisions(
        model,
        x_all[idx],
        x_all[t_idx],
        beta=beta,
        steps=steps,
        lr=lr,
        watermark=watermark,
    )
    # Measure on what is stored (uint8 images round), not on the float optimum.
    stored = to_model_space(from_model_space(poisons, ds.layout, ds.x.dtype), ds.layout)
    before = np.linalg.norm(f_all[idx] - f_all[t_idx], axis=1)
    after = np.linalg.norm(features(model, stored) - f_all[t_idx], axis=1)
    delta = np.abs(stored - x_all[idx])
    params: dict[str, Any] = {
        **req.params,
        "target_index": t_idx,
        "target_sample_id": str(ds.sample_id[t_idx]),
        "target_label": int(ds.y[t_idx]),
        "target_selection": how,
        "base_selection": "nearest to the target in the surrogate's feature space",
        "beta_scaled": beta,
        "optimiser": "adam",
        "surrogate": {
            "epochs": epochs,
            "seed": req.seed,
            "feature_dim": int(f_all.shape[1]),
            "train_accuracy": round(float((proba.argmax(1) == ds.y).mean()), 6),
        },
        "feature_distance_before": round(float(before.mean()), 6),
        "feature_distance_after": round(float(after.mean()), 6),
        "mean_abs_delta": round(float(delta.mean()), 6),
        "max_abs_delta": round(float(delta.max()), 6),
    }
    return PoisonOutcome(indices=idx, x_model=poisons, y=None, params=params)


def collision_success(predict: Predict, ds: Dataset, attack: dict[str, Any] | None = None) -> bool:
    """Whether ``predict`` puts the attack's target instance into the base class.

    Parameters
    ----------
    predict
        Model-space inputs in, predicted labels out.
    ds
        A dataset holding the target instance: the poisoned dataset (whose ``attack``
        record is used when ``attack`` is omitted) or the clean one it came from. The
        target is found by its sample id.
    attack
        The ``feature-collision`` attack record.

    Raises
    ------
    InputError
        No record, a record of another kind, or a dataset without the target.
    """
    record = attack if attack is not None else ds.attack
    if record is None or record.get("kind") != KIND:
        raise InputError(f"needs a '{KIND}' attack record", ds.path)
    params = dict(record.get("params", {}))
    base = record.get("target")
    if base is None:
        raise InputError("the attack record names no base class", ds.path)
    hits = np.flatnonzero(ds.sample_id == str(params.get("target_sample_id")))
    if hits.size == 0:
        raise InputError("the target instance of the attack is not in this dataset", ds.path)
    pos = int(hits[0])
    pred = np.asarray(predict(ds.model_input(np.array([pos]))))
    return bool(int(pred[0]) == int(base))
