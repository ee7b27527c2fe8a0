"""Where scans and the benchmark discover detectors.

Built-in detectors register with :func:`register` when their module is imported;
third-party packages add theirs through the ``tripwire.detectors`` entry-point group
(each entry point names a detector class), loaded on first lookup.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import TypeVar

from tripwire.detectors.base import BaseDetector, Need, Threat
from tripwire.errors import InputError

D = TypeVar("D", bound=type[BaseDetector])

_REGISTRY: dict[str, type[BaseDetector]] = {}
_loaded = False

#: Modules holding the built-in detectors (imported on first lookup).
BUILTIN_MODULES = (
    "tripwire.detectors.backdoor.feature_outlier",
    "tripwire.detectors.poisoning.spectral",
    "tripwire.detectors.poisoning.activation_clustering",
    "tripwire.detectors.poisoning.robust_covariance",
    "tripwire.detectors.poisoning.label_noise",
    "tripwire.detectors.poisoning.dual_space",
    "tripwire.detectors.poisoning.duplicates",
    "tripwire.detectors.poisoning.perturbation",
    "tripwire.detectors.poisoning.input_pattern",
    "tripwire.detectors.poisoning.dynamics",
)


def register(cls: D) -> D:
    """Class decorator: make a detector discoverable under ``cls.name``."""
    for attr in ("name", "threat", "needs"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} must define the class attribute '{attr}'")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"detector name '{cls.name}' is already taken by {existing.__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN_MODULES:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a missing dependency inside the module, not the module
                raise
    for ep in entry_points(group="tripwire.detectors"):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, BaseDetector):
            register(cls)


def available(
    threat: Threat | None = None, satisfiable_with: frozenset[Need] | None = None
) -> list[type[BaseDetector]]:
    """Registered detectors, optionally only for ``threat`` and only those whose needs
    are a subset of ``satisfiable_with``; sorted by name."""
    _load_all()
    out = [
        c
        for c in _REGISTRY.values()
        if (threat is None or c.threat == threat)
        and (satisfiable_with is None or c.needs <= satisfiable_with)
    ]
    return sorted(out, key=lambda c: c.name)


def get(name: str) -> type[BaseDetector]:
    """The detector class registered as ``name``."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise InputError(f"unknown detector (available: {known})", name) from None
