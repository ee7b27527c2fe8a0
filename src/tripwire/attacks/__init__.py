"""The red team: seeded attacks over NumPy data, so every detector faces a portfolio.

``poison_dataset(ds, kind, rate=..., target=...)`` returns the attacked dataset with its
``poisoned`` ground truth and ``attack`` record; ``apply_trigger`` and
``attack_success_rate`` re-apply a recorded trigger to test inputs.
"""

from tripwire.attacks.base import (
    AttackKind,
    PoisonOutcome,
    PoisonRequest,
    apply_trigger,
    attack_success_rate,
    get_kind,
    kinds,
    poison_dataset,
    register_kind,
)

__all__ = [
    "AttackKind",
    "PoisonOutcome",
    "PoisonRequest",
    "apply_trigger",
    "attack_success_rate",
    "get_kind",
    "kinds",
    "poison_dataset",
    "register_kind",
]
