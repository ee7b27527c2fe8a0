"""Gateway-client forensics: what one API client did, and how much of the model it took.

Input is what ``tripwire guard`` already keeps in its store: the query log (each
request's time, size, status and enforcement action, and, with ``[query_log] payloads
= true``, the default, its input and the output returned), the client's timeline of
detector scores and the alerts. From these, per client:

- a timeline: every request with its samples and the cumulative count, the detector
  scores the gateway recorded, and the alerts with the sample count the gateway had
  seen when it raised them (checked against the log's own count);
- what the client obtained: labelled samples answered (status 200), with the answers
  the gateway degraded (``top1``: one-hot; ``rounded``: rounded probabilities) counted
  apart; the classes the answers cover (histogram, entropy); and, given reference
  data of the model's input distribution, how the inputs cover it (share of the
  reference's k-means cells hit, distance of each input to its nearest reference
  sample against the reference's own nearest-neighbour distances);
- the surrogate: a model trained on exactly the logged inputs and answers, the way
  :func:`tripwire.attacks.extraction.extract` trains its substitutes (soft-label
  cross-entropy; a one-hot answer is a hard label), over the first 10, 25, 50 and
  100 % of the log in time order, each measured on evaluation data for fidelity
  (agreement of its class with the served model's) and accuracy, next to the served
  model's own accuracy.

Findings (rule block TW15x, incident attribution):

- TW153 ``model-leak-estimated``: the surrogate reproduces the served model. The
  severity comes from Cohen's kappa of the full-log surrogate against the model on
  the evaluation data, i.e. its agreement beyond what two predictors with these class
  frequencies reach by chance, read with the bands of Landis and Koch (Biometrics
  33, 1977): almost perfect (> 0.80) critical, substantial (> 0.60) high, moderate
  (> 0.40) medium; lower agreement that is still above chance (one-sided binomial
  test, p < 0.05) low; otherwise info (no measurable leak).
- TW154 ``labelled-queries-obtained``: the client holds labelled answers (info; the
  counts and coverage are the evidence, for when no surrogate could be measured).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError
from tripwire.reports import Figure, Finding, Report, Rule, Severity, register_rule

__all__ = [
    "FRACTIONS",
    "RULE_LEAK",
    "RULE_OBTAINED",
    "ClientForensics",
    "client_forensics",
    "kappa_severity",
    "to_report",
]

RULE_LEAK = register_rule(
    Rule(
        id="TW153",
        name="model-leak-estimated",
        short_description="A client's logged queries and answers suffice to copy the model",
        help=(
            "Treat the model as leaked to the client: revoke its key, block it (tripwire "
            "guard admin API), review what else it reached, and consider answering top-1 "
            "labels only ([enforce] degrade_output)."
        ),
        default_severity=Severity.HIGH,
        atlas=("AML.T0024.002", "AML.T0040"),
    )
)
RULE_OBTAINED = register_rule(
    Rule(
        id="TW154",
        name="labelled-queries-obtained",
        short_description="What a client obtained from the inference API",
        help="Read with TW153; without a surrogate measurement, the counts bound the leak.",
        default_severity=Severity.INFO,
        atlas=("AML.T0040",),
    )
)

#: Shares of the log (in time order) on which a surrogate is trained and measured.
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
#: Landis and Koch (1977): lower bounds of almost perfect, substantial, moderate agreement.
KAPPA_BANDS = ((0.80, Severity.CRITICAL), (0.60, Severity.HIGH), (0.40, Severity.MEDIUM))
#: Queried inputs shown as pictures in the HTML report.
N_PICTURES = 12
_MAX_REFERENCE = 2000  # reference samples used for coverage (a seeded subsample)
_MAX_DISTANCE_QUERIES = 5000  # client inputs whose nearest-reference distance is measured


@dataclass
class ClientForensics:
    """The result of :func:`client_forensics`; JSON-ready through :meth:`to_dict`."""

    client: str
    store: str
    requests: int
    samples_sent: int
    samples_answered: int
    labelled_samples: int
    answers: dict[str, int]
    refused: dict[str, int]
    payload_missing: int
    first_seen: str | None
    last_seen: str | None
    requests_log: list[dict[str, Any]]
    detector_timeline: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    classes: dict[str, Any]
    input_coverage: dict[str, Any] | None
    surrogate: dict[str, Any] | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: A few queried inputs (model input layout) with their log positions, for pictures.
    examples: tuple[npt.NDArray[np.float32], list[int], list[int]] | None = field(
        default=None, repr=False
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "store": self.store,
            "requests": self.requests,
            "samples_sent": self.samples_sent,
            "samples_answered": self.samples_answered,
            "labelled_samples": self.labelled_samples,
            "answers": self.answers,
            "refused": self.refused,
            "payload_missing": self.payload_missing,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "requests_log": self.requests_log,
            "detector_timeline": self.detector_timeline,
            "alerts": self.alerts,
            "classes": self.classes,
            "input_coverage": self.input_coverage,
            "surrogate": self.surrogate,
            "notes": self.notes,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(text: object) -> float | None:
    try:
        stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def kappa_severity(kappa: float, p_value: float) -> Severity:
    """TW153's severity from the surrogate's kappa and the p-value of its agreement
    being above chance (see the module docstring)."""
    for bound, sev in KAPPA_BANDS:
        if kappa > bound:
            return sev
    return Severity.LOW if p_value < 0.05 else Severity.INFO


def _agreement(
    pred: npt.NDArray[np.int64], ref: npt.NDArray[np.int64], n_classes: int
) -> dict[str, float]:
    """Fidelity, Cohen's kappa and the one-sided binomial p-value of fidelity > chance."""
    from scipy.stats import binomtest

    n = len(ref)
    agree = int(np.sum(pred == ref))
    p_pred = np.bincount(pred, minlength=n_classes) / n
    p_ref = np.bincount(ref, minlength=n_classes) / n
    chance = float(np.dot(p_pred, p_ref))
    fidelity = agree / n
    kappa = 1.0 if chance >= 1.0 else (fidelity - chance) / (1.0 - chance)
    p_value = 1.0 if chance >= 1.0 else float(binomtest(agree, n, chance, "greater").pvalue)
    return {
        "fidelity": round(fidelity, 6),
        "chance_agreement": round(chance, 6),
        "kappa": round(float(kappa), 6),
        "p_value": p_value,
    }


def _entropy_bits(counts: npt.NDArray[np.int64]) -> float:
    p = counts[counts > 0] / max(1, int(counts.sum()))
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def _class_coverage(labels: npt.NDArray[np.int64], n_classes: int) -> dict[str, Any]:
    counts = np.bincount(labels, minlength=n_classes)
    ent = _entropy_bits(counts)
    return {
        "n_classes": n_classes,
        "histogram": [int(c) for c in counts],
        "covered": int(np.sum(counts > 0)),
        "entropy_bits": round(ent, 4),
        "normalised_entropy": round(ent / math.log2(n_classes), 4) if n_classes > 1 else 0.0,
    }


def _input_coverage(x: npt.NDArray[np.float32], reference: Any, seed: int) -> dict[str, Any]:
    """Coverage of the reference distribution by the client's inputs (flattened L2)."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    if tuple(reference.input_shape) != tuple(x.shape[1:]):
        raise InputError(
            f"reference samples have shape {reference.input_shape}, the client sent "
            f"{tuple(x.shape[1:])}",
            reference.path,
        )
    rng = np.random.default_rng(seed)
    n_ref = len(reference)
    pick = np.sort(rng.choice(n_ref, min(_MAX_REFERENCE, n_ref), replace=False))
    ref = reference.model_input(pick).reshape(len(pick), -1).astype(np.float64)
    if len(ref) < 4:
        raise InputError("needs at least 4 reference samples for coverage", reference.path)
    q = x.reshape(len(x), -1).astype(np.float64)
    # About 20 reference samples a cell, so that a cell is a region, not one sample.
    k = int(np.clip(len(ref) // 20, 2, 50))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(ref)
    ref_cells = np.bincount(km.labels_, minlength=k)
    hit = np.unique(km.predict(q))
    nn = NearestNeighbors(n_neighbors=2).fit(ref)
    ref_d = nn.kneighbors(ref, 2)[0][:, 1]  # leave-one-out: the nearest other sample
    qi = np.arange(len(q))
    if len(q) > _MAX_DISTANCE_QUERIES:
        qi = np.sort(rng.choice(len(q), _MAX_DISTANCE_QUERIES, replace=False))
    q_d = nn.kneighbors(q[qi], 1)[0][:, 0]
    ref_q = np.quantile(ref_d, [0.05, 0.5, 0.95])
    q_q = np.quantile(q_d, [0.05, 0.5, 0.95])
    return {
        "reference": str(reference.path),
        "reference_samples": len(ref),
        "cells": k,
        "cells_hit": int(hit.size),
        "cell_share": round(hit.size / k, 4),
        "reference_mass_covered": round(float(ref_cells[hit].sum() / len(ref)), 4),
        "nearest_reference_distance": {
            "client_q05_q50_q95": [round(float(v), 4) for v in q_q],
            "reference_q05_q50_q95": [round(float(v), 4) for v in ref_q],
        },
        # Inputs no farther from the reference than 95 % of reference samples are from
        # each other: the share that looks like the model's own input distribution.
        "in_distribution_share": round(float(np.mean(q_d <= ref_q[2])), 4),
    }


def _answers(
    records: Sequence[Any], notes: list[str]
) -> tuple[
    npt.NDArray[np.float32] | None,
    npt.NDArray[np.float32] | None,
    dict[str, int],
    int,
]:
    """The logged inputs and answers of the answered requests, in time order; answers
    by kind (full, top1, rounded); answered samples without a payload."""
    from tripwire.gateway.store import decode_array

    xs: list[npt.NDArray[np.float32]] = []
    ps: list[npt.NDArray[np.float32]] = []
    kinds = {"full": 0, "top1": 0, "rounded": 0}
    missing = 0
    shapes: set[tuple[int, ...]] = set()
    for i, r in enumerate(records):
        if r.meta.get("status") != 200:
            continue
        n = int(r.meta.get("n", 0))
        if r.input is None or r.output is None:
            missing += n
            continue
        try:
            x = decode_array(r.input).astype(np.float32, copy=False)
            p = decode_array(r.output).astype(np.float32, copy=False)
        except (ValueError, OSError, zlib.error) as exc:
            raise InputError(f"a logged payload of request {i} cannot be read ({exc})") from None
        if p.ndim != 2 or len(p) != len(x):
            raise InputError(f"request {i}'s logged answer has shape {p.shape} for {len(x)} inputs")
        shapes.add(tuple(x.shape[1:]))
        if r.meta.get("action") in ("degrade", "throttle"):
            onehot = (p.max(axis=1) == 1.0) & (np.count_nonzero(p, axis=1) == 1)
            kinds["top1"] += int(onehot.sum())
            kinds["rounded"] += int(len(p) - onehot.sum())
        else:
            kinds["full"] += len(p)
        xs.append(x)
        ps.append(p)
    if len(shapes) > 1:
        raise InputError(f"the client sent inputs of several shapes ({sorted(shapes)})")
    if len({q.shape[1] for q in ps}) > 1:
        raise InputError("the logged answers have different numbers of classes")
    if missing:
        notes.append(
            f"{missing} answered samples have no logged payload (payloads off, over "
            "max_entry_bytes, or dropped by the size cap): the surrogate does not see them"
        )
    if not xs:
        return None, None, kinds, missing
    x_all = np.concatenate(xs)
    p_all = np.concatenate(ps).astype(np.float64)
    sums = p_all.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(p_all)) or np.any(p_all < 0) or not np.allclose(sums, 1.0, atol=1e-3):
        notes.append("some logged answers are not probabilities: their argmax is used as the label")
        hard = np.zeros_like(p_all)
        hard[np.arange(len(p_all)), np.nan_to_num(p_all, nan=-np.inf).argmax(axis=1)] = 1.0
        p_all = hard
    else:
        p_all = p_all / sums
    return x_all, p_all.astype(np.float32), kinds, missing


def _surrogate(
    x: npt.NDArray[np.float32],
    p: npt.NDArray[np.float32],
    model: Any,
    eval_data: Any,
    *,
    epochs: int | None,
    seed: int,
    fractions: Sequence[float],
    show_progress: bool,
    notes: list[str],
    first_alert: int | None = None,
) -> dict[str, Any]:
    from tripwire.attacks.extraction import substitute_probabilities, train_substitute
    from tripwire.models.arch import auto_arch
    from tripwire.progress import progress_iter

    n_classes = int(p.shape[1])
    if tuple(eval_data.input_shape) != tuple(x.shape[1:]):
        raise InputError(
            f"evaluation samples have shape {eval_data.input_shape}, the client sent "
            f"{tuple(x.shape[1:])}",
            eval_data.path,
        )
    x_eval = eval_data.model_input()
    victim_probs = np.asarray(model.probabilities(x_eval), dtype=np.float32)
    if victim_probs.shape != (len(x_eval), n_classes):
        raise InputError(
            f"the model gives {victim_probs.shape[1]} classes, the logged answers {n_classes}",
            "model",
        )
    victim_label = victim_probs.argmax(axis=1).astype(np.int64)
    y = np.asarray(eval_data.y, dtype=np.int64)
    # Does the log come from this model? Its answers should be the model's own classes.
    logged_match = float(
        np.mean(np.asarray(model.probabilities(x), dtype=np.float32).argmax(1) == p.argmax(1))
    )
    if logged_match < 0.99:
        notes.append(
            f"only {logged_match:.1%} of the logged answers match the given model's class: "
            "was another model version served?"
        )
    # Inputs the client sent that are also evaluation samples make fidelity optimistic.
    seen = {row.tobytes() for row in np.ascontiguousarray(x_eval, dtype=np.float32)}
    overlap = sum(row.tobytes() in seen for row in np.ascontiguousarray(x, dtype=np.float32))
    if overlap:
        notes.append(
            f"{overlap} of the client's inputs are evaluation samples: the surrogate's "
            "fidelity and accuracy on them are optimistic; evaluate on other data"
        )
    budgets = {max(1, math.ceil(f * len(x))) for f in fractions}
    if first_alert is not None and 0 < first_alert < len(x):
        budgets.add(first_alert)
    curve = []
    for b in progress_iter(sorted(budgets), "training surrogates", enabled=show_progress):
        sub = train_substitute(x[:b], p[:b], n_classes=n_classes, epochs=epochs, seed=seed)
        pred = substitute_probabilities(sub, x_eval).argmax(axis=1).astype(np.int64)
        curve.append(
            {
                "queries": b,
                "share_of_log": round(b / len(x), 4),
                "at_first_alert": b == first_alert,
                "accuracy": round(float(np.mean(pred == y)), 6),
                **_agreement(pred, victim_label, n_classes),
            }
        )
    return {
        "curve": curve,
        "victim_accuracy": round(float(np.mean(victim_label == y)), 6),
        "eval_samples": len(x_eval),
        "eval_data": str(eval_data.path),
        "arch": auto_arch(tuple(int(s) for s in x.shape[1:])),
        "epochs": epochs,
        "seed": seed,
        "logged_answers_match_model": round(logged_match, 6),
        "inputs_in_eval_data": int(overlap),
        "chance_fidelity": round(
            float(np.max(np.bincount(victim_label, minlength=n_classes)) / len(y)), 6
        ),
    }


def client_forensics(
    store: Any,
    client: str,
    *,
    store_name: str = "",
    model: Any = None,
    eval_data: Any = None,
    reference: Any = None,
    epochs: int | None = None,
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    show_progress: bool = False,
) -> ClientForensics:
    """Reconstruct what gateway client ``client`` did and obtained (see the module docstring).

    Parameters
    ----------
    store
        The gateway's :class:`~tripwire.gateway.store.Store`.
    client
        The client id (as in alerts and ``GET /tripwire/v1/clients``).
    store_name
        How to name the store in messages and the report.
    model
        The served model (anything with ``probabilities(x)``), for the surrogate's
        fidelity; without it (or ``eval_data``) no surrogate is trained.
    eval_data
        A labelled :class:`~tripwire.io.Dataset` of the model's input distribution.
    reference
        A :class:`~tripwire.io.Dataset` of the model's inputs for input-space coverage.
    epochs
        Surrogate training epochs (default: :func:`~tripwire.attacks.extraction.extract`'s
        schedule, 30 epochs within 150 to 500 steps).
    seed
        Seeds the surrogates and the coverage's subsampling and clustering.
    fractions
        Shares of the log, in time order, on which surrogates are trained.
    show_progress
        Draw a progress bar over the surrogates on stderr.

    Raises
    ------
    InputError
        Unknown client, or logged payloads, model and data that do not fit together.
    """
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise InputError("fractions must lie in (0, 1]", "fractions")
    name = store_name or "store"
    # In time order: replicas (Redis) and the log's writer thread may store out of order.
    records = sorted(store.queries(client, limit=None), key=lambda r: r.t)
    known = client in set(store.clients())
    if not records and not known:
        raise InputError(f"no client '{client}' in the gateway store", name)
    notes: list[str] = []
    timeline = store.timeline(client)
    alerts = [
        a for a in store.alerts() if a.get("client") == client or client in a.get("clients", [])
    ]
    if not records:
        notes.append("the query log holds no request of this client (past retention?)")

    # -- per-request timeline ---------------------------------------------------------
    rows: list[dict[str, Any]] = []
    sent = answered = 0
    refused: dict[str, int] = {}
    for r in records:
        n = int(r.meta.get("n", 0))
        status = int(r.meta.get("status", 0))
        sent += n
        if status == 200:
            answered += n
        else:
            refused[str(status)] = refused.get(str(status), 0) + n
        rows.append(
            {
                "time": _iso(r.t),
                "t": r.t,
                "samples": n,
                "status": status,
                "action": r.meta.get("action"),
                "cumulative_sent": sent,
                "cumulative_answered": answered,
                "payload": r.input is not None,
            }
        )
    # The gateway counts the samples its monitor saw (answered ones) when it alerts.
    times = np.array([r["t"] for r in rows])
    alert_rows = []
    for a in alerts:
        at = _epoch(a.get("time"))
        qc = a.get("query_count")
        logged = 0
        if at is not None:
            # Alert times keep the request's time to the millisecond (truncated): the
            # request is in [at, at + 1 ms), or, for a correlation alert, before it.
            lo = int(np.searchsorted(times, at - 1e-6, side="left"))
            hi = int(np.searchsorted(times, at + 1e-3, side="right"))
            window = [rows[i]["cumulative_answered"] for i in range(lo, hi)]
            logged = qc if qc in window else (rows[hi - 1]["cumulative_answered"] if hi else 0)
        alert_rows.append(
            {
                "time": a.get("time"),
                "detector": a.get("detector"),
                "rule_id": a.get("rule_id"),
                "severity": a.get("severity"),
                "score": a.get("score"),
                "query_count": qc,
                "logged_answered_at_alert": logged,
                "consistent": qc == logged,
            }
        )
    if any(not a["consistent"] for a in alert_rows):
        notes.append(
            "some alerts' query counts differ from the log's (monitor state cleared, log "
            "entries past retention, or a correlation alert): both are listed"
        )

    # -- what was obtained ------------------------------------------------------------
    x, p, kinds, missing = _answers(records, notes)
    if x is None and answered:
        raise InputError(
            f"the query log keeps no payload of client '{client}' ({answered} answered "
            "samples; [query_log] payloads off, or dropped by the size cap)",
            name,
        )
    labelled = 0 if x is None else len(x)
    n_classes = int(p.shape[1]) if p is not None else int(getattr(model, "num_classes", 0) or 0)
    classes = (
        _class_coverage(p.argmax(axis=1).astype(np.int64), n_classes)
        if p is not None
        else {
            "n_classes": n_classes,
            "histogram": [],
            "covered": 0,
            "entropy_bits": 0.0,
            "normalised_entropy": 0.0,
        }
    )
    coverage = None
    if reference is not None and x is not None:
        coverage = _input_coverage(x, reference, seed)
    elif reference is None:
        notes.append("no reference data given: input-space coverage not measured")
    surrogate = None
    if x is None or p is None:
        notes.append("no logged payloads of answered requests: no surrogate can be trained")
    elif model is None or eval_data is None:
        notes.append(
            "no model and evaluation data given (--model, --data): the surrogate's fidelity "
            "is not measured; TW154's counts bound what leaked"
        )
    else:
        # What had leaked when the gateway first alerted: the answers logged until then
        # (the log's count equals the labelled samples only when no payload is missing).
        first = [a["logged_answered_at_alert"] for a in alert_rows if a["consistent"]]
        surrogate = _surrogate(
            x,
            p,
            model,
            eval_data,
            epochs=epochs,
            seed=seed,
            fractions=fractions,
            show_progress=show_progress,
            notes=notes,
            first_alert=min(first) if first and not missing else None,
        )
    examples = None
    if x is not None and p is not None and x.ndim == 4:
        pos = np.unique(np.linspace(0, len(x) - 1, min(N_PICTURES, len(x))).astype(int))
        examples = (x[pos], [int(i) for i in pos], [int(c) for c in p[pos].argmax(1)])
    res = ClientForensics(
        client=client,
        store=name,
        requests=len(records),
        samples_sent=sent,
        samples_answered=answered,
        labelled_samples=labelled,
        answers=kinds,
        refused=refused,
        payload_missing=missing,
        first_seen=rows[0]["time"] if rows else None,
        last_seen=rows[-1]["time"] if rows else None,
        requests_log=rows,
        detector_timeline=timeline,
        alerts=alert_rows,
        classes=classes,
        input_coverage=coverage,
        surrogate=surrogate,
        notes=notes,
        examples=examples,
    )
    res.findings = _findings(res)
    return res


def _findings(res: ClientForensics) -> list[Finding]:
    out: list[Finding] = []
    cls = res.classes
    if res.labelled_samples or res.samples_answered:
        degraded = res.answers["top1"] + res.answers["rounded"]
        out.append(
            Finding(
                rule_id=RULE_OBTAINED.id,
                title=(
                    f"client '{res.client}' obtained {res.samples_answered} answered samples "
                    f"covering {cls['covered']} of {cls['n_classes']} classes"
                ),
                message=(
                    f"{res.requests} requests, {res.samples_sent} samples sent, "
                    f"{res.samples_answered} answered ({res.labelled_samples} with logged "
                    f"payloads, {degraded} degraded), answers' class entropy "
                    f"{cls['entropy_bits']} bits"
                ),
                severity=Severity.INFO,
                confidence=1.0,
                artifact=res.store,
                client=res.client,
                evidence={
                    "samples_answered": res.samples_answered,
                    "labelled_samples": res.labelled_samples,
                    "answers": res.answers,
                    "classes_covered": cls["covered"],
                    "n_classes": cls["n_classes"],
                    "entropy_bits": cls["entropy_bits"],
                },
            )
        )
    if res.surrogate is not None:
        s = res.surrogate
        full = s["curve"][-1]
        at_alert = next((c for c in s["curve"] if c["at_first_alert"]), None)
        sev = kappa_severity(full["kappa"], full["p_value"])
        out.append(
            Finding(
                rule_id=RULE_LEAK.id,
                title=(
                    f"a surrogate trained on client '{res.client}''s {full['queries']} "
                    f"logged answers agrees with the model on {full['fidelity']:.1%}"
                ),
                message=(
                    f"fidelity {full['fidelity']:.3f} (kappa {full['kappa']:.3f}, chance "
                    f"agreement {full['chance_agreement']:.3f}), accuracy {full['accuracy']:.3f} "
                    f"against the model's {s['victim_accuracy']:.3f} on {s['eval_samples']} "
                    "evaluation samples"
                    + (
                        f"; at the first alert ({at_alert['queries']} answers) a surrogate "
                        f"already agreed on {at_alert['fidelity']:.3f}"
                        if at_alert
                        else ""
                    )
                ),
                severity=sev,
                confidence=round(1.0 - full["p_value"], 6),
                artifact=res.store,
                client=res.client,
                evidence={
                    "fidelity": full["fidelity"],
                    "kappa": full["kappa"],
                    "accuracy": full["accuracy"],
                    "victim_accuracy": s["victim_accuracy"],
                    "queries": full["queries"],
                    "fidelity_at_first_alert": None if at_alert is None else at_alert["fidelity"],
                    "curve": [
                        {k: c[k] for k in ("queries", "fidelity", "accuracy", "kappa")}
                        for c in s["curve"]
                    ],
                },
            )
        )
    return out


def _client_figures(res: ClientForensics) -> list[Figure]:
    who = f"'{res.client}'"
    figs: list[Figure] = []
    rows = res.requests_log
    if rows:
        t0 = rows[0]["t"]
        top = max(1, rows[-1]["cumulative_sent"])
        series: list[dict[str, Any]] = [
            {
                "name": "samples sent",
                "x": [r["t"] - t0 for r in rows],
                "y": [r["cumulative_sent"] for r in rows],
            },
            {
                "name": "samples answered",
                "x": [r["t"] - t0 for r in rows],
                "y": [r["cumulative_answered"] for r in rows],
            },
        ]
        for a in res.alerts[:8]:
            at = _epoch(a["time"])
            if at is None:
                continue
            series.append(
                {
                    "name": f"alert {a['detector']} ({a['severity']}) at {a['query_count']}",
                    "x": [at - t0, at - t0],
                    "y": [0, top],
                }
            )
        figs.append(
            Figure(
                "line",
                f"{who}: cumulative samples over time, alerts as vertical lines",
                {"series": series, "xlabel": "seconds since first request", "ylabel": "samples"},
            )
        )
    scored = [
        e
        for e in res.detector_timeline
        if isinstance(e.get("score"), int | float) and isinstance(e.get("query_count"), int)
    ]
    if scored:
        # Points, not lines: a detector may report only a few times in a client's life.
        figs.append(
            Figure(
                "scatter",
                f"{who}: detector scores the gateway recorded",
                {
                    "x": [e["query_count"] for e in scored],
                    "y": [e["score"] for e in scored],
                    "color": [
                        f"{e.get('detector')}{' (alert)' if e.get('alert') else ''}" for e in scored
                    ],
                    "xlabel": "samples seen by the gateway",
                    "ylabel": "score",
                },
            )
        )
    if res.classes["histogram"]:
        figs.append(
            Figure.bar(
                f"{who}: classes of the answers obtained",
                [str(i) for i in range(len(res.classes["histogram"]))],
                res.classes["histogram"],
                xlabel="class returned (argmax)",
                ylabel="samples",
            )
        )
    if res.surrogate is not None:
        curve = res.surrogate["curve"]
        qs = [c["queries"] for c in curve]
        figs.append(
            Figure(
                "line",
                f"{who}: how much of the model had leaked by query N",
                {
                    "series": [
                        {
                            "name": "surrogate fidelity",
                            "x": qs,
                            "y": [c["fidelity"] for c in curve],
                        },
                        {
                            "name": "surrogate accuracy",
                            "x": qs,
                            "y": [c["accuracy"] for c in curve],
                        },
                        {
                            "name": "model accuracy",
                            "x": qs,
                            "y": [res.surrogate["victim_accuracy"]] * len(qs),
                        },
                        *[
                            {"name": "first alert", "x": [c["queries"]] * 2, "y": [0, 1]}
                            for c in curve
                            if c["at_first_alert"]
                        ],
                    ],
                    "xlabel": "labelled queries (in time order)",
                    "ylabel": "share of evaluation samples",
                },
            )
        )
    if res.examples is not None:
        imgs, pos, cls = res.examples
        figs.append(
            Figure.images_from_arrays(
                f"{who}: queried inputs (evenly spaced through the log)",
                list(imgs),
                [f"#{i} -> {c}" for i, c in zip(pos, cls, strict=True)],
            )
        )
    if res.alerts:
        figs.append(
            Figure.table(
                f"{who}: alerts",
                ["time (UTC)", "detector", "severity", "score", "query count", "logged count"],
                [
                    [
                        a["time"],
                        a["detector"],
                        a["severity"],
                        a["score"],
                        a["query_count"],
                        a["logged_answered_at_alert"],
                    ]
                    for a in res.alerts
                ],
            )
        )
    return figs


def to_report(
    results: Sequence[ClientForensics],
    *,
    store: str,
    inputs: dict[str, dict[str, Any]] | None = None,
) -> Report:
    """The investigation of one or more clients as a :class:`~tripwire.reports.Report`;
    ``inputs`` adds the model and data files (``{"model": {"path": ...}}``)."""
    figures: list[Figure] = [
        Figure.table(
            "Clients",
            [
                "client",
                "requests",
                "samples sent",
                "answered",
                "labelled",
                "classes",
                "first alert at",
                "surrogate fidelity",
                "kappa",
                "model accuracy",
            ],
            [
                [
                    r.client,
                    r.requests,
                    r.samples_sent,
                    r.samples_answered,
                    r.labelled_samples,
                    f"{r.classes['covered']}/{r.classes['n_classes']}",
                    min(
                        (a["query_count"] for a in r.alerts if a["query_count"] is not None),
                        default="",
                    ),
                    "" if r.surrogate is None else r.surrogate["curve"][-1]["fidelity"],
                    "" if r.surrogate is None else r.surrogate["curve"][-1]["kappa"],
                    "" if r.surrogate is None else r.surrogate["victim_accuracy"],
                ]
                for r in results
            ],
        )
    ]
    for r in results:
        figures += _client_figures(r)
    worst = [r.surrogate["curve"][-1]["fidelity"] for r in results if r.surrogate is not None]
    return Report(
        command="forensics-client",
        inputs={
            "store": {"path": store, "clients": [r.client for r in results]},
            **(inputs or {}),
        },
        summary={
            "clients": ", ".join(r.client for r in results),
            "labelled_samples": sum(r.labelled_samples for r in results),
            "max_surrogate_fidelity": max(worst) if worst else None,
        },
        findings=[f for r in results for f in r.findings],
        figures=figures,
        sections={"clients": [r.to_dict() for r in results]},
    )
