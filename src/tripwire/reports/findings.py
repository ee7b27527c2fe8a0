"""Findings, their severities, and the registry of rules that produce them.

A :class:`Finding` is one thing a tripwire command found: a group of suspicious
samples, a class a model treats as a backdoor target, a client that looks like
it is extracting a model. Each finding cites a :class:`Rule` by id; the rule
carries the stable metadata (name, help, default severity, ATLAS techniques)
that SARIF consumers such as GitHub code scanning key their alerts on.

Rule numbering
--------------
Rule ids are ``TW`` plus three digits and are stable forever: once published an
id is never reused for another meaning, and a retired rule keeps its number.
The hundreds digit names the family:

=======  ==============================================================
``TW0xx``  provenance: differences between a dataset and its manifest
``TW1xx``  training-data poisoning
``TW2xx``  model backdoors
``TW3xx``  model extraction
``TW9xx``  the tool itself (internal errors, skipped checks)
=======  ==============================================================

Modules that add detectors register their rules with :func:`register_rule` at
import time; the provenance rules used by ``tripwire verify`` are registered
here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from os import PathLike, fspath
from typing import Any

import numpy as np

from tripwire.errors import InputError
from tripwire.reports.atlas import validate_atlas_ids
from tripwire.reports.jsonutil import to_json_object

__all__ = [
    "RULES",
    "Finding",
    "Rule",
    "Severity",
    "get_rule",
    "register_rule",
    "rule_category",
    "sort_findings",
]


class Severity(StrEnum):
    """How bad a finding is, from ``info`` to ``critical``.

    Members compare by rank, not alphabetically: ``Severity.LOW < Severity.HIGH``.
    Comparing with a plain string parses it first, so ``Severity.HIGH >= "medium"``
    works and an unknown string raises :class:`ValueError` instead of silently
    comparing letters.
    """

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order, 0 for ``info`` up to 4 for ``critical``."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Read a severity from user input, ignoring case and surrounding space.

        Parameters
        ----------
        value
            A severity name such as ``"HIGH"`` or a :class:`Severity`.

        Returns
        -------
        Severity
            The matching member.

        Raises
        ------
        ValueError
            If the value is not one of the allowed names; the message lists them.
        """
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        allowed = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown severity {value!r}; allowed values: {allowed}")

    @classmethod
    def ordered(cls) -> tuple[Severity, ...]:
        """All severities from least to most severe."""
        return tuple(sorted(cls, key=_RANK.__getitem__))

    def at_least(self, other: str | Severity) -> bool:
        """Tell whether this severity is ``other`` or worse."""
        return self.rank >= Severity.parse(other).rank

    def _other_rank(self, other: object) -> int | None:
        if isinstance(other, Severity):
            return other.rank
        if isinstance(other, str):
            return Severity.parse(other).rank
        return None

    def __lt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank < rank

    def __le__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank <= rank

    def __gt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank > rank

    def __ge__(self, other: object) -> bool:
        rank = self._other_rank(other)
        return NotImplemented if rank is None else self.rank >= rank


_RANK: dict[Severity, int] = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}

_RULE_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_TRIPWIRE_RULE_RE = re.compile(r"^TW\d{3}$")

_CATEGORIES = {
    "0": "provenance",
    "1": "data-poisoning",
    "2": "model-backdoor",
    "3": "model-extraction",
    "9": "tool",
}


def rule_category(rule_id: str) -> str | None:
    """Return the family of a tripwire rule id (``"provenance"`` for ``TW001``).

    Parameters
    ----------
    rule_id
        A rule id.

    Returns
    -------
    str or None
        The family name, or ``None`` for ids outside the ``TWnnn`` scheme or in
        an unassigned hundred.
    """
    if _TRIPWIRE_RULE_RE.fullmatch(rule_id) is None:
        return None
    return _CATEGORIES.get(rule_id[2])


def _check_rule_id(rule_id: object) -> str:
    if not isinstance(rule_id, str) or _RULE_ID_RE.fullmatch(rule_id) is None:
        raise ValueError(f"rule id must be a non-empty identifier such as 'TW101', got {rule_id!r}")
    return rule_id


def _check_text(value: object, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


@dataclass(frozen=True)
class Rule:
    """Stable metadata for one kind of finding.

    Parameters
    ----------
    id
        Stable id, ``TWnnn`` for tripwire's own rules (see the module docstring).
    name
        Short kebab-case name, e.g. ``"samples-relabelled"``.
    short_description
        One sentence shown where space is scarce.
    help
        A paragraph on what the finding means and what to do about it.
    default_severity
        The severity findings of this rule usually carry.
    atlas
        ATLAS technique ids the rule is evidence of.
    """

    id: str
    name: str
    short_description: str
    help: str
    default_severity: Severity
    atlas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_rule_id(self.id)
        _check_text(self.name, "rule name")
        _check_text(self.short_description, "rule short_description")
        _check_text(self.help, "rule help")
        object.__setattr__(self, "default_severity", Severity.parse(self.default_severity))
        object.__setattr__(self, "atlas", validate_atlas_ids(self.atlas))

    @property
    def category(self) -> str | None:
        """The rule family, see :func:`rule_category`."""
        return rule_category(self.id)


#: Every known rule, by id. Add to it with :func:`register_rule` only.
RULES: dict[str, Rule] = {}


def register_rule(rule: Rule) -> Rule:
    """Add a rule to :data:`RULES`.

    Registering the same rule twice is harmless (modules may be re-imported);
    registering a different rule under an existing id is an error, because rule
    ids are stable forever.

    Parameters
    ----------
    rule
        The rule.

    Returns
    -------
    Rule
        The rule, so that modules can write ``MY_RULE = register_rule(Rule(...))``.

    Raises
    ------
    ValueError
        If another rule already has this id.
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"expected a Rule, got {type(rule).__name__}")
    existing = RULES.get(rule.id)
    if existing is not None and existing != rule:
        raise ValueError(f"rule id {rule.id} is already registered as {existing.name!r}")
    RULES[rule.id] = rule
    return rule


def get_rule(rule_id: str) -> Rule:
    """Look up a registered rule.

    Parameters
    ----------
    rule_id
        The rule id.

    Returns
    -------
    Rule
        The registered rule.

    Raises
    ------
    KeyError
        If no rule has this id.
    """
    try:
        return RULES[rule_id]
    except KeyError:
        known = ", ".join(sorted(RULES)) or "none"
        raise KeyError(f"unknown rule id {rule_id!r}; registered: {known}") from None


def _check_index(value: object, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    result = int(value)
    if result < 0:
        raise ValueError(f"{name} must be non-negative, got {result}")
    return result


def _check_confidence(value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(f"confidence must be a number, got {type(value).__name__}")
    result = float(value)
    if not 0.0 <= result <= 1.0:  # also rejects NaN
        raise ValueError(f"confidence must be between 0 and 1, got {result}")
    return result


@dataclass(frozen=True)
class Finding:
    """One thing a tripwire command found.

    Inputs are checked and normalised on construction: numpy numbers become
    Python numbers, ``indices`` becomes a sorted tuple without duplicates,
    ``evidence`` is converted to plain JSON types, and ``atlas`` defaults to the
    registered rule's techniques when left empty.

    Parameters
    ----------
    rule_id
        Id of the rule this finding instantiates (see :data:`RULES`).
    title
        A short headline.
    message
        A full sentence for people; shown in every report format.
    severity
        How bad it is; a :class:`Severity` or its name.
    confidence
        How sure the detector is, from 0 to 1.
    atlas
        ATLAS technique ids; empty means "those of the rule".
    artifact
        The file the finding is about, repository-relative or as given.
    indices
        Positions of the samples concerned, if any.
    target_class
        The class label concerned (a backdoor's target, a poisoned class).
    client
        The client concerned (a federated-learning participant, an API key).
    evidence
        Numbers and short strings that back the finding up; must be
        JSON-serialisable after conversion.

    Raises
    ------
    ValueError, TypeError
        If a field is out of range or of the wrong type.
    """

    rule_id: str
    title: str
    message: str
    severity: Severity
    confidence: float
    atlas: tuple[str, ...] = ()
    artifact: str | None = None
    indices: tuple[int, ...] = ()
    target_class: int | None = None
    client: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_rule_id(self.rule_id)
        _check_text(self.title, "title")
        _check_text(self.message, "message")
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "confidence", _check_confidence(self.confidence))

        atlas = validate_atlas_ids(self.atlas)
        if not atlas and self.rule_id in RULES:
            atlas = RULES[self.rule_id].atlas
        object.__setattr__(self, "atlas", atlas)

        artifact = self.artifact
        if isinstance(artifact, PathLike):
            artifact = fspath(artifact)
        if artifact is not None:
            artifact = _check_text(artifact, "artifact")
        object.__setattr__(self, "artifact", artifact)

        if isinstance(self.indices, str | bytes | Mapping):
            raise TypeError("indices must be a sequence of integers")
        indices = sorted({_check_index(i, "sample index") for i in self.indices})
        object.__setattr__(self, "indices", tuple(indices))

        if self.target_class is not None:
            object.__setattr__(
                self, "target_class", _check_index(self.target_class, "target_class")
            )
        if self.client is not None:
            _check_text(self.client, "client")
        object.__setattr__(self, "evidence", to_json_object(self.evidence, "evidence"))

    def __hash__(self) -> int:
        # The generated hash would fail on the evidence dict; the fingerprint covers
        # a subset of the fields that equality compares, so equal findings hash equal.
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        """A stable SHA-256 identity: rule, artifact, class, client and indices.

        Two findings about the same samples of the same file under the same rule
        share a fingerprint across runs, whatever their wording, severity or
        evidence; SARIF consumers use it to track an alert from run to run.
        """
        key = [self.rule_id, self.artifact, self.target_class, self.client, list(self.indices)]
        canonical = json.dumps(key, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    @property
    def rule(self) -> Rule | None:
        """The registered rule of this finding, if any."""
        return RULES.get(self.rule_id)

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as plain JSON types, fingerprint included.

        Returns
        -------
        dict
            Keys in a fixed order; ``from_dict`` accepts it back.
        """
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "message": self.message,
            "severity": self.severity.value,
            "confidence": self.confidence,
            "atlas": list(self.atlas),
            "artifact": self.artifact,
            "indices": list(self.indices),
            "target_class": self.target_class,
            "client": self.client,
            "evidence": self.evidence,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from :meth:`to_dict` output.

        Parameters
        ----------
        data
            A mapping as written by :meth:`to_dict`; ``fingerprint`` is ignored
            (it is recomputed), unknown keys are rejected.

        Returns
        -------
        Finding
            The finding.

        Raises
        ------
        InputError
            If keys are missing or unknown, or a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a finding must be a JSON object, got {type(data).__name__}")
        required = ("rule_id", "title", "message", "severity", "confidence")
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"finding is missing {', '.join(missing)}")
        optional = ("atlas", "artifact", "indices", "target_class", "client", "evidence")
        unknown = set(data) - set(required) - set(optional) - {"fingerprint"}
        if unknown:
            raise InputError(f"finding has unknown keys: {', '.join(sorted(unknown))}")
        kwargs = {k: data[k] for k in (*required, *optional) if k in data}
        for key in ("atlas", "indices"):
            if key in kwargs:
                if not isinstance(kwargs[key], list | tuple):
                    raise InputError(f"finding {key} must be a list")
                kwargs[key] = tuple(kwargs[key])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid finding {data.get('rule_id')!r}: {exc}") from exc


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Order findings for display: most severe first, then most confident.

    Parameters
    ----------
    findings
        Findings in any order.

    Returns
    -------
    list of Finding
        A new list; ties keep their original order.
    """
    return sorted(findings, key=lambda f: (-f.severity.rank, -f.confidence))


# --- Provenance rules used by `tripwire verify` -------------------------------------

TW001 = register_rule(
    Rule(
        id="TW001",
        name="samples-added",
        short_description="The dataset holds samples that its manifest does not list.",
        help=(
            "Samples were found that are not in the recorded manifest of this dataset. "
            "Injected samples are the most common way to poison training data. Check where "
            "the new samples came from, and re-create the manifest only once they are "
            "accounted for."
        ),
        default_severity=Severity.MEDIUM,
        atlas=("AML.T0020",),
    )
)

TW002 = register_rule(
    Rule(
        id="TW002",
        name="samples-removed",
        short_description="Samples listed in the dataset's manifest are missing.",
        help=(
            "Samples recorded in the manifest are no longer in the dataset. Removing samples "
            "can bias a model as surely as adding them, for instance by thinning out one "
            "class. Restore the samples from a trusted copy or explain their removal."
        ),
        default_severity=Severity.LOW,
        atlas=("AML.T0020",),
    )
)

TW003 = register_rule(
    Rule(
        id="TW003",
        name="samples-relabelled",
        short_description="Samples carry a different label than the manifest records.",
        help=(
            "The content of these samples is unchanged but their labels differ from the "
            "manifest. Label flipping is a cheap and effective poisoning attack. Compare "
            "the labels with a trusted copy before training on this data."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0020",),
    )
)

TW004 = register_rule(
    Rule(
        id="TW004",
        name="samples-altered",
        short_description="Sample contents differ from the hashes in the manifest.",
        help=(
            "The bytes of these samples no longer match the hashes recorded in the "
            "manifest. Altered samples may carry a backdoor trigger or an adversarial "
            "perturbation, or show that the data supply chain was tampered with. Replace "
            "them from a trusted copy and find out where the change happened."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0020", "AML.T0010.002"),
    )
)
