"""Across clients: split-budget (sybil) correlation and population drift."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from tripwire.detectors.extraction import rules
from tripwire.detectors.extraction.base import ClientState, Observation
from tripwire.detectors.extraction.state import StreamState, kmv_merge
from tripwire.reports.findings import Severity

if TYPE_CHECKING:
    from tripwire.detectors.extraction.monitor import StreamMonitor

#: Clients need this many samples to take part in a correlation (a split budget may leave
#: each identity below the monitor's ``min_queries``, so this is lower).
MIN_CLIENT_QUERIES = 5
#: Split-budget off-distribution (TW311 pooled): a member (a client without an alert of
#: its own) needs this many new queries and at least TW311's per-client off share, with a
#: one-sided binomial p-value (against the calibrated rate) below OFF_MEMBER_ALPHA; at
#: least OFF_MIN_MEMBERS members, as many as chance among the eligible clients explains
#: with probability below OFF_COUNT_ALPHA. The pooled state must then pass TW311's own
#: grouped tests. Members are selected on the statistic the pooled test reuses, so the
#: member count is tested on its own first.
OFF_MEMBER_MIN_NEW = 20
OFF_MEMBER_ALPHA = 0.01
OFF_MIN_MEMBERS = 3
OFF_COUNT_ALPHA = 1e-3


def pool_states(states: list[StreamState]) -> StreamState:
    """One state holding several clients' counters, histograms, coverage and sketches.

    Counters add, the coverage bitmaps are OR-ed, the distinct sketches merged. The
    per-client PRADA sets are not pooled (a sybil's queries are never compared across
    ids in the stream), so the pooled PRADA and duplicate features are the count-weighted
    means of the members'.
    """
    base = states[0]
    out = base.copy()
    for s in states[1:]:
        out.scalars += s.scalars
        out.class_hist += s.class_hist
        out.off_cls += s.off_cls
        if out.off_cell.shape == s.off_cell.shape:
            out.off_cell += s.off_cell
        out.cells |= s.cells
        out.kmv[:] = kmv_merge(out.kmv, s.kmv)
    n = np.array([s.get("n") for s in states])
    wts = n / max(n.sum(), 1.0)
    out.set("prada_w", float(sum(w * s.get("prada_w") for w, s in zip(wts, states, strict=True))))
    out.set("dist_seen", max(s.get("dist_seen") for s in states))
    for k in ("alert_level", "noted", "clf_score", "clf_score_max", "prada_alarm_n"):
        out.set(k, 0.0)
    return out


def correlate(monitor: StreamMonitor, states: dict[str, ClientState]) -> list[Observation]:
    """Clients that are each below an alert threshold but alert pooled (TW307).

    Two poolings, the first that finds a group is reported:

    - by the stream classifier: candidates are the clients with at least
      :data:`MIN_CLIENT_QUERIES` samples and no classifier alert of their own whose own
      score lies above the benign median recorded with the classifier
      (``info.benign_median``); they are pooled in order of decreasing score, and the
      smallest prefix of at least two clients whose pooled state has the monitor's
      ``min_queries`` samples and reaches the low threshold is reported;
    - by off-distribution image statistics (where TW311 runs): see :func:`_correlate_off`.
    """
    settled: dict[str, StreamState] = {}
    for cid, st in states.items():
        if not isinstance(st, StreamState) or st.query_count < MIN_CLIENT_QUERIES:
            continue
        s = monitor.settled(st)  # buffered samples count too (a sybil id may send few)
        if s.get("alert_level") > 0:
            continue
        settled[cid] = s
    return _correlate_classifier(monitor, settled) or _correlate_off(monitor, settled)


def _correlate_classifier(
    monitor: StreamMonitor, settled: dict[str, StreamState]
) -> list[Observation]:
    clf = getattr(monitor, "classifier_", None)
    if clf is None:
        return []
    floor = float(clf.info.get("benign_median", 0.5 * clf.thresholds[0]))
    cands: list[tuple[float, str, StreamState]] = []
    for cid, s in settled.items():
        p = clf.score(monitor.features(s))
        if p >= floor:
            cands.append((p, cid, s))
    cands.sort(key=lambda t: (-t[0], t[1]))
    for k in range(2, len(cands) + 1):
        pooled = pool_states([c[2] for c in cands[:k]])
        if pooled.get("n") < monitor.min_queries:
            continue
        p = clf.score(monitor.features(pooled))
        rank = clf.severity_rank(p)
        if rank:
            ids = tuple(c[1] for c in cands[:k])
            return [
                Observation(
                    "split-budget",
                    rules.SYBIL.id,
                    p,
                    Severity.MEDIUM if rank >= 2 else Severity.LOW,
                    rules.ATLAS_EXTRACT,
                    {"queries": int(pooled.get("n")), "members": len(ids), "by": "classifier"},
                    clients=ids,
                )
            ]
    return []


def _correlate_off(monitor: StreamMonitor, settled: dict[str, StreamState]) -> list[Observation]:
    """Identities that each send somewhat too many off-distribution new inputs.

    A knockoff budget split over identities leaves each one too few queries for TW311's
    grouped tests. Eligible: clients without an alert of their own (stream classifier,
    TW310, TW311) with at least :data:`OFF_MEMBER_MIN_NEW` new queries. Members:
    eligible clients whose off share is at least TW311's per-client share
    (``OFF_MIN_SHARE``) with a binomial p-value below :data:`OFF_MEMBER_ALPHA`.
    Reported when there are at least :data:`OFF_MIN_MEMBERS` members, more than chance
    gives among the eligible clients (binomial tail below :data:`OFF_COUNT_ALPHA`), and
    the members' pooled state passes TW311's grouped tests (many cells and predicted
    classes, not one shifted class).
    """
    from tripwire.detectors.extraction.monitor import OFF_FPR, OFF_MIN_SHARE

    eligible = 0
    members: list[tuple[float, str, StreamState]] = []
    for cid, s in settled.items():
        # Clients that a rule on raw inputs already alerted are left out: a known
        # attacker would vouch for the weak excesses of whoever else is pooled with it.
        if s.off_cls.size == 0 or monitor.rule_alerted(s):
            continue
        new = float(s.off_cls[0].sum())
        if new < OFF_MEMBER_MIN_NEW:
            continue
        eligible += 1
        off = float(s.off_cls[1].sum())
        # A member sends at least the share TW311 asks of one client, significantly:
        # heavy benign clients reach small p-values with mild, clustered excesses.
        share = off / new
        if share >= OFF_MIN_SHARE and stats.binom.sf(off - 1, new, OFF_FPR) < OFF_MEMBER_ALPHA:
            members.append((share, cid, s))
    if len(members) < OFF_MIN_MEMBERS:
        return []
    # Highest share first: a heavy client with a mild excess has a smaller p-value than a
    # small identity sending mostly off inputs, and would dilute the pool.
    members.sort(key=lambda t: (-t[0], t[1]))
    found: tuple[int, float, StreamState, Observation] | None = None
    for k in range(OFF_MIN_MEMBERS, len(members) + 1):
        # The smallest group that passes, then further members while it keeps passing.
        p_count = float(stats.binom.sf(k - 1, eligible, OFF_MEMBER_ALPHA))
        if p_count >= OFF_COUNT_ALPHA:
            continue
        pooled = pool_states([m[2] for m in members[:k]])
        obs = monitor.off_distribution(pooled)
        if obs is not None:
            found = (k, p_count, pooled, obs)
        elif found is not None:
            break
    if found is None:
        return []
    k, p_count, pooled, obs = found
    members = members[:k]
    ids = tuple(m[1] for m in members)
    return [
        Observation(
            "split-budget",
            rules.SYBIL.id,
            obs.score,
            Severity.MEDIUM,
            rules.ATLAS_EXTRACT,
            {
                "queries": int(pooled.get("n")),
                "members": len(ids),
                "eligible": eligible,
                "members_p_value": p_count,
                "by": "image-statistics",
                "pooled": obs.evidence,
            },
            clients=ids,
        )
    ]


def drift(monitor: StreamMonitor, states: dict[str, ClientState]) -> dict[str, Any]:
    """All traffic against the reference: per-signal statistic, p-value and verdict."""
    f = monitor._fitted()
    members = [
        monitor.settled(s)
        for s in states.values()
        if isinstance(s, StreamState) and s.query_count > 0
    ]
    report: dict[str, Any] = {"clients": len(members), "queries": 0, "signals": {}}
    if not members:
        return report
    pooled = pool_states(members)
    n = int(pooled.get("n"))
    report["queries"] = n
    alpha = 1e-3
    sig: dict[str, Any] = {}
    # Predicted classes vs the reference's: chi-square and population stability index.
    obs = pooled.class_hist.astype(np.float64)
    exp = f.ref_class_p * obs.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p_cls = float(stats.chi2.sf(chi2, f.n_classes - 1))
    q = (obs + 0.5) / (obs.sum() + 0.5 * f.n_classes)
    psi = float(((q - f.ref_class_p) * np.log(q / f.ref_class_p)).sum())
    sig["predicted_class"] = {
        "statistic": "chi2",
        "value": round(chi2, 4),
        "psi": round(psi, 4),
        "p_value": p_cls,
        "drift": p_cls < alpha,
    }
    for name, key, rate in (
        ("out_of_distribution_rate", "ood_count", monitor.fpr),
        ("low_margin_rate", "lowmargin_count", 0.1),
    ):
        if name == "out_of_distribution_rate" and not f.has_reference:
            continue
        k = pooled.get(key)
        pv = float(stats.binom.sf(k - 1, n, rate))
        sig[name] = {
            "statistic": "binomial",
            "value": round(k / n, 4),
            "expected": rate,
            "p_value": pv,
            "drift": pv < alpha,
        }
    mean_top1 = pooled.get("top1_sum") / n
    sig["mean_top1"] = {
        "statistic": "difference",
        "value": round(mean_top1, 4),
        "expected": round(f.ref_top1, 4),
        "drift": None,
    }
    report["signals"] = sig
    report["drift"] = any(v.get("drift") for v in sig.values())
    report["rule_id"] = rules.DRIFT.id
    report["psi_bins"] = f.n_classes
    report["alpha"] = alpha
    report["log10_min_p"] = round(
        math.log10(max(min(v.get("p_value", 1.0) for v in sig.values()), 1e-300)), 2
    )
    return report
