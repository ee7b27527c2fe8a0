"""``scan-model``: does a trained model hide a backdoor, which class does it target, and
what does the trigger look like?

Two trigger searches run over all classes at once (see
:mod:`tripwire.detectors.backdoor.reverse`):

- ``patch``: Neural Cleanse's smallest mask and pattern per class (patch triggers);
- ``blend``: the faintest full-image pattern per class (one opacity over the whole
  image), which catches blended, SIG-style and other whole-image triggers where a
  patch search fails, because their mask is the whole image.

Each search yields one trigger size per class; the MAD rule (Neural Cleanse's
consistency constant 1.4826) turns sizes into an anomaly index, and a class below the
median with index > 2 is flagged. The index is taken on the LOG of the sizes: trigger
sizes are positive and spread multiplicatively across clean classes (one class needs 10
pixels, another 80), so the raw sizes are right-skewed and a few hard classes inflate
the MAD until a 1-pixel trigger no longer stands out; the log makes the clean classes'
spread roughly symmetric, which is what the MAD rule assumes. Neural Cleanse's raw-L1
index is reported beside it (``anomaly_index_l1``). Only triggers that actually reach
the attack-success threshold can flag a class.

Neural Cleanse flags a class at index 2, but that rule's false-alarm rate is per class,
and a model has K of them: if clean log sizes are normal, the largest of 10 indices
exceeds 2 in 33% of clean models (64% with 43 classes), and here 3 of 4 clean MNIST
models crossed it (2.03, 2.38, 2.55). So each method's per-class ``nc_rule`` keeps NC's
rule, and a class is **flagged** only beyond the model-level threshold
:func:`model_threshold`: the 95% quantile of the largest index among K classes under
that normal null (3.81 for K = 10), so each method falsely flags at most about 5% of
clean models whatever their spread (the scale floor only shrinks indices). A class over
NC's rule but under the threshold is reported at medium severity, and is flagged when it
is corroborated: both searches put the same class over NC's rule (no clean model here
had that: their second search stayed under 1.8), or a scan-data report independently
flags the same class (TW203).

The verdict is ``backdoored`` when a class is flagged; each class lists which evidence
fired. Neither search needs ``features(x)``; both need gradients (TorchScript
or a state dict, not ONNX).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors.backdoor.reverse import (
    MAD_CONSISTENCY,
    SearchConfig,
    SearchResult,
    mad_anomaly,
    search_triggers,
)
from tripwire.detectors.backdoor.trigger import ReversedTrigger
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset
from tripwire.models.loading import Model
from tripwire.reports import Finding, Rule, Severity, register_rule

RULE_PATCH = register_rule(
    Rule(
        id="TW201",
        name="backdoor-patch-trigger",
        short_description="A class is reached by a far smaller trigger patch than the others",
        help=(
            "The model likely hides a patch backdoor targeting this class. Do not deploy it; "
            "remove the backdoor (tripwire repair) or retrain on verified data."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0018", "AML.T0018.000", "AML.T0043.004"),
    )
)
RULE_BLEND = register_rule(
    Rule(
        id="TW202",
        name="backdoor-full-image-trigger",
        short_description="A class is reached by a far fainter full-image pattern than the others",
        help=(
            "The model likely hides a full-image (blended, SIG-style) backdoor targeting "
            "this class. Do not deploy it; remove the backdoor (tripwire repair) or retrain."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0018", "AML.T0018.000", "AML.T0043.004"),
    )
)
RULE_DATA_MATCH = register_rule(
    Rule(
        id="TW203",
        name="backdoor-confirmed-by-data-scan",
        short_description="The model's suspected target class is also flagged by scan-data",
        help="Two independent scans agree: treat the model and its training data as poisoned.",
        default_severity=Severity.CRITICAL,
        atlas=("AML.T0018.000", "AML.T0020"),
    )
)

#: The decision threshold of the MAD rule (Neural Cleanse).
ANOMALY_THRESHOLD = 2.0

#: Floor of the robust scale of log trigger sizes. When the clean classes happen to agree
#: closely (a spread of a few percent), the plain MAD rule calls a class an outlier for
#: needing a trigger 30% smaller than the median, which clean models do (a clean 16x16
#: digits model: one class at 0.69x the median patch size, raw-L1 NC index 4.0). With the
#: floor, index 2 means a trigger at most exp(-0.5) = 0.61x the median class's; planted
#: backdoors sit far below that (Neural Cleanse's GTSRB example: 16.1 against a median of
#: 64.5, 0.25x, index 5.5 here).
MIN_LOG_SCALE = 0.25

#: Share of clean models one method may flag (see the module docstring).
MODEL_FPR = 0.05


@lru_cache(maxsize=64)
def model_threshold(n_classes: int, fpr: float = MODEL_FPR) -> float:
    """The anomaly index that the largest of ``n_classes`` clean indices exceeds with
    probability ``fpr``, and at least NC's 2.

    Monte Carlo (20,000 draws, fixed seed) of the MAD rule on i.i.d. normal log sizes,
    which is the rule's own assumption; the scale floor :data:`MIN_LOG_SCALE` can only
    lower real indices, so the rate holds for any clean spread.
    """
    if n_classes < 3:
        raise InputError(f"the MAD rule needs at least 3 classes, got {n_classes}", "classes")
    if not 0.0 < fpr < 1.0:
        raise InputError(f"fpr must lie in (0, 1), got {fpr}", "fpr")
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20_000, n_classes))
    med = np.median(v, axis=1, keepdims=True)
    mad = MAD_CONSISTENCY * np.median(np.abs(v - med), axis=1, keepdims=True)
    top = ((med - v) / mad).max(axis=1)
    return float(max(ANOMALY_THRESHOLD, np.quantile(top, 1.0 - fpr)))


#: Scan settings of each method: all classes batched, shorter patience than NC.
METHODS: dict[str, SearchConfig] = {
    "patch": SearchConfig(mask="patch"),
    "blend": SearchConfig(mask="blend"),
}

_RULE_OF = {"patch": RULE_PATCH, "blend": RULE_BLEND}
_NORM_NAME = {"patch": "mask L1", "blend": "opacity"}


@dataclass
class ClassEvidence:
    """What the scan found for one class; ``evidence[method]`` holds each method's numbers."""

    cls: int
    samples: int
    anomaly_index: float
    trigger_norm: float
    flagged: bool
    fired: list[str]
    evidence: dict[str, dict[str, Any]]
    data_scan: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "class": self.cls,
            "samples": self.samples,
            "anomaly_index": _r(self.anomaly_index),
            "trigger_norm": _r(self.trigger_norm),
            "flagged": self.flagged,
            "fired": list(self.fired),
            **{m: dict(e) for m, e in self.evidence.items()},
        }
        if self.data_scan is not None:
            d["data_scan"] = self.data_scan
        return d


@dataclass
class ModelScanResult:
    """Verdict, target classes, per-class evidence, findings and every reversed trigger."""

    verdict: str
    target_classes: list[int]
    classes: list[ClassEvidence]
    findings: list[Finding]
    triggers: list[ReversedTrigger]
    methods: list[str]
    time_s: float
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    samples: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "target_classes": list(self.target_classes),
            "classes": [c.to_dict() for c in self.classes],
            "findings": [f.to_dict() for f in self.findings],
            "methods": list(self.methods),
            "rule": {
                "statistic": "anomaly index = (median - size) / (1.4826 * MAD) of log sizes",
                "nc_threshold": ANOMALY_THRESHOLD,
                "threshold": _r(model_threshold(len(self.classes)))
                if len(self.classes) >= 3
                else None,
                "model_fpr": MODEL_FPR,
            },
            "time_s": round(self.time_s, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "device": self.device,
            "clean_samples": self.samples,
            "notes": list(self.notes),
        }

    def trigger(self, cls: int, method: str) -> ReversedTrigger:
        """The reversed trigger of ``cls`` found by ``method``."""
        for t in self.triggers:
            if t.target == cls and t.method.startswith(method):
                return t
        raise KeyError((cls, method))


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def check_model_and_data(model: Model, data: Dataset) -> int:
    """Validate a model/clean-set pair for scanning; return the number of classes.

    Raises
    ------
    InputError
        Not images, an ONNX model, not a classifier (fewer than 3 outputs for the MAD
        rule), or a clean set whose classes do not cover the model's outputs.
    """
    if not data.is_image:
        raise InputError("scan-model needs image data (N, C, H, W); got a table", data.path)
    if model.kind == "onnx":
        raise InputError(
            "scan-model reverse-engineers triggers by gradient: give a TorchScript model "
            "(or a state dict with --arch), not an ONNX graph",
            model.path,
        )
    n_out = model.check_input(data.input_shape, None)
    if n_out < 3:
        raise InputError(
            f"the model has {n_out} output(s); scan-model needs a classifier with at least "
            "3 classes (the outlier rule compares classes)",
            model.path,
        )
    present = set(np.unique(data.y).tolist())
    missing = sorted(set(range(n_out)) - present)
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise InputError(
            f"the clean set lacks classes {shown} of the model's {n_out}; it must cover "
            "every class",
            data.path,
        )
    extra = sorted(present - set(range(n_out)))
    if extra:
        raise InputError(
            f"the clean set has labels {extra[:5]} outside the model's {n_out} classes",
            data.path,
        )
    return n_out


def stratified_subset(y: npt.NDArray[np.int64], n: int, random_state: int) -> npt.NDArray[np.int64]:
    """At most ``n`` positions, as equal per class as the data allows."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(random_state)
    classes = np.unique(y)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    out: list[int] = []
    i = 0
    while len(out) < n:
        for p in pools:
            if i < len(p) and len(out) < n:
                out.append(int(p[i]))
        i += 1
    return np.sort(np.asarray(out, dtype=np.int64))


def _method_evidence(
    search: SearchResult, method: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], list[dict[str, Any]]]:
    norms = search.norms
    usable = search.converged & np.isfinite(norms) & (norms > 0)
    logs = np.log(np.maximum(norms, 1e-12))
    idx, med, _ = mad_anomaly(logs, min_scale=MIN_LOG_SCALE)
    idx_l1, _, _ = mad_anomaly(norms)
    nc_rule = usable & (logs < med) & (idx > ANOMALY_THRESHOLD)
    flagged = nc_rule & (idx > model_threshold(len(norms)))
    rows = [
        {
            "trigger_norm": _r(norms[i]),
            "anomaly_index": _r(idx[i]),
            "anomaly_index_l1": _r(idx_l1[i]),
            "nc_rule": bool(nc_rule[i]),
            "flagged": bool(flagged[i]),
            "attack_success": round(float(t.attack_success), 4),
            "converged": bool(search.converged[i]),
            "epochs": int(search.epochs[i]),
        }
        for i, t in enumerate(search.triggers)
    ]
    return idx, flagged, rows


def scan_model(
    model: Model,
    data: Dataset,
    *,
    max_samples: int | None = None,
    random_state: int = 0,
    methods: tuple[str, ...] = ("patch", "blend"),
    configs: dict[str, SearchConfig] | None = None,
    data_report: dict[str, Any] | None = None,
    artifact: str | None = None,
) -> ModelScanResult:
    """Scan ``model`` for backdoors with the clean set ``data``.

    Parameters
    ----------
    model
        A loaded TorchScript (or state-dict) classifier.
    data
        A small clean set covering every class of the model.
    max_samples
        Use at most this many clean samples (stratified); all by default.
    methods
        Which trigger searches to run (``patch``, ``blend``).
    configs
        Search settings by method (default :data:`METHODS`).
    data_report
        A ``scan-data`` JSON report of the model's training data, to cross-reference
        its per-class findings.
    artifact
        The model file named in findings.

    Raises
    ------
    InputError
        See :func:`check_model_and_data`; an unknown method; ``max_samples`` < 1.
    """
    t0 = time.perf_counter()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown scan method(s) {unknown} (choose from patch, blend)", "methods")
    n_out = check_model_and_data(model, data)
    if max_samples is not None and max_samples < 1:
        raise InputError(f"--max-samples must be at least 1, got {max_samples}", "--max-samples")
    ds = data
    if max_samples is not None and max_samples < len(data):
        ds = data.subset(stratified_subset(data.y, max_samples, random_state))
        check_model_and_data(model, ds)
    x = ds.model_input()
    y = ds.y
    cfgs = {**METHODS, **(configs or {})}
    timings: dict[str, float] = {}
    per_method: dict[str, tuple[Any, Any, list[dict[str, Any]]]] = {}
    triggers: list[ReversedTrigger] = []
    device = model.device
    for m in methods:
        res = search_triggers(model, x, y, config=cfgs[m], random_state=random_state)
        timings[m] = res.time_s
        device = res.device
        per_method[m] = _method_evidence(res, m)
        triggers.extend(res.triggers)
    cross = _data_scan_classes(data_report) if data_report is not None else None
    classes: list[ClassEvidence] = []
    for c in range(n_out):
        ev = {m: per_method[m][2][c] for m in methods}
        fired = [m for m in methods if bool(per_method[m][1][c])]
        marginal = [m for m in methods if ev[m]["nc_rule"] and m not in fired]
        confirmed = bool(cross and cross.get(c, {}).get("flagged"))
        if marginal and (confirmed or len(fired) + len(marginal) >= 2):
            # Under the model-level threshold alone, but corroborated: the other search
            # finds the same class over NC's rule, or the data scan flags it too.
            fired = fired + marginal
        best = max(float(per_method[m][0][c]) for m in methods)
        first = methods[0]
        classes.append(
            ClassEvidence(
                cls=c,
                samples=int((y == c).sum()),
                anomaly_index=best,
                trigger_norm=float(ev["patch"]["trigger_norm"] or np.inf)
                if "patch" in ev
                else float(ev[first]["trigger_norm"] or np.inf),
                flagged=bool(fired),
                fired=fired,
                evidence=ev,
                data_scan=None if cross is None else cross.get(c, {"flagged": False}),
            )
        )
    targets = [c.cls for c in classes if c.flagged]
    findings = _findings(classes, artifact or model.path, cross)
    notes = []
    if not model.has_features:
        notes.append("the model exports no features(x); neither search needs it")
    for m in methods:
        bad = [c.cls for c in classes if not c.evidence[m]["converged"]]
        if bad:
            notes.append(
                f"{m}: no trigger reached {cfgs[m].asr_threshold:.0%} attack success for "
                f"classes {bad} (they rank as hard to reach and cannot be flagged)"
            )
    return ModelScanResult(
        verdict="backdoored" if targets else "clean",
        target_classes=targets,
        classes=classes,
        findings=findings,
        triggers=triggers,
        methods=list(methods),
        time_s=time.perf_counter() - t0,
        timings=timings,
        device=device,
        samples=len(ds),
        notes=notes,
    )


def _findings(
    classes: list[ClassEvidence], artifact: str, cross: dict[int, dict[str, Any]] | None
) -> list[Finding]:
    out: list[Finding] = []
    limit = model_threshold(len(classes))
    for c in classes:
        for m in (m for m in c.evidence if c.evidence[m].get("nc_rule")):
            e = c.evidence[m]
            idx = float(e["anomaly_index"])
            what = (
                f"Class {c.cls} is reached by a {m} trigger of {_NORM_NAME[m]} "
                f"{e['trigger_norm']} with {e['attack_success']:.0%} attack success; "
                f"anomaly index {idx:.2f}"
            )
            if m in c.fired:
                # The model-level threshold is the rule's edge; 4 and above is as clear as
                # NC's published cases.
                conf = float(min(0.99, 0.6 + 0.1 * (idx - limit)))
                sev = Severity.CRITICAL if idx >= max(4.0, limit) else Severity.HIGH
                title = f"Backdoor suspected: class {c.cls} ({m} trigger)"
                message = (
                    f"{what} > {limit:.2f}, beyond what {len(classes)}-class clean models reach."
                    if idx > limit
                    else f"{what} > {ANOMALY_THRESHOLD:g}, corroborated by "
                    + (
                        "the other trigger search"
                        if len([k for k in c.fired if k != m]) > 0
                        else "the data scan flagging the same class"
                    )
                    + "."
                )
            else:
                conf, sev = 0.3, Severity.MEDIUM
                title = f"Small trigger for class {c.cls} ({m}), within clean models' range"
                message = (
                    f"{what} > {ANOMALY_THRESHOLD:g} (Neural Cleanse's rule) but <= "
                    f"{limit:.2f}, which about {MODEL_FPR:.0%} of clean {len(classes)}-class "
                    "models exceed: worth a look, not a verdict."
                )
            out.append(
                Finding(
                    rule_id=_RULE_OF[m].id,
                    title=title,
                    message=message,
                    severity=sev,
                    confidence=round(conf, 3),
                    artifact=artifact,
                    target_class=c.cls,
                    evidence={"method": m, **e, "threshold": round(limit, 4)},
                )
            )
        if cross is not None and c.flagged and c.data_scan and c.data_scan.get("flagged"):
            out.append(
                Finding(
                    rule_id=RULE_DATA_MATCH.id,
                    title=f"Class {c.cls}: model scan and data scan agree",
                    message=(
                        f"scan-model flags class {c.cls} ({', '.join(c.fired)}) and the "
                        f"scan-data report flags a suspicious cluster in the same class."
                    ),
                    severity=Severity.CRITICAL,
                    confidence=0.95,
                    artifact=artifact,
                    target_class=c.cls,
                    evidence={"model_methods": c.fired, "data_scan": c.data_scan},
                )
            )
    return out


def _data_scan_classes(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per class, what a ``scan-data`` report says: flagged samples and TW104 findings."""
    if not isinstance(report, dict) or report.get("command") not in (None, "scan-data"):
        raise InputError("is not a scan-data report", "--data-report")
    out: dict[int, dict[str, Any]] = {}
    for row in report.get("per_class", []) or []:
        if isinstance(row, dict) and isinstance(row.get("class"), int):
            out[row["class"]] = {"flagged_samples": int(row.get("flagged", 0)), "flagged": False}
    for f in report.get("findings", []) or []:
        if not isinstance(f, dict):
            continue
        tc = f.get("target_class")
        if isinstance(tc, int):
            entry = out.setdefault(tc, {"flagged_samples": 0, "flagged": False})
            # A medium finding is what the data scan's false alarms can produce: it is
            # listed, but only a high or critical one corroborates the model scan.
            if f.get("severity") in ("high", "critical"):
                entry["flagged"] = True
            entry.setdefault("rules", []).append(str(f.get("rule_id")))
    return out
