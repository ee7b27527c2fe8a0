"""MITRE ATLAS technique identifiers and names used to tag findings.

Every :class:`~tripwire.reports.findings.Finding` names the ATLAS techniques it is
evidence of, so that a security team can file it next to the rest of its threat
model. The table below is a curated subset of ATLAS: the techniques that
tripwire's detectors can observe (data poisoning, backdoors, supply chain,
extraction) plus their close neighbours, spelled as in the ATLAS 5.x data
release, where "ML" became "AI" in technique names (for example AML.T0018 is now
"Manipulate AI Model", formerly "Backdoor ML Model").

Technique ids look like ``AML.T0018``; sub-techniques append a three-digit
suffix, ``AML.T0018.000``, and ATLAS uses the same dotted id in its web
addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

#: The ATLAS data release whose technique names this table follows.
ATLAS_VERSION = "5.6.0"

#: Where each technique is documented; the id is appended as is.
ATLAS_TECHNIQUE_URL = "https://atlas.mitre.org/techniques/"

# AML.T followed by four digits, optionally a three-digit sub-technique suffix.
_ATLAS_ID_RE = re.compile(r"^AML\.T\d{4}(?:\.\d{3})?$")

_TECHNIQUES: dict[str, str] = {
    # Reconnaissance and resource development
    "AML.T0002": "Acquire Public AI Artifacts",
    "AML.T0002.000": "Datasets",
    "AML.T0002.001": "Models",
    "AML.T0005": "Create Proxy AI Model",
    "AML.T0005.000": "Train Proxy via Gathered AI Artifacts",
    "AML.T0005.001": "Train Proxy via Replication",
    "AML.T0005.002": "Use Pre-Trained Model",
    "AML.T0019": "Publish Poisoned Datasets",
    "AML.T0058": "Publish Poisoned Models",
    # Initial access: the supply chain
    "AML.T0010": "AI Supply Chain Compromise",
    "AML.T0010.000": "Hardware",
    "AML.T0010.001": "AI Software",
    "AML.T0010.002": "Data",
    "AML.T0010.003": "Model",
    "AML.T0012": "Valid Accounts",
    # AI model access
    "AML.T0040": "AI Model Inference API Access",
    "AML.T0044": "Full AI Model Access",
    # Execution
    "AML.T0011": "User Execution",
    "AML.T0011.000": "Unsafe AI Artifacts",
    # Persistence and attack staging
    "AML.T0018": "Manipulate AI Model",
    "AML.T0018.000": "Poison AI Model",
    "AML.T0018.001": "Modify AI Model Architecture",
    "AML.T0020": "Poison Training Data",
    "AML.T0042": "Verify Attack",
    "AML.T0043": "Craft Adversarial Data",
    "AML.T0043.000": "White-Box Optimization",
    "AML.T0043.001": "Black-Box Optimization",
    "AML.T0043.002": "Black-Box Transfer",
    "AML.T0043.003": "Manual Modification",
    "AML.T0043.004": "Insert Backdoor Trigger",
    # Defence evasion
    "AML.T0015": "Evade AI Model",
    # Exfiltration
    "AML.T0024": "Exfiltration via AI Inference API",
    "AML.T0024.000": "Infer Training Data Membership",
    "AML.T0024.001": "Invert AI Model",
    "AML.T0024.002": "Extract AI Model",
    # Impact
    "AML.T0029": "Denial of AI Service",
    "AML.T0031": "Erode AI Model Integrity",
    "AML.T0034": "Cost Harvesting",
    "AML.T0048": "External Harms",
    "AML.T0048.004": "AI Intellectual Property Theft",
    "AML.T0059": "Erode Dataset Integrity",
}

#: Read-only view of the technique table: id -> name.
ATLAS_TECHNIQUES: Mapping[str, str] = MappingProxyType(_TECHNIQUES)


def is_atlas_id(tid: object) -> bool:
    """Tell whether ``tid`` is spelled like an ATLAS technique id.

    Parameters
    ----------
    tid
        Any value; only strings of the form ``AML.T0000`` or ``AML.T0000.000``
        qualify. Whether the technique is in the table is not checked.

    Returns
    -------
    bool
        True when the spelling is well formed.
    """
    return isinstance(tid, str) and _ATLAS_ID_RE.fullmatch(tid) is not None


def _check_known(tid: object) -> str:
    if not isinstance(tid, str):
        raise ValueError(f"ATLAS technique id must be a string, got {type(tid).__name__}")
    if _ATLAS_ID_RE.fullmatch(tid) is None:
        raise ValueError(
            f"malformed ATLAS technique id {tid!r}; expected AML.T0000 or AML.T0000.000"
        )
    if tid not in _TECHNIQUES:
        raise ValueError(
            f"unknown ATLAS technique id {tid!r} (table follows ATLAS {ATLAS_VERSION})"
        )
    return tid


def atlas_name(tid: str) -> str:
    """Return the ATLAS name of a technique.

    Sub-techniques are returned with their own name only (``"Data"`` for
    ``AML.T0010.002``); use :func:`atlas_label` for the full "parent: child" form.

    Parameters
    ----------
    tid
        A technique id such as ``"AML.T0020"``.

    Returns
    -------
    str
        The technique name.

    Raises
    ------
    ValueError
        If the id is malformed or not in the table.
    """
    return _TECHNIQUES[_check_known(tid)]


def atlas_label(tid: str) -> str:
    """Return a readable label: ``"AI Supply Chain Compromise: Data"`` for sub-techniques.

    Parameters
    ----------
    tid
        A technique id.

    Returns
    -------
    str
        The name, prefixed by the parent technique's name for a sub-technique
        when the parent is in the table.

    Raises
    ------
    ValueError
        If the id is malformed or not in the table.
    """
    name = atlas_name(tid)
    parent = tid[: len("AML.T0000")]
    if parent != tid and parent in _TECHNIQUES:
        return f"{_TECHNIQUES[parent]}: {name}"
    return name


def atlas_url(tid: str) -> str:
    """Return the ATLAS web page of a technique.

    Parameters
    ----------
    tid
        A technique id; sub-techniques keep their dotted suffix, as on the ATLAS
        site (``https://atlas.mitre.org/techniques/AML.T0018.000``).

    Returns
    -------
    str
        The absolute URL.

    Raises
    ------
    ValueError
        If the id is malformed or not in the table.
    """
    return ATLAS_TECHNIQUE_URL + _check_known(tid)


def validate_atlas_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Check a collection of technique ids and return it as a de-duplicated tuple.

    Parameters
    ----------
    ids
        Technique ids, in the order the caller wants them shown. A bare string
        is rejected rather than iterated character by character.

    Returns
    -------
    tuple of str
        The ids, first occurrence kept, order preserved.

    Raises
    ------
    ValueError
        If ``ids`` is a string, or any id is malformed or unknown.
    """
    if isinstance(ids, str | bytes):
        raise ValueError("ATLAS ids must be a collection of ids, not a single string")
    seen: dict[str, None] = {}
    for tid in ids:
        seen[_check_known(tid)] = None
    return tuple(seen)
