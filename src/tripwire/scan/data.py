"""``scan-data``: rank every training sample by suspicion, flag the worst, name sources.

Pipeline: features (from the given model's ``features``, a ``.npy`` file, or a proxy
trained here) -> out-of-sample probabilities (cross-validated proxy on the features,
never the suspect model's memorised in-sample predictions) -> every registered data
detector whose needs are met -> one combined score and verdict per sample -> per-source
enrichment of the flags (hypergeometric test) -> findings.

The combined score and verdict come from :mod:`tripwire.scan.ensemble`: detectors vote
in families of one threat, each family flags at its quorum, feature-space cluster flags
need the item to look like another class as an input, and the score is at least 1
exactly where the verdict flags. The ``poisoned`` ground-truth field of the data is
never read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binom, hypergeom

from tripwire.detectors import (
    BaseDetector,
    DetectorInput,
    DetectorResult,
    Need,
    Threat,
    available,
    get,
)
from tripwire.detectors.input_space import InputSpace, group_spread, other_class_confirmation
from tripwire.detectors.oos import label_probabilities, reference_probabilities
from tripwire.detectors.poisoning.group_completion import group_completion, group_side
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset
from tripwire.reports import Finding, Rule, Severity, register_rule
from tripwire.scan.ensemble import EnsembleResult, combine

if TYPE_CHECKING:
    from tripwire.models.loading import Model

RULE_POISON = register_rule(
    Rule(
        id="TW101",
        name="poisoned-samples",
        short_description="Training samples flagged as likely poisons or backdoor carriers",
        help="Review the flagged samples; remove them (tripwire clean) and retrain.",
        default_severity=Severity.HIGH,
        atlas=("AML.T0020",),
    )
)
RULE_LABELS = register_rule(
    Rule(
        id="TW102",
        name="label-issues",
        short_description="Training samples whose labels disagree with the data",
        help="Relabel or remove the flagged samples.",
        default_severity=Severity.MEDIUM,
        atlas=("AML.T0020",),
    )
)
RULE_SOURCE = register_rule(
    Rule(
        id="TW103",
        name="suspicious-source",
        short_description="A data source supplies far more flagged samples than its share",
        help="Investigate the supplier; verify its deliveries against their manifests.",
        default_severity=Severity.HIGH,
        atlas=("AML.T0020", "AML.T0010.002"),
    )
)
RULE_CLASS = register_rule(
    Rule(
        id="TW104",
        name="backdoor-target-class",
        short_description="One class holds a distinct cluster of suspicious samples",
        help="A backdoor usually targets one class: scan the model (tripwire scan-model).",
        default_severity=Severity.HIGH,
        atlas=("AML.T0020", "AML.T0018.000"),
    )
)

#: Fewest verified samples that calibrate a false-alarm rate (``--trusted-source``): at
#: 1% the threshold is then an order statistic among the top few.
MIN_TRUSTED = 100
#: The false-alarm rate a detector's threshold aims at when it states none: the default
#: ``fpr`` of the detector interface (:class:`tripwire.detectors.base.BaseDetector`).
NOMINAL_FPR = 0.01
#: A flag count this unlikely (one-sided binomial p-value) under the false-alarm rate
#: alone is more than false alarms: TW101 is then high, otherwise medium.
EXCESS_P = 1e-3

#: The same for one class's flags (TW104), stricter because cluster detectors flag groups:
#: flags that arrive together make the independent-flags binomial tail too thin on clean
#: data (a clean MNIST scan put 12 of its 24 flags in one class, p = 1e-3 after
#: Bonferroni), while a poisoned target class sits far beyond it (225 of 640, p < 1e-200;
#: 1% poisoning of ten classes is still p < 1e-15).
CLASS_EXCESS_P = 1e-6

#: Inputs a data scan can provide to detectors (and the model, where it has one).
DATA_NEEDS = frozenset({Need.FEATURES, Need.LABELS, Need.PROBS, Need.DATA})
WITH_MODEL = DATA_NEEDS | {Need.MODEL}


@dataclass
class DataScanResult:
    """Everything ``scan-data`` reports (JSON-ready through :meth:`sections`)."""

    scores: npt.NDArray[np.float64]
    flags: npt.NDArray[np.bool_]
    detectors: dict[str, DetectorResult]
    timings: dict[str, float]
    sources: list[dict[str, Any]]
    per_class: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    feature_origin: str = ""
    #: How the out-of-sample probabilities that label checks read were made.
    probs_origin: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    ensemble: EnsembleResult | None = None
    #: What calibrated the thresholds: ``{"kind": "robust statistics"}``, or a trusted
    #: set's kind and size, and for verified samples of the data how many the scan
    #: flagged anyway (the false-alarm rate measured on known-clean samples).
    calibration: dict[str, Any] = field(default_factory=dict)
    #: Share of samples whose out-of-sample most probable class is their label: how far
    #: the label checks' proxy can be trusted to tell label errors from its own.
    label_agreement: float | None = None

    @property
    def flagged(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.flags)]

    def sections(self) -> dict[str, Any]:
        return {
            "scores": [round(float(s), 6) for s in self.scores],
            "flagged": self.flagged,
            "detectors": {
                name: {
                    "threat": str(r.threat),
                    "scores": [round(float(s), 6) for s in r.scores],
                    "threshold": float(r.threshold),
                    "flagged": r.flagged,
                    "calibration": r.calibration.to_dict(),
                    "evidence": r.evidence,
                    "time_s": round(self.timings.get(name, 0.0), 3),
                }
                for name, r in self.detectors.items()
            },
            "sources": self.sources,
            "per_class": self.per_class,
            "skipped_detectors": self.skipped,
            "ensemble": None if self.ensemble is None else self.ensemble.to_dict(),
            "calibration": self.calibration,
            "label_agreement": self.label_agreement,
        }


def source_enrichment(
    sources: npt.NDArray[np.str_], flags: npt.NDArray[np.bool_]
) -> list[dict[str, Any]]:
    """Per source: samples, flagged, enrichment (flag share / overall share) and the
    hypergeometric p-value of seeing at least that many flags by chance."""
    n = len(flags)
    k = int(flags.sum())
    rows = []
    for src in sorted(set(sources.tolist())):
        mask = sources == src
        m = int(mask.sum())
        x = int(flags[mask].sum())
        expected = m * k / n if n else 0.0
        p = float(hypergeom.sf(x - 1, n, k, m)) if x > 0 else 1.0
        rows.append(
            {
                "source": src,
                "samples": m,
                "flagged": x,
                "flag_rate": round(x / m, 6) if m else 0.0,
                "enrichment": round(x / expected, 4) if expected > 0 else None,
                "p_value": p,
            }
        )
    return rows


def scan_probabilities(
    ds: Dataset,
    features: npt.NDArray[np.floating[Any]],
    seed: int = 0,
    space: InputSpace | None = None,
) -> tuple[npt.NDArray[np.float64], str]:
    """The out-of-sample probabilities the scan's label checks read, and their origin
    (both views for images; see :func:`~tripwire.detectors.oos.label_probabilities`).
    ``space`` is ``ds``'s shared input space, where the caller has one."""
    if not ds.is_image:
        return label_probabilities(features, ds.y, n_classes=ds.n_classes, random_state=seed)
    if space is None:
        space = InputSpace(ds.model_input(), random_state=seed)
    return label_probabilities(
        features, ds.y, n_classes=ds.n_classes, random_state=seed, space=space
    )


def scan_inputs(
    ds: Dataset,
    features: npt.NDArray[np.floating[Any]],
    seed: int = 0,
    *,
    model: Any = None,
    margins: npt.NDArray[np.floating[Any]] | None = None,
    calibrators: npt.NDArray[np.integer[Any]] | None = None,
) -> tuple[DetectorInput, InputSpace, npt.NDArray[np.float64], str]:
    """What every detector of a data scan reads: the features, labels, out-of-sample
    probabilities (:func:`scan_probabilities`), the data, the model where there is one,
    the training run's margins and calibrators where recorded, and one input-space embedding and
    neighbour search shared by every check that reads them. Returns the input, that
    input space, the probabilities and their origin."""
    space = InputSpace(ds.model_input(), random_state=seed)
    probs, origin = scan_probabilities(ds, features, seed, space=space)
    inputs = DetectorInput(
        features=features,
        labels=ds.y,
        probs=probs,
        data=ds,
        model=model,
        input_space=space,
        margins=margins,
        calibrators=calibrators,
    )
    return inputs, space, probs, origin


def trusted_reference(
    ds: Dataset,
    features: npt.NDArray[np.floating[Any]],
    space: InputSpace,
    trusted_features: npt.NDArray[np.floating[Any]],
    trusted_labels: npt.NDArray[np.int64],
    trusted_images: npt.NDArray[np.floating[Any]] | None = None,
) -> DetectorInput:
    """A trusted clean set as the detectors' calibration reference: its features and
    labels, and probabilities from the suspect data's own proxy and input space
    (:func:`~tripwire.detectors.oos.reference_probabilities`), so that its label checks
    read the same scale as the suspect items'.

    Raises
    ------
    InputError
        Trusted features of another width than the data's, or labels outside its classes.
    """
    t_feats = np.asarray(trusted_features, np.float64)
    t_y = np.asarray(trusted_labels, np.int64)
    if t_feats.ndim != 2 or t_feats.shape[0] != t_y.shape[0]:
        raise InputError(
            f"trusted features {t_feats.shape} do not give one row per label ({t_y.shape[0]})",
            "--trusted",
        )
    if t_y.size == 0 or int(t_y.min()) < 0 or int(t_y.max()) >= ds.n_classes:
        raise InputError(f"trusted labels must lie in [0, {ds.n_classes})", "--trusted")
    probs = reference_probabilities(
        features,
        ds.y,
        t_feats,
        n_classes=ds.n_classes,
        space=space if ds.is_image else None,
        reference_images=trusted_images,
    )
    return DetectorInput(features=t_feats, labels=t_y, probs=probs)


def scan_ensemble(
    results: dict[str, DetectorResult],
    ds: Dataset,
    space: InputSpace,
    seed: int,
    features: npt.NDArray[np.floating[Any]] | None = None,
) -> EnsembleResult:
    """The ensemble's verdict on the detectors' ``results`` for ``ds``, with the
    evidence a data scan gives it: the input-space look-alike test and group spread
    (``space``), and the completion of found groups and the sides of behavioural
    groups on the scan's ``features`` (None: groups stay as found)."""
    return combine(
        results,
        len(ds),
        confirm_other=other_class_confirmation(space, ds.y),
        labels=ds.y,
        spread=group_spread(space, ds.y, random_state=seed),
        complete=None if features is None else group_completion(features, ds.y, random_state=seed),
        side=None if features is None else group_side(features, ds.y, random_state=seed),
    )


def scan_data(
    ds: Dataset,
    features: npt.NDArray[np.floating[Any]],
    *,
    detectors: list[str] | None = None,
    trusted_features: npt.NDArray[np.floating[Any]] | None = None,
    trusted_labels: npt.NDArray[np.int64] | None = None,
    trusted_images: npt.NDArray[np.floating[Any]] | None = None,
    trusted_mask: npt.NDArray[np.bool_] | None = None,
    seed: int = 0,
    feature_origin: str = "",
    artifact: str | None = None,
    model: Model | None = None,
    margins: npt.NDArray[np.floating[Any]] | None = None,
    calibrators: npt.NDArray[np.integer[Any]] | None = None,
) -> DataScanResult:
    """Run the data detectors on ``ds`` with its ``features``.

    Parameters
    ----------
    detectors
        Names to run (default: every registered detector whose needs are met).
    trusted_features, trusted_labels
        Features of a small clean set: detectors are then calibrated at their FPR on it
        instead of by robust statistics on the suspect data itself.
    trusted_images
        That set's inputs, where they are images. The trusted items' probabilities come
        from the suspect data's proxy and input space, both views pooled as for the
        suspect items (:func:`~tripwire.detectors.oos.reference_probabilities`).
    trusted_mask
        The samples of ``ds`` verified clean (boolean, one per sample; a trusted
        source): detectors are calibrated at their FPR on these samples' own scores
        (:meth:`~tripwire.detectors.base.BaseDetector.calibrate_fitted`). Unlike a
        separate clean set, they were in the model's training and are scored in the same
        fit as the rest, so the thresholds are not biased high. Exclusive with
        ``trusted_features``.
    model
        The model trained on ``ds`` (the suspect model or a proxy): behavioural
        detectors run only with it.
    margins
        ``(epochs, len(ds))`` margins of a training run on ``ds``
        (:func:`~tripwire.detectors.poisoning.dynamics.record_dynamics`): the
        training-dynamics detector runs only with them.
    calibrators
        The positions that run relabelled at random (``Dynamics.calibrators``): they
        set the training-dynamics detector's cut.

    Raises
    ------
    InputError
        Features whose row count does not match the data, a single-class dataset.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] != len(ds):
        raise InputError(
            f"features have shape {feats.shape}; expected ({len(ds)}, F), one row per sample",
            "--features",
        )
    if not np.all(np.isfinite(feats)):
        raise InputError("features contain NaN or infinite values", "--features")
    if len(np.unique(ds.y)) < 2:
        raise InputError("a data scan needs at least two classes", ds.path)
    inputs, space, probs, probs_origin = scan_inputs(
        ds, feats, seed, model=model, margins=margins, calibrators=calibrators
    )
    have = WITH_MODEL if model is not None else DATA_NEEDS
    if margins is not None:
        have = have | {Need.DYNAMICS}
    chosen = (
        [get(name) for name in detectors]
        if detectors
        else [
            c
            for c in available(satisfiable_with=have)
            if c.threat in (Threat.POISONING, Threat.BACKDOOR)
        ]
    )
    results: dict[str, DetectorResult] = {}
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if trusted_mask is not None:
        if trusted_features is not None:
            raise InputError("give a trusted set or trusted samples, not both", "--trusted")
        trusted_mask = np.asarray(trusted_mask, dtype=bool)
        if trusted_mask.shape != (len(ds),):
            raise InputError(
                f"trusted mask has shape {trusted_mask.shape}; expected ({len(ds)},)",
                "--trusted-source",
            )
        if int(trusted_mask.sum()) < MIN_TRUSTED:
            raise InputError(
                f"{int(trusted_mask.sum())} trusted samples; at least {MIN_TRUSTED} are "
                "needed to calibrate a false-alarm rate",
                "--trusted-source",
            )
    # A trusted set that does not fit the data is the user's error, not a detector's.
    reference = (
        trusted_reference(ds, feats, space, trusted_features, trusted_labels, trusted_images)
        if trusted_features is not None and trusted_labels is not None
        else None
    )
    for cls in chosen:
        if not cls.needs <= have:
            raise InputError(
                f"needs {', '.join(sorted(cls.needs - have))}, which this data "
                "scan does not provide",
                cls.name,
            )
        det = cls()
        t0 = time.perf_counter()
        try:
            det.fit(inputs)
            if reference is not None:
                det.calibrate(reference)
            elif trusted_mask is not None and isinstance(det, BaseDetector):
                det.calibrate_fitted(inputs, trusted_mask)
            results[cls.name] = det.detect(inputs)
        except InputError as exc:
            # The data does not suit this detector (too few samples per class, ...): the
            # others still run, and the report says which was skipped and why.
            if detectors:
                raise
            skipped[cls.name] = exc.message
            continue
        timings[cls.name] = time.perf_counter() - t0
    ensemble = scan_ensemble(results, ds, space, seed, feats)
    scores, flags = ensemble.scores, ensemble.flags
    sources = source_enrichment(ds.source, flags)
    per_class = [
        {"class": int(c), "samples": int((ds.y == c).sum()), "flagged": int(flags[ds.y == c].sum())}
        for c in np.unique(ds.y)
    ]
    result = DataScanResult(
        scores=scores,
        flags=flags,
        detectors=results,
        timings=timings,
        sources=sources,
        per_class=per_class,
        feature_origin=feature_origin,
        probs_origin=probs_origin,
        skipped=skipped,
        ensemble=ensemble,
        calibration=_calibration_summary(flags, reference, trusted_mask),
        label_agreement=round(float(np.mean(np.argmax(probs, axis=1) == ds.y)), 4),
    )
    result.findings = _findings(ds, result, artifact or ds.path)
    return result


def _calibration_summary(
    flags: npt.NDArray[np.bool_],
    reference: DetectorInput | None,
    trusted_mask: npt.NDArray[np.bool_] | None,
) -> dict[str, Any]:
    if reference is not None and reference.labels is not None:
        return {"kind": "trusted set", "samples": len(reference.labels)}
    if trusted_mask is not None:
        n = int(trusted_mask.sum())
        hit = int((flags & trusted_mask).sum())
        return {
            "kind": "verified samples of the data",
            "samples": n,
            "flagged": hit,
            "flag_rate": round(hit / n, 6),
        }
    return {"kind": "robust statistics"}


def _flip_groups(res: DataScanResult) -> dict[str, int]:
    """The labels family's flip groups, ``{"given<-likely": flagged items}``."""
    if res.ensemble is None:
        return {}
    return dict(res.ensemble.families.get("labels", {}).get("flip_groups", {}))


def _target_reading(res: DataScanResult, cls: dict[str, Any]) -> str:
    """What a class holding most flags likely is: the given label of a flip group that
    holds most of its flags is a targeted label flip, anything else a backdoor target."""
    for key, n in _flip_groups(res).items():
        given, source = key.split("<-")
        if given == str(cls["class"]) and n >= 0.5 * cls["flagged"]:
            return (
                f"{n} of them look like class {source}: a targeted label flip into this "
                "class is likely (TW102), not a backdoor's poisons"
            )
    return "a backdoor target is likely"


def _label_finding(
    res: DataScanResult, idx: npt.NDArray[np.int64], artifact: str | None
) -> Finding:
    """TW102: the samples the label checks' quorum flagged, with what they rest on."""
    robust = res.calibration.get("kind", "robust statistics") == "robust statistics"
    agreement = res.label_agreement
    caveat = ""
    if robust:
        # A weak proxy's own errors look like label errors; only a clean reference
        # measures how many (docs/benchmarks.md, session 16: CIFAR-10 at 71%).
        caveat = (
            "; thresholds from robust statistics: calibrate with verified samples "
            "(--trusted-source) to keep the proxy's own errors out"
        )
    share = (
        f"; the out-of-sample proxy agrees with {agreement:.1%} of the labels"
        if (agreement is not None)
        else ""
    )
    # Flips concentrated from one class into another: a targeted flip, named by pair.
    groups = _flip_groups(res)
    pairs = "; ".join(
        f"{n} labelled {key.split('<-')[0]} look like class {key.split('<-')[1]}"
        for key, n in groups.items()
    )
    concentrated = f"; flips concentrated in class pairs (targeted): {pairs}" if pairs else ""
    return Finding(
        rule_id=RULE_LABELS.id,
        title=f"{idx.size} samples whose labels disagree with the data",
        message=(
            f"{idx.size} samples are flagged by the label checks (confident learning and "
            f"k-NN label disagreement){concentrated}{share}{caveat}"
        ),
        severity=Severity.MEDIUM,
        confidence=_label_confidence(res, idx.size),
        atlas=("AML.T0020",),
        artifact=artifact,
        indices=tuple(int(i) for i in idx),
        evidence={
            "calibration": res.calibration,
            "label_agreement": agreement,
            "probs_origin": res.probs_origin,
            # "given<-likely": flagged items of a flip group (see the ensemble).
            "flip_groups": groups,
        },
    )


def _label_confidence(res: DataScanResult, n_flagged: int) -> float:
    """The label flags' estimated precision where verified samples measured the scan's
    false-alarm rate (1 - the false flags that rate predicts over the data / the flags),
    else 0.5: robust statistics or a separate clean set measure no such rate here."""
    rate = res.calibration.get("flag_rate")
    if rate is None or n_flagged == 0:
        return 0.5
    expected_false = float(rate) * len(res.scores)
    return round(float(min(0.99, max(0.5, 1.0 - expected_false / n_flagged))), 4)


def _excess_p_value(res: DataScanResult, n_flagged: int, n: int) -> tuple[float, float]:
    """P(at least ``n_flagged`` flags of ``n`` clean samples) and the false-alarm rate used.

    The rate is the highest target false-positive rate among the detectors that flagged
    (:data:`NOMINAL_FPR` for those calibrated by robust statistics, which state none):
    the ensemble's quorums only lower the clean flag rate below it, so the test is
    conservative.
    """
    rates = [
        r.calibration.target_fpr or NOMINAL_FPR for r in res.detectors.values() if r.flags.any()
    ]
    rate = max(rates, default=NOMINAL_FPR)
    return float(binom.sf(n_flagged - 1, n, rate)), float(rate)


def _findings(ds: Dataset, res: DataScanResult, artifact: str | None) -> list[Finding]:
    out: list[Finding] = []
    flagged = res.flagged
    if flagged:
        label_dets = [
            n for n, r in res.detectors.items() if r.threat == Threat.POISONING and r.flags.any()
        ]
        share = len(flagged) / len(ds)
        excess_p, rate = _excess_p_value(res, len(flagged), len(ds))
        out.append(
            Finding(
                rule_id=RULE_POISON.id,
                title=f"{len(flagged)} suspicious training samples",
                message=(
                    f"{len(flagged)} of {len(ds)} samples ({share:.2%}) are flagged by "
                    f"{', '.join(sorted(n for n, r in res.detectors.items() if r.flags.any()))}"
                ),
                # Clean data still trips calibrated thresholds at about their false-alarm
                # rate; only a count that rate cannot explain is high (a fixed share
                # made every clean delivery's scan high and blocked high registry gates).
                severity=Severity.HIGH if excess_p < EXCESS_P else Severity.MEDIUM,
                confidence=round(float(min(0.99, max(0.5, 1.0 - excess_p))), 4),
                atlas=("AML.T0020",),
                artifact=artifact,
                indices=tuple(flagged),
                evidence={
                    "detectors": {n: len(r.flagged) for n, r in res.detectors.items()},
                    "label_detectors": label_dets,
                    "false_alarm_rate": rate,
                    "excess_p_value": float(excess_p),
                },
            )
        )
        # A class holding most flags is the likely backdoor target; it is high only when
        # its own flag count is more than the false-alarm rate explains in a class of its
        # size (Bonferroni over classes): clean data's few flags can pile up in one class
        # (activation clustering splitting a writing style), a poisoned target's cannot
        # stay that small.
        counts = np.array([c["flagged"] for c in res.per_class])
        if counts.sum() >= 5:
            top = int(np.argmax(counts))
            if counts[top] >= 0.5 * counts.sum():
                cls = res.per_class[top]
                class_p = min(
                    1.0,
                    float(binom.sf(counts[top] - 1, cls["samples"], rate)) * len(res.per_class),
                )
                out.append(
                    Finding(
                        rule_id=RULE_CLASS.id,
                        title=f"class {cls['class']} holds {cls['flagged']} of the flags",
                        message=(
                            f"{cls['flagged']} of {int(counts.sum())} flagged samples are "
                            f"labelled {cls['class']}: {_target_reading(res, cls)}"
                        ),
                        severity=Severity.HIGH if class_p < CLASS_EXCESS_P else Severity.MEDIUM,
                        confidence=round(float(counts[top] / counts.sum()), 3),
                        atlas=("AML.T0020", "AML.T0018.000"),
                        artifact=artifact,
                        target_class=int(cls["class"]),
                        evidence={"per_class": res.per_class, "excess_p_value": class_p},
                    )
                )
    # Label issues: the label checks' quorum (training-margin votes there where it ran,
    # and its planted cut decides alone where the quorum flags more than it allows).
    fams = {} if res.ensemble is None else res.ensemble.family_flags
    label_flags = fams.get("labels")
    if label_flags is not None and label_flags.any():
        out.append(_label_finding(res, np.flatnonzero(label_flags), artifact))
    n_sources = len(res.sources)
    for row in res.sources:
        # Bonferroni over sources: a supplier is named only on strong evidence.
        if n_sources > 1 and row["flagged"] >= 3 and row["p_value"] * n_sources < 1e-3:
            out.append(
                Finding(
                    rule_id=RULE_SOURCE.id,
                    title=f"source '{row['source']}' is enriched in flagged samples",
                    message=(
                        f"{row['flagged']} of {row['samples']} samples from '{row['source']}' "
                        f"are flagged ({row['enrichment']}x the overall rate, "
                        f"p={row['p_value']:.2e})"
                    ),
                    severity=Severity.HIGH,
                    confidence=round(1.0 - min(1.0, row["p_value"] * n_sources), 4),
                    atlas=("AML.T0020", "AML.T0010.002"),
                    artifact=artifact,
                    evidence=row,
                )
            )
    return out
