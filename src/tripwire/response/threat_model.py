"""``tripwire threat-model``: a threat table for an ML system from a short YAML description.

The description (schema: :data:`SYSTEM_SCHEMA`, documented in ``docs/threat-model.md``)
says where the data comes from, how the model is trained and supplied, how it is
served and who calls it. Each entry of :data:`CATALOGUE` is one threat of the ML
lifecycle in STRIDE terms adapted to ML (tampering with data is poisoning,
information disclosure through the API is extraction or membership inference, ...),
with its MITRE ATLAS techniques, the tripwire control that covers it (or ``none``),
what to monitor, and the NIST AI RMF function the control belongs to. A threat's
``assess`` function decides from the description whether the threat applies and how
high the risk is, and says why in one sentence; two systems therefore give two
different tables.

Risk is a coarse three-level rating (low, medium, high) from exposure factors that the
description states; it ranks the work, it is not a probability.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tripwire.errors import InputError
from tripwire.reports.atlas import atlas_label, validate_atlas_ids
from tripwire.response.schema import Field, SchemaError, validate

__all__ = [
    "CATALOGUE",
    "STAGES",
    "SYSTEM_SCHEMA",
    "Threat",
    "ThreatModel",
    "ThreatRow",
    "build_threat_model",
    "load_system",
    "render_markdown",
]

#: Largest description accepted; real ones are a few kilobytes.
MAX_SYSTEM_BYTES = 1024 * 1024

SOURCE_KINDS = ("internal", "vendor", "public", "scraped", "user")
_SOURCE = {
    "name": Field("str", "a short name, as it appears in the data's `source` field", True),
    "kind": Field(
        "enum",
        "who produces it: internal team, third-party vendor, public dataset, web scrape, "
        "or the system's own users (feedback loops)",
        default="internal",
        choices=SOURCE_KINDS,
    ),
    "labels": Field(
        "enum",
        "who labels it",
        default="internal",
        choices=("internal", "vendor", "crowd", "user", "none"),
    ),
    "manifest": Field(
        "bool", "deliveries come with a per-sample manifest (`tripwire manifest`)", default=False
    ),
}
_CLIENT = {
    "name": Field("str", "a short name of the client group", True),
    "trust": Field(
        "enum",
        "how far the client is trusted",
        default="authenticated",
        choices=("anonymous", "authenticated", "partner", "internal"),
    ),
    "volume": Field(
        "enum", "expected query volume", default="low", choices=("low", "medium", "high")
    ),
}

#: The schema of a system description: top-level sections and their fields.
SYSTEM_SCHEMA: dict[str, Field] = {
    "system": Field(
        "object",
        "what the system is",
        required=True,
        fields={
            "name": Field("str", "the system's name", True),
            "description": Field("str", "one sentence on what it does", default=""),
            "owner": Field("str", "the accountable team", default=""),
        },
    ),
    "data": Field(
        "object",
        "the training data",
        fields={
            "sources": Field("list", "every supplier of training data", fields=_SOURCE),
            "scanned": Field(
                "bool", "every delivery is scanned (`tripwire scan-data`)", default=False
            ),
        },
    ),
    "training": Field(
        "object",
        "how models are trained",
        fields={
            "where": Field(
                "enum",
                "who runs training",
                default="in-house",
                choices=("in-house", "cloud", "third-party", "none"),
            ),
            "retraining": Field(
                "enum",
                "how often the model is retrained on new data",
                default="none",
                choices=("none", "periodic", "continuous"),
            ),
        },
    ),
    "model": Field(
        "object",
        "where the served model comes from",
        fields={
            "supply": Field(
                "enum",
                "trained here, fine-tuned from a public pre-trained model, or bought/downloaded "
                "as is",
                default="in-house",
                choices=("in-house", "fine-tuned", "third-party"),
            ),
            "format": Field(
                "enum",
                "the file format the model is shipped in",
                default="torchscript",
                choices=("torchscript", "onnx", "safetensors", "pickle"),
            ),
            "registry": Field(
                "bool",
                "versions are kept in a registry with scan gating (`tripwire registry`)",
                default=False,
            ),
            "scanned": Field(
                "bool", "each version is scanned for backdoors (`tripwire scan-model`)", False
            ),
        },
    ),
    "serving": Field(
        "object",
        "how the model answers queries",
        fields={
            "exposure": Field(
                "enum",
                "who can reach the inference API (`none`: batch/offline only)",
                default="internal",
                choices=("none", "internal", "partner", "public"),
            ),
            "outputs": Field(
                "enum",
                "what an answer reveals",
                default="label",
                choices=("label", "top-k", "probabilities", "logits"),
            ),
            "authentication": Field("bool", "clients must present an API key", default=True),
            "rate_limit": Field("bool", "per-client rate limits are enforced", default=False),
            "monitoring": Field(
                "bool", "queries go through the extraction monitor (`tripwire guard`)", False
            ),
        },
    ),
    "clients": Field("list", "who calls the API", fields=_CLIENT),
}

#: Lifecycle stages, in the order the tables are printed.
STAGES: tuple[str, ...] = ("data", "training", "model supply", "serving", "response")
#: STRIDE categories (adapted to ML in each threat's wording).
STRIDE = (
    "Spoofing",
    "Tampering",
    "Repudiation",
    "Information disclosure",
    "Denial of service",
    "Elevation of privilege",
)
NIST_FUNCTIONS = ("Govern", "Map", "Measure", "Manage")
RISKS = ("low", "medium", "high")

#: What ``assess`` returns: None (not applicable) or (risk, why it applies).
Assessment = tuple[str, str] | None


@dataclass(frozen=True)
class Threat:
    """One threat of the catalogue.

    Parameters
    ----------
    id
        Stable id, ``ML-<stage letter><nn>``.
    stage
        One of :data:`STAGES`.
    stride
        One of :data:`STRIDE`.
    title
        The threat in a few words.
    atlas
        MITRE ATLAS technique ids (each in :mod:`tripwire.reports.atlas`).
    controls
        tripwire commands that cover it; empty means none does.
    monitor
        What to watch to notice it.
    nist
        NIST AI RMF functions of the controls.
    assess
        ``system -> None | (risk, why)``.
    """

    id: str
    stage: str
    stride: str
    title: str
    atlas: tuple[str, ...]
    controls: tuple[str, ...]
    monitor: str
    nist: tuple[str, ...]
    assess: Callable[[Mapping[str, Any]], Assessment] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked at import: a typo in the catalogue must fail the test suite, not a user.
        if self.stage not in STAGES or self.stride not in STRIDE:
            raise ValueError(f"{self.id}: bad stage or STRIDE category")
        if not set(self.nist) <= set(NIST_FUNCTIONS):
            raise ValueError(f"{self.id}: unknown NIST AI RMF function in {self.nist}")
        validate_atlas_ids(self.atlas)


# --- assessments ---------------------------------------------------------------------


def _sources(s: Mapping[str, Any], *kinds: str) -> list[Mapping[str, Any]]:
    return [x for x in s["data"]["sources"] if not kinds or x["kind"] in kinds]


def _names(rows: list[Mapping[str, Any]]) -> str:
    return ", ".join(f"'{r['name']}'" for r in rows)


def _raise_if(risk: str, cond: bool) -> str:
    return RISKS[min(len(RISKS) - 1, RISKS.index(risk) + 1)] if cond else risk


def _lower_if(risk: str, cond: bool) -> str:
    return RISKS[max(0, RISKS.index(risk) - 1)] if cond else risk


def _served(s: Mapping[str, Any]) -> bool:
    return bool(s["serving"]["exposure"] != "none")


def _untrusted_clients(s: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in s["clients"] if c["trust"] in ("anonymous", "authenticated")]


def _a_poison(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "public", "scraped", "user")
    if not ext:
        return None
    risk = _lower_if("high", s["data"]["scanned"])
    return risk, f"third-party sources {_names(ext)} feed training" + (
        "; deliveries are scanned" if s["data"]["scanned"] else "; deliveries are not scanned"
    )


def _a_backdoor_data(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "scraped", "user")
    if not ext:
        return None
    risk = _lower_if("high", s["data"]["scanned"] and s["model"]["scanned"])
    return risk, f"{_names(ext)} can plant trigger-carrying samples with the target label"


def _a_tamper_delivery(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "public", "scraped", "user")
    if not ext:
        return None
    without = [x for x in ext if not x["manifest"]]
    if without:
        return "medium", f"{_names(without)} deliver without a per-sample manifest"
    return "low", "every external delivery is pinned by a manifest"


def _a_labels(s: Mapping[str, Any]) -> Assessment:
    outside = [x for x in s["data"]["sources"] if x["labels"] in ("vendor", "crowd", "user")]
    if not outside:
        return None
    return _lower_if("medium", s["data"]["scanned"]), (
        f"labels of {_names(outside)} come from outside the team"
    )


def _a_public_poisoned(s: Mapping[str, Any]) -> Assessment:
    pub = _sources(s, "public", "scraped")
    if not pub:
        return None
    return "medium", f"{_names(pub)} can be poisoned at the origin before download"


def _a_repudiation_data(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "public", "scraped", "user")
    without = [x for x in ext if not x["manifest"]]
    if not without:
        return None
    return "medium", (
        f"no record ties each sample of {_names(without)} to its supplier, so an incident "
        "cannot name the source"
    )


def _a_feedback_loop(s: Mapping[str, Any]) -> Assessment:
    user = _sources(s, "user")
    if s["training"]["retraining"] == "none" or not user:
        return None
    risk = _raise_if("medium", s["training"]["retraining"] == "continuous")
    return risk, (
        f"{s['training']['retraining']} retraining on user data ({_names(user)}) lets "
        "users steer the model over time"
    )


def _a_training_infra(s: Mapping[str, Any]) -> Assessment:
    where = s["training"]["where"]
    if where in ("in-house", "none"):
        return None
    return _raise_if("medium", where == "third-party"), f"training runs {where}"


def _a_lineage(s: Mapping[str, Any]) -> Assessment:
    if s["training"]["where"] == "none" and s["model"]["supply"] == "third-party":
        return None
    if s["model"]["registry"]:
        return "low", "versions are registered with their data manifest and scans"
    return "medium", "no registry ties a model version to the data it was trained on"


def _a_supply_backdoor(s: Mapping[str, Any]) -> Assessment:
    supply = s["model"]["supply"]
    if supply == "in-house":
        return None
    risk = _lower_if("high", s["model"]["scanned"])
    return risk, f"the model is {'fine-tuned from' if supply == 'fine-tuned' else 'bought as'} " + (
        "a third-party pre-trained model" if supply == "fine-tuned" else "a finished artefact"
    )


def _a_unsafe_artifact(s: Mapping[str, Any]) -> Assessment:
    fmt = s["model"]["format"]
    if fmt == "pickle":
        return "high", "pickle model files run code when loaded"
    if s["model"]["supply"] != "in-house":
        return "low", f"third-party {fmt} files are loaded (no code runs, but check the source)"
    return None


def _a_model_swap(s: Mapping[str, Any]) -> Assessment:
    if not _served(s):
        return None
    if s["model"]["registry"]:
        return "low", "the served version is a content-hashed registry alias"
    return "medium", "nothing pins which model file is served"


def _a_extraction(s: Mapping[str, Any]) -> Assessment:
    if not _served(s):
        return None
    serving = s["serving"]
    risk = "medium" if serving["exposure"] in ("partner", "public") else "low"
    risk = _raise_if(risk, serving["outputs"] in ("probabilities", "logits"))
    risk = _raise_if(risk, not serving["rate_limit"] and serving["exposure"] == "public")
    risk = _lower_if(risk, serving["monitoring"])
    return risk, (
        f"{serving['exposure']} API answering with {serving['outputs']}"
        + ("" if serving["rate_limit"] else ", no rate limit")
        + (", monitored" if serving["monitoring"] else ", not monitored")
    )


def _a_membership(s: Mapping[str, Any]) -> Assessment:
    if not _served(s) or s["serving"]["outputs"] not in ("probabilities", "logits", "top-k"):
        return None
    risk = "medium" if s["serving"]["exposure"] in ("partner", "public") else "low"
    return risk, f"answers carry {s['serving']['outputs']}, which leak training membership"


def _a_inversion(s: Mapping[str, Any]) -> Assessment:
    if not _served(s) or s["serving"]["outputs"] not in ("probabilities", "logits"):
        return None
    return "low", f"full {s['serving']['outputs']} let a client reconstruct class prototypes"


def _a_sybil(s: Mapping[str, Any]) -> Assessment:
    if not _served(s):
        return None
    if not s["serving"]["authentication"]:
        return "high", "clients are not authenticated, so per-client limits are moot"
    open_clients = [c for c in _untrusted_clients(s) if c["trust"] == "anonymous"]
    if s["serving"]["exposure"] == "public" or open_clients:
        return "medium", "anyone can obtain keys and spread queries over many of them"
    return None


def _a_evasion(s: Mapping[str, Any]) -> Assessment:
    if not _served(s):
        return None
    risk = "medium" if s["serving"]["exposure"] in ("partner", "public") else "low"
    return risk, "clients choose the inputs and see the decision"


def _a_trigger_use(s: Mapping[str, Any]) -> Assessment:
    if not _served(s):
        return None
    exposed = _sources(s, "vendor", "scraped", "user") or s["model"]["supply"] != "in-house"
    if not exposed:
        return None
    return _lower_if("high", s["model"]["scanned"]), (
        "a backdoor planted upstream is triggered by whoever knows the trigger"
    )


def _a_dos(s: Mapping[str, Any]) -> Assessment:
    if not _served(s) or s["serving"]["exposure"] == "internal":
        return None
    heavy = [c for c in s["clients"] if c["volume"] == "high"]
    risk = _raise_if("low", not s["serving"]["rate_limit"])
    why = "no per-client rate limit" if not s["serving"]["rate_limit"] else "rate limited"
    if heavy:
        why += f"; high-volume clients {_names(heavy)} make abuse hard to tell apart"
    return risk, why


def _a_account_abuse(s: Mapping[str, Any]) -> Assessment:
    if not _served(s) or not s["serving"]["authentication"]:
        return None
    partners = [c for c in s["clients"] if c["trust"] in ("partner", "authenticated")]
    if not partners:
        return None
    return "medium", f"a leaked key of {_names(partners)} gives full query access"


def _a_no_rollback(s: Mapping[str, Any]) -> Assessment:
    if not _served(s) and s["training"]["retraining"] == "none":
        return None
    if s["model"]["registry"]:
        return "low", "the registry can move the serving alias back to a passing version"
    return "high", "without a registry there is no known-good version to roll back to"


def _a_sharing(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "public", "scraped") or _untrusted_clients(s)
    if not ext:
        return None
    return "low", "incidents involve outside parties whom peers may also face"


def _a_forensics(s: Mapping[str, Any]) -> Assessment:
    ext = _sources(s, "vendor", "public", "scraped", "user")
    if not ext and not _served(s):
        return None
    return "medium", "an incident must answer which samples, which source, which versions"


_D, _T, _S, _R = "data", "training", "model supply", "serving"

#: Every threat tripwire knows, in table order.
CATALOGUE: tuple[Threat, ...] = (
    Threat(
        "ML-D01",
        _D,
        "Tampering",
        "Poisoned training data from a supplier",
        ("AML.T0020", "AML.T0010.002"),
        ("scan-data", "clean"),
        "flag rate per delivery; source enrichment (TW103)",
        ("Measure", "Manage"),
        _a_poison,
    ),
    Threat(
        "ML-D02",
        _D,
        "Tampering",
        "Backdoor trigger planted in delivered samples",
        ("AML.T0020", "AML.T0043.004", "AML.T0018.000"),
        ("scan-data", "scan-model"),
        "a class holding most flags (TW104); attack success of candidate triggers",
        ("Measure",),
        _a_backdoor_data,
    ),
    Threat(
        "ML-D03",
        _D,
        "Tampering",
        "Samples altered or relabelled after delivery",
        ("AML.T0010.002", "AML.T0059"),
        ("manifest", "verify"),
        "manifest differences (TW001-TW004) before each training run",
        ("Measure",),
        _a_tamper_delivery,
    ),
    Threat(
        "ML-D04",
        _D,
        "Tampering",
        "Flipped or noisy labels",
        ("AML.T0020",),
        ("scan-data", "clean"),
        "label-issue findings (TW102) per source",
        ("Measure", "Manage"),
        _a_labels,
    ),
    Threat(
        "ML-D05",
        _D,
        "Tampering",
        "Public dataset poisoned at its origin",
        ("AML.T0019", "AML.T0002.000"),
        ("manifest", "scan-data"),
        "hash of each download against the first one; scan findings",
        ("Map", "Measure"),
        _a_public_poisoned,
    ),
    Threat(
        "ML-D06",
        _D,
        "Repudiation",
        "Supplier denies having delivered bad samples",
        ("AML.T0010.002",),
        ("manifest", "forensics"),
        "per-sample source recorded at ingestion",
        ("Govern",),
        _a_repudiation_data,
    ),
    Threat(
        "ML-T01",
        _T,
        "Tampering",
        "Feedback loop steered by users",
        ("AML.T0020", "AML.T0031"),
        ("scan-data", "registry"),
        "drift of flag rates and accuracy across retraining rounds",
        ("Measure", "Manage"),
        _a_feedback_loop,
    ),
    Threat(
        "ML-T02",
        _T,
        "Tampering",
        "Compromised training environment",
        ("AML.T0010.001", "AML.T0018"),
        ("scan-model",),
        "backdoor scan of every trained version before registration",
        ("Measure",),
        _a_training_infra,
    ),
    Threat(
        "ML-T03",
        _T,
        "Repudiation",
        "No lineage from model version to training data",
        ("AML.T0010.002", "AML.T0018"),
        ("registry", "manifest"),
        "each version registered with its data manifest and scan reports",
        ("Govern",),
        _a_lineage,
    ),
    Threat(
        "ML-S01",
        _S,
        "Tampering",
        "Backdoored pre-trained or third-party model",
        ("AML.T0010.003", "AML.T0058", "AML.T0018.000"),
        ("scan-model", "repair"),
        "backdoor scan on intake and after every fine-tuning",
        ("Measure", "Manage"),
        _a_supply_backdoor,
    ),
    Threat(
        "ML-S02",
        _S,
        "Elevation of privilege",
        "Model file that runs code when loaded",
        ("AML.T0011.000", "AML.T0010.003"),
        ("scan-model",),
        "refused pickle loads (tripwire never unpickles model files)",
        ("Govern", "Measure"),
        _a_unsafe_artifact,
    ),
    Threat(
        "ML-S03",
        _S,
        "Tampering",
        "Served model swapped for another file",
        ("AML.T0018", "AML.T0010.003"),
        ("registry",),
        "sha256 of the served file against the registry alias",
        ("Govern", "Manage"),
        _a_model_swap,
    ),
    Threat(
        "ML-V01",
        _R,
        "Information disclosure",
        "Model extraction through the API",
        ("AML.T0024.002", "AML.T0040", "AML.T0048.004"),
        ("guard", "forensics"),
        "per-client query distribution, class coverage, extraction alerts (TW3xx)",
        ("Measure", "Manage"),
        _a_extraction,
    ),
    Threat(
        "ML-V02",
        _R,
        "Information disclosure",
        "Membership inference on training data",
        ("AML.T0024.000",),
        (),
        "confidence on near-duplicates of training samples",
        ("Map",),
        _a_membership,
    ),
    Threat(
        "ML-V03",
        _R,
        "Information disclosure",
        "Model inversion",
        ("AML.T0024.001",),
        (),
        "clients optimising inputs for one class",
        ("Map",),
        _a_inversion,
    ),
    Threat(
        "ML-V04",
        _R,
        "Spoofing",
        "Sybil clients splitting an extraction over many keys",
        ("AML.T0040", "AML.T0024.002"),
        ("guard",),
        "new keys per day; similar query streams across keys",
        ("Measure",),
        _a_sybil,
    ),
    Threat(
        "ML-V05",
        _R,
        "Spoofing",
        "Stolen or leaked client API key",
        ("AML.T0012",),
        ("guard",),
        "change in a client's query pattern; key revocations",
        ("Manage",),
        _a_account_abuse,
    ),
    Threat(
        "ML-V06",
        _R,
        "Tampering",
        "Evasion with adversarial inputs",
        ("AML.T0015", "AML.T0043"),
        (),
        "low-margin answers; repeated near-identical queries",
        ("Map",),
        _a_evasion,
    ),
    Threat(
        "ML-V07",
        _R,
        "Elevation of privilege",
        "Backdoor trigger used at inference",
        ("AML.T0043.004", "AML.T0018.000"),
        ("scan-model", "repair"),
        "a class that inputs with a common patch always get",
        ("Measure", "Manage"),
        _a_trigger_use,
    ),
    Threat(
        "ML-V08",
        _R,
        "Denial of service",
        "Query flooding and cost harvesting",
        ("AML.T0029", "AML.T0034"),
        (),
        "queries per client per minute; cost per client",
        ("Manage",),
        _a_dos,
    ),
    Threat(
        "ML-R01",
        "response",
        "Tampering",
        "No known-good version to return to",
        ("AML.T0031",),
        ("registry",),
        "alias history; scans attached to each version",
        ("Manage",),
        _a_no_rollback,
    ),
    Threat(
        "ML-R02",
        "response",
        "Repudiation",
        "Incident scope unknown",
        ("AML.T0020", "AML.T0024.002"),
        ("forensics",),
        "flagged samples per source; versions trained on them",
        ("Manage",),
        _a_forensics,
    ),
    Threat(
        "ML-R03",
        "response",
        "Information disclosure",
        "Indicators not shared with peers",
        ("AML.T0010.002", "AML.T0024.002"),
        ("export-stix",),
        "STIX bundles exported per incident",
        ("Govern",),
        _a_sharing,
    ),
)


@dataclass(frozen=True)
class ThreatRow:
    """One applicable threat of a system, with its rating and the reason."""

    threat: Threat
    risk: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        t = self.threat
        return {
            "id": t.id,
            "stage": t.stage,
            "stride": t.stride,
            "threat": t.title,
            "why": self.why,
            "risk": self.risk,
            "atlas": list(t.atlas),
            "controls": list(t.controls),
            "monitor": t.monitor,
            "nist_ai_rmf": list(t.nist),
        }


@dataclass(frozen=True)
class ThreatModel:
    """The threats that apply to one system."""

    system: dict[str, Any]
    rows: tuple[ThreatRow, ...]

    @property
    def uncovered(self) -> list[ThreatRow]:
        """Applicable threats no tripwire control covers."""
        return [r for r in self.rows if not r.threat.controls]

    def by_stage(self) -> dict[str, list[ThreatRow]]:
        return {st: [r for r in self.rows if r.threat.stage == st] for st in STAGES}

    def summary(self) -> dict[str, Any]:
        return {
            "threats": len(self.rows),
            "by_risk": {k: sum(r.risk == k for r in self.rows) for k in reversed(RISKS)},
            "uncovered": [r.threat.id for r in self.uncovered],
            "controls": sorted({c for r in self.rows for c in r.threat.controls}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "summary": self.summary(),
            "threats": [r.to_dict() for r in self.rows],
        }


def load_system(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML system description.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    dict
        The description with defaults filled in.

    Raises
    ------
    InputError
        Naming the file: unreadable, not YAML, or not fitting the schema (unknown
        fields are named).
    """
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > MAX_SYSTEM_BYTES:
            raise InputError(f"is larger than {MAX_SYSTEM_BYTES} bytes", p)
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", p) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a YAML file", p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", p) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"not valid YAML{where}: {problem}", p) from None
    if doc is None:
        raise InputError("is empty; see docs/threat-model.md for the schema", p)
    try:
        return validate(doc, SYSTEM_SCHEMA)
    except SchemaError as exc:
        raise InputError(str(exc), p) from None


def build_threat_model(system: Mapping[str, Any]) -> ThreatModel:
    """Assess every catalogue threat against a validated description.

    Parameters
    ----------
    system
        Output of :func:`load_system` (or of :func:`~tripwire.response.schema.validate`
        with :data:`SYSTEM_SCHEMA`).

    Returns
    -------
    ThreatModel
        The applicable threats, in stage order and, within a stage, highest risk first.
    """
    rows = []
    for t in CATALOGUE:
        verdict = t.assess(system)
        if verdict is not None:
            rows.append(ThreatRow(t, verdict[0], verdict[1]))
    rank = {st: i for i, st in enumerate(STAGES)}
    rows.sort(key=lambda r: (rank[r.threat.stage], -RISKS.index(r.risk), r.threat.id))
    return ThreatModel(dict(system), tuple(rows))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _atlas_cell(ids: tuple[str, ...]) -> str:
    return "<br>".join(f"{tid} {atlas_label(tid)}" for tid in ids)


def render_markdown(model: ThreatModel) -> str:
    """The threat model as Markdown: a summary, one table per lifecycle stage, gaps."""
    sysd = model.system["system"]
    s = model.summary()
    lines = [f"# Threat model: {sysd['name']}", ""]
    if sysd["description"]:
        lines += [sysd["description"], ""]
    if sysd["owner"]:
        lines += [f"Owner: {sysd['owner']}", ""]
    risks = ", ".join(f"{n} {k}" for k, n in s["by_risk"].items())
    lines += [
        f"{s['threats']} threats apply ({risks}); {len(s['uncovered'])} have no tripwire control.",
        "",
        "STRIDE adapted to ML; ATLAS ids are MITRE ATLAS techniques; NIST AI RMF functions: "
        "Govern, Map, Measure, Manage.",
        "",
    ]
    for stage, rows in model.by_stage().items():
        if not rows:
            continue
        lines += [
            f"## {stage.capitalize()}",
            "",
            "| id | STRIDE | threat | risk | MITRE ATLAS | tripwire control | monitor "
            "| NIST AI RMF |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            t = r.threat
            controls = ", ".join(f"`tripwire {c}`" for c in t.controls) or "none"
            lines.append(
                f"| {t.id} | {t.stride} | **{_cell(t.title)}**: {_cell(r.why)} | {r.risk} "
                f"| {_atlas_cell(t.atlas)} | {controls} | {_cell(t.monitor)} "
                f"| {', '.join(t.nist)} |"
            )
        lines.append("")
    if model.uncovered:
        lines += ["## Gaps: threats no tripwire control covers", ""]
        lines += [f"- {r.threat.id} {r.threat.title} ({r.risk})" for r in model.uncovered]
        lines.append("")
    return "\n".join(lines)


def to_report(model: ThreatModel, path: str | None = None) -> Any:
    """The threat model as a :class:`~tripwire.reports.Report` (one table per stage)."""
    from tripwire.reports import Figure, Report

    figures = []
    for stage, rows in model.by_stage().items():
        if rows:
            figures.append(
                Figure.table(
                    f"{stage.capitalize()}",
                    [
                        "id",
                        "STRIDE",
                        "threat",
                        "risk",
                        "MITRE ATLAS",
                        "control",
                        "monitor",
                        "NIST AI RMF",
                    ],
                    [
                        [
                            r.threat.id,
                            r.threat.stride,
                            f"{r.threat.title}: {r.why}",
                            r.risk,
                            ", ".join(r.threat.atlas),
                            ", ".join(f"tripwire {c}" for c in r.threat.controls) or "none",
                            r.threat.monitor,
                            ", ".join(r.threat.nist),
                        ]
                        for r in rows
                    ],
                )
            )
    summary = model.summary()
    return Report(
        command="threat-model",
        inputs={"system": {"path": path, "name": model.system["system"]["name"]}},
        summary={
            "system": model.system["system"]["name"],
            "threats": summary["threats"],
            **{f"risk_{k}": v for k, v in summary["by_risk"].items()},
            "uncovered": ", ".join(summary["uncovered"]) or "none",
        },
        figures=figures,
        sections={"threats": [r.to_dict() for r in model.rows], "system": model.system},
    )
