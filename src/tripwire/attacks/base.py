"""The poisoning-attack contract: seeded, pure functions over a :class:`Dataset`.

Every attack returns a dataset of the same order, length, dtype, shape and value range
as its input. Untouched samples are byte-identical; every sample in the ``poisoned``
mask really changed (pixels or label); nothing is appended. The ``attack`` field records
kind, target, trigger parameters and seed, so that any later run can re-apply the
trigger to test inputs (:func:`apply_trigger`) and measure the attack success rate.

Attack kinds register with :func:`register_kind`; their modules are listed in
:data:`KIND_MODULES` and imported on first lookup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import import_module
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError
from tripwire.io.dataset import Dataset, from_model_space

#: A trigger: model-space inputs (float32 NCHW in [0, 1]) and the attack's parameters
#: in, triggered inputs out. ``rng`` serves triggers with per-sample randomness.
TriggerFn = Callable[
    [npt.NDArray[np.float32], dict[str, Any], np.random.Generator], npt.NDArray[np.float32]
]


@dataclass(frozen=True)
class PoisonRequest:
    """What the user asked for, validated against the data.

    Attributes
    ----------
    rate
        Fraction of the whole training set to poison, in (0, 1).
    target
        The attacker's class (all-to-one attacks and clean-label attacks).
    source
        The class to take victims from (pair flips, source-specific backdoors).
    seed
        Seeds every random choice.
    all_to_all
        Dirty-label variant where each victim of class ``c`` is relabelled ``c + 1``.
    params
        Kind-specific parameters (trigger size, alpha, ...), already defaulted.
    """

    rate: float
    target: int | None
    source: int | None
    seed: int
    all_to_all: bool
    params: dict[str, Any]


PoisonFn = Callable[[Dataset, PoisonRequest], "PoisonOutcome"]


@dataclass(frozen=True)
class PoisonOutcome:
    """What a kind's function returns before packaging: positions and new contents."""

    indices: npt.NDArray[np.int64]
    x_model: npt.NDArray[np.float32] | None  # new model-space samples at ``indices``
    y: npt.NDArray[np.int64] | None  # new labels at ``indices``
    params: dict[str, Any]  # the parameters to record (trigger pattern seeds etc.)


@dataclass(frozen=True)
class AttackKind:
    """A registered attack kind."""

    name: str
    poison: PoisonFn
    trigger: TriggerFn | None  # None for pure label attacks
    clean_label: bool
    needs_images: bool
    defaults: dict[str, Any]
    summary: str


_KINDS: dict[str, AttackKind] = {}

#: Modules that register kinds; imported on first lookup.
KIND_MODULES = (
    "tripwire.attacks.labels",
    "tripwire.attacks.backdoor",
    "tripwire.attacks.backdoor_global",
    "tripwire.attacks.clean_label",
    "tripwire.attacks.collision",
)
_loaded = False


def register_kind(
    name: str,
    *,
    trigger: TriggerFn | None = None,
    clean_label: bool = False,
    needs_images: bool = True,
    defaults: dict[str, Any] | None = None,
) -> Callable[[PoisonFn], PoisonFn]:
    """Decorator registering a poisoning function under a stable kind id."""

    def deco(fn: PoisonFn) -> PoisonFn:
        if name in _KINDS and _KINDS[name].poison is not fn:
            raise ValueError(f"attack kind '{name}' is already registered")
        _KINDS[name] = AttackKind(
            name=name,
            poison=fn,
            trigger=trigger,
            clean_label=clean_label,
            needs_images=needs_images,
            defaults=dict(defaults or {}),
            summary=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
        )
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in KIND_MODULES:
            try:
                import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:  # a missing dependency inside, not a missing module
                    raise


def kinds() -> dict[str, AttackKind]:
    """Every registered kind, by name."""
    _load()
    return dict(sorted(_KINDS.items()))


def get_kind(name: str) -> AttackKind:
    _load()
    if name not in _KINDS:
        raise InputError(f"unknown attack kind (choose from {', '.join(sorted(_KINDS))})", name)
    return _KINDS[name]


def _check_class(ds: Dataset, value: int | None, flag: str) -> None:
    if value is None:
        return
    present = set(np.unique(ds.y).tolist())
    if value not in present:
        raise InputError(
            f"class {value} is not in the data (classes present: {min(present)}..{max(present)})",
            flag,
        )


def poison_dataset(
    ds: Dataset,
    kind: str,
    *,
    rate: float,
    target: int | None = None,
    source: int | None = None,
    seed: int = 0,
    all_to_all: bool = False,
    **params: Any,
) -> Dataset:
    """Poison ``rate`` of ``ds`` with attack ``kind``; see the module docstring.

    Raises
    ------
    InputError
        Unknown kind, rate outside (0, 1), a target or source class not in the data,
        a dataset too small for the rate, or a kind that needs images given a table.
    """
    spec = get_kind(kind)
    if not 0.0 < rate < 1.0:
        raise InputError(f"the poison rate must lie in (0, 1), got {rate}", "--rate")
    if spec.needs_images and not ds.is_image:
        raise InputError(f"attack '{kind}' needs image data", ds.path)
    if ds.poisoned is not None and ds.poisoned.any():
        raise InputError(
            "is already poisoned (it has a 'poisoned' mask); start from clean data", ds.path
        )
    _check_class(ds, target, "--target")
    _check_class(ds, source, "--source")
    if target is not None and source is not None and target == source:
        raise InputError("source and target must differ", "--source")
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for '{kind}' "
            f"(known: {', '.join(sorted(spec.defaults)) or 'none'})",
            kind,
        )
    n_poison = round(rate * len(ds))
    if n_poison < 1:
        raise InputError(
            f"a rate of {rate} poisons no sample of {len(ds)}; the dataset is too small", ds.path
        )
    req = PoisonRequest(
        rate=rate,
        target=target,
        source=source,
        seed=seed,
        all_to_all=all_to_all,
        params={**spec.defaults, **{k: v for k, v in params.items() if v is not None}},
    )
    outcome = spec.poison(ds, req)
    record = {
        "kind": kind,
        "rate": rate,
        "target": None if all_to_all else _target_of(outcome, target),
        "source": source,
        "all_to_all": all_to_all,
        "seed": seed,
        "clean_label": spec.clean_label,
        "n_poisoned": len(outcome.indices),
        "params": outcome.params,
    }
    return package(ds, outcome, record)


def _target_of(outcome: PoisonOutcome, target: int | None) -> int | None:
    if target is not None:
        return target
    if outcome.y is not None and len(np.unique(outcome.y)) == 1:
        return int(outcome.y[0])
    return None


def package(ds: Dataset, outcome: PoisonOutcome, record: dict[str, Any]) -> Dataset:
    """Write the outcome into a copy of ``ds``, checking the attack contract."""
    idx = np.asarray(outcome.indices, dtype=np.int64)
    if idx.size == 0:
        raise InputError("the attack selected no sample", ds.path)
    if len(np.unique(idx)) != idx.size or idx.min() < 0 or idx.max() >= len(ds):
        raise RuntimeError("attack returned invalid or repeated indices")
    x = ds.x.copy()
    y = ds.y.copy()
    if outcome.x_model is not None:
        x[idx] = from_model_space(outcome.x_model, ds.layout, ds.x.dtype)
    if outcome.y is not None:
        y[idx] = outcome.y
    changed = (x[idx] != ds.x[idx]).reshape(idx.size, -1).any(axis=1) | (y[idx] != ds.y[idx])
    if not changed.all():
        # A trigger that rounds away in the stored dtype would be a false ground truth.
        raise InputError(
            f"{int((~changed).sum())} selected sample(s) did not change after storage in "
            f"{ds.x.dtype}; use a stronger trigger",
            record["kind"],
        )
    mask = np.zeros(len(ds), dtype=bool)
    mask[idx] = True
    json.dumps(record)  # the record must be JSON: fail here, not when writing
    return replace(ds, x=x, y=y, poisoned=mask, attack=record)


def choose(
    rng: np.random.Generator, candidates: npt.NDArray[np.int64], n: int, what: str, path: str | None
) -> npt.NDArray[np.int64]:
    """``n`` distinct positions from ``candidates``, or a clear error when too few."""
    if n > len(candidates):
        raise InputError(
            f"the dataset is too small for the requested rate: {n} {what} needed, "
            f"{len(candidates)} available",
            path,
        )
    return np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64)


def victims_for_target(
    ds: Dataset, req: PoisonRequest, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Dirty-label victims: samples not already of the target (or of ``source`` only)."""
    n = round(req.rate * len(ds))
    if req.all_to_all:
        pool = np.arange(len(ds)) if req.source is None else np.flatnonzero(ds.y == req.source)
    elif req.target is None:
        raise InputError("this attack needs --target CLASS (or --all-to-all)", "--target")
    elif req.source is not None:
        pool = np.flatnonzero(ds.y == req.source)
    else:
        pool = np.flatnonzero(ds.y != req.target)
    return choose(rng, pool.astype(np.int64), n, "victims", ds.path)


def dirty_labels(
    ds: Dataset, idx: npt.NDArray[np.int64], req: PoisonRequest
) -> npt.NDArray[np.int64]:
    """The labels dirty-label victims get: the target, or ``c + 1`` for all-to-all."""
    if req.all_to_all:
        return ((ds.y[idx] + 1) % ds.n_classes).astype(np.int64)
    if req.target is None:  # pragma: no cover - victims_for_target checked it
        raise InputError("this attack needs --target CLASS", "--target")
    return np.full(idx.size, req.target, dtype=np.int64)


def apply_trigger(
    x_model: npt.NDArray[np.float32], attack: dict[str, Any], *, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Re-apply a recorded attack's trigger to model-space inputs (to measure ASR)."""
    spec = get_kind(str(attack.get("kind")))
    if spec.trigger is None:
        raise InputError(f"attack '{spec.name}' has no trigger to apply", "attack")
    rng = np.random.default_rng(seed)
    out = spec.trigger(np.asarray(x_model, dtype=np.float32), dict(attack.get("params", {})), rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def attack_success_rate(
    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]],
    test: Dataset,
    attack: dict[str, Any],
    *,
    seed: int = 0,
) -> float:
    """Share of triggered test inputs (not already of the target) predicted as the target.

    For all-to-all attacks, the share predicted as ``c + 1``.
    """
    if attack.get("all_to_all"):
        keep = np.arange(len(test))
        goal = (test.y + 1) % test.n_classes
    else:
        target = attack.get("target")
        if target is None:
            raise InputError("the attack record names no target class", "attack")
        keep = np.flatnonzero(test.y != int(target))
        goal = np.full(len(test), int(target))
    if keep.size == 0:
        raise InputError("no test sample outside the target class", test.path)
    triggered = apply_trigger(test.model_input(keep), attack, seed=seed)
    pred = np.asarray(predict(triggered))
    return float((pred == goal[keep]).mean())
