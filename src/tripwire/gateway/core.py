"""The gateway's logic, apart from HTTP: route, identify, answer, watch, act, record.

:meth:`Gateway.handle` takes a parsed request (method, path, headers, body, peer) and
returns a :class:`Response`; :mod:`tripwire.gateway.server` only moves bytes. A
gateway built without a monitor and a store is a plain OIP v2 server (the baseline of
the overhead benchmark), so both run the same parsing and serialisation code.

Per inference request, in order:

1. identify the client (API key, else ``X-Client-Id``, else the source address);
2. in ``enforce`` mode, look up the client's action (block, throttle, degrade);
3. run the model (or the upstream);
4. run the monitor on the client's state under the client's lock, turning observations
   into alerts or timeline entries, and store what changed (:mod:`.records`: at once
   with a shared store; with SQLite, a new client and whatever changes its alerted
   detectors or worst severity at once, counts and repeated trigger alerts by
   write-behind; every alert itself is stored at once): this happens *before* the
   response is written, so an alert is visible once its request is answered;
5. answer (degraded in ``enforce`` mode when the client's severity says so), and hand
   the query log record to a background writer.

In ``observe`` mode a failure of the monitor or the store is logged and counted but
never changes, delays or refuses the response.

With ``monitor_process=True`` (observe mode, a SQLite store; ``tripwire guard``'s
default there) steps 4 and 5's record keeping run in a monitor process
(:mod:`.offload`): this process answers and hands the request over, and the admin API
and the monitor's metrics are answered by the monitor process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import queue
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tripwire import __version__
from tripwire.detectors.extraction.base import (
    ExtractionMonitor,
    Observation,
    QueryBatch,
)
from tripwire.gateway.backend import Backend
from tripwire.gateway.config import GuardConfig
from tripwire.gateway.hooks import (
    TRIGGER_ATLAS,
    TRIGGER_DETECTOR,
    TRIGGER_RULE,
    TriggerCheck,
    flagged,
)
from tripwire.gateway.metrics import LabelKey, Metrics
from tripwire.gateway.offload import ChildSpec, MonitorProcess
from tripwire.gateway.protocol import (
    ProtocolError,
    error_body,
    infer_response,
    model_metadata,
    parse_infer,
)
from tripwire.gateway.records import ClientRecords
from tripwire.gateway.store import QueryRecord, Store, encode_array, store_spec
from tripwire.reports.findings import Severity

log = logging.getLogger("tripwire.gateway")

MODES = ("observe", "enforce")
#: Longest client id accepted from ``X-Client-Id``.
MAX_CLIENT_ID = 256
#: Clients whose states the correlation and drift pass reads at most.
MAX_ACTIVE_CLIENTS = 1000
#: Seconds after its last query that a client still counts as active.
ACTIVE_WINDOW_S = 3600.0


class Headers(Protocol):
    """Request headers, looked up case-insensitively (``email.message.Message``)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass
class Response:
    """An HTTP response: status, JSON or text body, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    close: bool = False  # close the connection after this response

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), dict(headers or {}))


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _severity(value: Any) -> Severity | None:
    if value is None:
        return None
    try:
        return Severity.parse(value)
    except ValueError:
        return None


def degrade(probs: npt.NDArray[np.float32], how: str, decimals: int) -> npt.NDArray[np.float32]:
    """Top-1 only (one-hot) or probabilities rounded to ``decimals`` (renormalised)."""
    if how == "top1":
        out = np.zeros_like(probs)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
        return out
    r = np.round(probs.astype(np.float64), decimals)
    top = probs.argmax(axis=1)
    # Keep the top class where rounding would erase every class of a flat output.
    empty = r.sum(axis=1) == 0
    r[empty, top[empty]] = 1.0
    return np.asarray(r / r.sum(axis=1, keepdims=True), dtype=np.float32)


class _Worker:
    """A daemon thread draining a bounded queue; full queue = the item is dropped."""

    def __init__(self, name: str, fn: Any, maxsize: int = 10000, linger: float = 0.0) -> None:
        self.fn = fn
        self.linger = linger
        self.q: queue.Queue[Any] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                self.q.task_done()
                return
            batch = [item]
            if self.linger > 0:
                # Gather a batch: one wake-up and one transaction per interval, not per
                # request, so the writer competes less with the serving threads.
                time.sleep(self.linger)
            while len(batch) < 256:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)  # handled at the next loop turn
                    self.q.task_done()
                    break
                batch.append(nxt)
            try:
                self.fn(batch)
            except Exception:
                log.exception("background %s failed", self._thread.name)
            for _ in batch:
                self.q.task_done()

    def flush(self) -> None:
        self.q.join()

    def stop(self, timeout: float = 30.0) -> None:
        try:
            self.q.put(None, timeout=timeout)
        except queue.Full:
            log.warning(
                "%s: %d items left unwritten at shutdown", self._thread.name, self.q.qsize()
            )
            return
        self._thread.join(timeout=timeout)


class Gateway:
    """Serve a model over OIP v2 while watching every client (module docstring).

    Parameters
    ----------
    backend
        The model (:class:`~tripwire.gateway.backend.LocalBackend`) or upstream.
    name
        The model's name in URLs.
    monitor
        A fitted :class:`ExtractionMonitor`; ``None`` (with ``store`` ``None``) makes a
        plain OIP server without monitoring.
    store
        Where states, alerts, timelines and the query log live.
    config
        Settings from ``guard.toml``.
    mode
        ``observe`` (the default: responses never change) or ``enforce``.
    admin_token
        The token of the admin API; ``None`` disables it (every call answers 401).
    trigger_check
        An optional run-time trigger check (:class:`TriggerCheck`).
    monitor_process
        Run the monitor, client records, query log and admin API in a process of their
        own (:mod:`tripwire.gateway.offload`): serving then pays only for handing each
        answered request over. ``observe`` mode with a SQLite store only.

    Raises
    ------
    ValueError
        An unknown mode, or a monitor without a store, or ``monitor_process`` where it
        cannot run.
    """

    def __init__(
        self,
        backend: Backend,
        name: str,
        *,
        monitor: ExtractionMonitor | None = None,
        store: Store | None = None,
        config: GuardConfig | None = None,
        mode: str = "observe",
        admin_token: str | None = None,
        trigger_check: TriggerCheck | None = None,
        monitor_process: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if monitor is not None and store is None:
            raise ValueError("a monitor needs a store")
        if monitor_process and (
            monitor is None or store is None or mode != "observe" or store.shared
        ):
            # Enforce mode decides each response from the client's record, here; replicas
            # on a shared store must see each other's alerts as soon as a request is
            # answered, which a monitor process catching up later would not give.
            raise ValueError(
                "a monitor process needs a monitor, observe mode and a store of its own (SQLite)"
            )
        self.backend = backend
        self.name = name
        self.monitor = monitor
        self.store = store
        self.config = config or GuardConfig()
        self.mode = mode
        self.trigger_check = trigger_check
        #: An AliasFollower swapping ``backend`` on registry promotions (guard --alias).
        self.follower: Any = None
        self.metrics = Metrics()
        self._admin = None if not admin_token else admin_token.encode()
        self._keys = {hashlib.sha256(k.encode()).digest(): c for k, c in self.config.keys.items()}
        self._alert_log_lock = threading.Lock()
        self._drift: dict[str, Any] = {}
        self._stop = threading.Event()
        self._inflight = 0
        self._draining = False
        self._inflight_cv = threading.Condition()
        self._offload: MonitorProcess | None = None
        self._trigger_remote = False
        self._qlog: _Worker | None = None
        self._hooks: _Worker | None = None
        self._records: ClientRecords | None = None
        self._bg: threading.Thread | None = None
        if monitor_process and monitor is not None and store is not None:
            # Everything but serving moves to the monitor process; this process keeps
            # no records, query log or background threads of its own. The trigger check
            # goes too where it can be handed over (one holding a model cannot).
            self._trigger_remote = trigger_check is not None and _can_hand_over(trigger_check)
            self._offload = MonitorProcess(
                ChildSpec(
                    name,
                    monitor,
                    store_spec(store),
                    self.config,
                    mode,
                    admin_token,
                    trigger_check if self._trigger_remote else None,
                )
            )
            return
        self._qlog = (
            _Worker("query-log", self._write_queries, linger=0.05) if store is not None else None
        )
        self._hooks = _Worker("webhook", self._post_webhook, 1000) if self.config.webhook else None
        if monitor is not None and store is not None:
            self._records = ClientRecords(
                store,
                monitor,
                cache=not getattr(store, "shared", True),
                flush_interval_s=self.config.state_flush_s,
                on_over_budget=lambda n: self.metrics.inc(
                    "tripwire_state_over_budget_total",
                    "Client states larger than the monitor's budget.",
                ),
            )
        if monitor is not None and self.config.correlate_interval_s > 0:
            self._bg = threading.Thread(target=self._background, name="correlate", daemon=True)
            self._bg.start()

    # The monitored paths run only when all three exist (checked in __init__).
    @property
    def _mon(self) -> ExtractionMonitor:
        if self.monitor is None:
            raise RuntimeError("a plain server has no monitor")
        return self.monitor

    @property
    def _store(self) -> Store:
        if self.store is None:
            raise RuntimeError("a plain server has no store")
        return self.store

    @property
    def _recs(self) -> ClientRecords:
        if self._records is None:
            raise RuntimeError("a plain server keeps no client records")
        return self._records

    @property
    def plain(self) -> bool:
        """Whether this is a plain OIP server (no monitoring)."""
        return self.monitor is None

    # -- routing -------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: Headers, body: bytes, peer: str) -> Response:
        """Answer one HTTP request (see the module docstring). Never raises."""
        with self._inflight_cv:
            if self._draining:
                # Shutting down: no request may change a state that is being written.
                return Response(
                    503,
                    error_body("the gateway is shutting down"),
                    {"Retry-After": "1"},
                    close=True,
                )
            self._inflight += 1
        try:
            return self._handle(method, path, headers, body, peer)
        finally:
            with self._inflight_cv:
                self._inflight -= 1
                self._inflight_cv.notify_all()

    def _handle(self, method: str, path: str, headers: Headers, body: bytes, peer: str) -> Response:
        start = time.perf_counter()
        route = "other"
        if method == "HEAD":  # answered as GET; the server leaves the body out
            method = "GET"
        try:
            parts = urllib.parse.urlsplit(path)
            segs = [urllib.parse.unquote(s) for s in parts.path.strip("/").split("/")]
            if segs[:1] == ["v2"]:
                route, resp = self._v2(method, segs[1:], headers, body, peer)
            elif segs[:2] == ["tripwire", "v1"] and not self.plain:
                route = "admin"
                if self._offload is not None:
                    resp = self._offload_admin(method, segs[2:], headers, parts.query)
                else:
                    resp = self._admin_api(method, segs[2:], headers, parts.query)
            elif segs == ["metrics"] and method == "GET":
                route = "metrics"
                resp = Response(
                    200, self.render_metrics().encode(), content_type="text/plain; version=0.0.4"
                )
            else:
                raise ProtocolError(404, f"no such endpoint: {parts.path[:100]}", "not_found")
        except ProtocolError as exc:
            resp = Response.json(exc.status, {"error": exc.message}, exc.headers)
            if exc.status < 500 or exc.reason == "upstream":
                self.metrics.inc(
                    "tripwire_bad_requests_total",
                    "Requests refused, by reason.",
                    reason=exc.reason,
                )
                log.info("refused %s %s: %d %s", method, path[:100], exc.status, exc.message)
        except Exception:
            log.exception("internal error on %s %s", method, path[:100])
            resp = Response(500, error_body("internal error (see the gateway's log)"))
        elapsed = time.perf_counter() - start
        if route == "infer":
            self.metrics.observe_latency(elapsed)
        self.metrics.inc(
            "tripwire_requests_total",
            "HTTP requests answered, by route and status.",
            route=route,
            code=str(resp.status),
        )
        return resp

    def _v2(
        self, method: str, segs: list[str], headers: Headers, body: bytes, peer: str
    ) -> tuple[str, Response]:
        if segs == [] and method == "GET":
            return "meta", Response.json(
                200, {"name": "tripwire", "version": __version__, "extensions": []}
            )
        if segs[:1] == ["health"] and len(segs) == 2 and method == "GET":
            if segs[1] == "live":
                return "health", Response.json(200, {"live": True})
            if segs[1] == "ready":
                ok = self.ready()
                return "health", Response.json(200 if ok else 503, {"ready": ok})
        if segs[:1] == ["models"] and len(segs) >= 2:
            name = segs[1]
            rest = segs[2:]
            # Versioned paths (/v2/models/NAME/versions/V/...) address the one version.
            if rest[:1] == ["versions"] and len(rest) >= 2:
                rest = rest[2:]
            if name != self.name:
                raise ProtocolError(404, f"unknown model {name[:100]!r}", "unknown_model")
            if rest == [] and method == "GET":
                return "meta", Response.json(
                    200,
                    model_metadata(
                        self.name,
                        self.backend.platform,
                        self.backend.input_shape,
                        self.backend.n_classes,
                    ),
                )
            if rest == ["ready"] and method == "GET":
                ok = self.ready()
                return "health", Response.json(200 if ok else 503, {"name": self.name, "ready": ok})
            if rest == ["infer"]:
                if method != "POST":
                    raise ProtocolError(405, "infer needs POST", "bad_method")
                return "infer", self._infer(headers, body, peer)
        raise ProtocolError(404, "no such endpoint", "not_found")

    # -- identity ------------------------------------------------------------------------
    def identify(self, headers: Headers, peer: str) -> str:
        """The client's id: API key's client, else ``X-Client-Id``, else ``addr:IP``.

        Raises
        ------
        ProtocolError
            401 where keys are configured and none (or an unknown one) is given; 400 for
            an over-long or multi-line ``X-Client-Id``.
        """
        if self._keys:
            auth = headers.get("Authorization") or ""
            scheme, _, key = auth.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise ProtocolError(
                    401,
                    "an API key is required (Authorization: Bearer KEY)",
                    "missing_identity",
                    {"WWW-Authenticate": "Bearer"},
                )
            client = self._keys.get(hashlib.sha256(key.strip().encode()).digest())
            if client is None:
                raise ProtocolError(
                    401, "unknown API key", "bad_identity", {"WWW-Authenticate": "Bearer"}
                )
            return client
        cid = headers.get("X-Client-Id")
        if cid:
            # http.server decodes header bytes as Latin-1; a UTF-8 id is recovered so
            # that alerts name the client exactly as it sent itself.
            with contextlib.suppress(UnicodeError):
                cid = cid.encode("latin-1").decode("utf-8")
            if len(cid) > MAX_CLIENT_ID or not cid.isprintable():
                raise ProtocolError(
                    400,
                    f"X-Client-Id must be printable and at most {MAX_CLIENT_ID} characters",
                    "bad_identity",
                )
            return cid
        return f"addr:{peer}"

    # -- inference -----------------------------------------------------------------------
    def _infer(self, headers: Headers, body: bytes, peer: str) -> Response:
        t = time.time()
        client = None if self.plain else self.identify(headers, peer)
        req = parse_infer(body, self.backend.input_shape, max_batch=self.config.max_batch)
        x = req.x
        if client is None:  # plain server
            pred = self.backend.predict(x)
            return Response.json(200, infer_response(self.name, pred.probs, req.request_id))
        action: str | None = None
        meta: dict[str, Any] = {}
        if self.mode == "enforce":
            action, meta = self._action(client)
            if action == "block":
                self._log_query(client, t, x, None, 403, action)
                raise ProtocolError(403, "this client is blocked", "blocked")
            if action == "throttle":
                wait = (
                    float(meta.get("last_served", 0.0))
                    + self.config.enforce.throttle_interval_s
                    - t
                )
                if wait > 0:
                    self._log_query(client, t, x, None, 429, action)
                    raise ProtocolError(
                        429,
                        "this client is throttled",
                        "throttled",
                        {"Retry-After": str(max(1, math.ceil(wait)))},
                    )
        pred = self.backend.predict(x, want_features=self.trigger_check is not None)
        probs = pred.probs
        if self._offload is not None:  # observe mode: the answer is the model's
            remote = self._trigger_remote  # else run here, its findings handed over
            try:
                handed = self._offload.served(
                    client,
                    t,
                    x,
                    probs,
                    None if remote else self._trigger_observations(pred),
                    pred.logits if remote else None,
                    pred.features if remote else None,
                )
            except Exception:
                log.exception("cannot hand a request to the monitor process")
                handed = False
            if not handed:
                self.metrics.inc("tripwire_monitor_errors_total", "Monitor or store failures.")
            self.metrics.inc("tripwire_samples_total", "Samples answered.", float(len(x)))
            return Response.json(200, infer_response(self.name, probs, req.request_id))
        try:
            self._watch(client, t, x, pred, served=(action is not None))
        except Exception:
            # Observe mode's promise: the monitor never costs the client its answer.
            log.exception("monitoring failed for a request")
            self.metrics.inc("tripwire_monitor_errors_total", "Monitor or store failures.")
        out = probs
        params = None
        if action in ("degrade", "throttle"):
            out = degrade(
                probs, self.config.enforce.degrade_output, self.config.enforce.round_decimals
            )
            params = {"tripwire_degraded": True}
        self._log_query(client, t, x, out, 200, action)
        self.metrics.inc("tripwire_samples_total", "Samples answered.", float(len(x)))
        return Response.json(200, infer_response(self.name, out, req.request_id, parameters=params))

    def _action(self, client: str) -> tuple[str | None, dict[str, Any]]:
        try:
            meta = self._recs.peek(client).meta
        except Exception:
            log.exception("cannot read a client's record")
            return None, {}
        if meta.get("allowed"):
            return None, meta
        return self.config.enforce.action_for(_severity(meta.get("worst"))), meta

    def ready(self) -> bool:
        """Whether the model (or upstream) answers and, where it runs apart, the monitor
        process is alive."""
        return self.backend.ready() and (self._offload is None or self._offload.alive)

    def _trigger_observations(self, pred: Any) -> list[Observation]:
        """The run-time trigger check's finding on one request (empty when none fires)."""
        trig: list[Observation] = []
        if self.trigger_check is not None:
            scores, flags = flagged(self.trigger_check, pred.logits, pred.features)
            if flags.any():
                idx = np.flatnonzero(flags)
                trig.append(
                    Observation(
                        detector=TRIGGER_DETECTOR,
                        rule_id=TRIGGER_RULE,
                        score=float(scores[idx].max()),
                        severity=_severity(getattr(self.trigger_check, "severity", None))
                        or Severity.HIGH,
                        atlas=TRIGGER_ATLAS,
                        evidence={
                            "flagged_inputs": [int(i) for i in idx[:100]],
                            "n_flagged": int(idx.size),
                            "scores": [round(float(s), 4) for s in scores[idx[:100]]],
                            "threshold": float(self.trigger_check.threshold),
                            "predicted": [int(c) for c in pred.probs[idx[:100]].argmax(1)],
                        },
                    )
                )
        return trig

    def _watch(
        self,
        client: str,
        t: float,
        x: npt.NDArray[np.float32],
        pred: Any,
        *,
        served: bool,
        trigger: list[Observation] | None = None,
    ) -> None:
        """Run the monitor on one answered request; ``trigger``: the trigger check's
        observations where the serving process already ran it."""
        monitor, store, records = self._mon, self._store, self._recs
        trig = self._trigger_observations(pred) if trigger is None else trigger
        with records.lock(client):
            rec = records.load(client)
            meta = rec.meta
            observations: list[Observation] = list(trig)
            if meta.get("allowed"):
                count = int(meta.get("query_count", 0)) + len(x)
            else:
                if rec.state is None:
                    rec.state = monitor.new_state()
                observations += monitor.observe(rec.state, QueryBatch(x=x, probs=pred.probs, t=t))
                count = int(rec.state.query_count) + int(meta.get("query_offset", 0))
            new_client = "first_seen" not in meta
            meta.setdefault("first_seen", t)
            meta["last_seen"] = t
            meta["query_count"] = count
            meta["requests"] = int(meta.get("requests", 0)) + 1
            if served:
                meta["last_served"] = t
            graded = (meta.get("worst"), dict(meta.get("alerted", {})))
            alerts, timeline = self._grade(client, meta, observations, t, count)
            # What others read (a new client, what it was alerted for, its worst severity)
            # is written now; counts, scores and an alert that changes neither (the
            # trigger check's, raised per triggered input) wait for the write-behind pass
            # of an owned store. The alert itself is stored at once by _emit.
            changed = graded != (meta.get("worst"), meta.get("alerted", {}))
            records.save(client, rec, now=new_client or changed)
            store.add_timeline(client, timeline, self.config.timeline_cap)
            self._emit(alerts)

    def _grade(
        self,
        client: str,
        meta: dict[str, Any],
        observations: list[Observation],
        t: float,
        count: int,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split observations into alerts (first time a detector reaches a severity of
        low or above for this client, or a higher one) and timeline entries."""
        alerts: list[dict[str, Any]] = []
        timeline: list[dict[str, Any]] = []
        alerted: dict[str, str] = meta.setdefault("alerted", {})
        scores: dict[str, float] = meta.setdefault("scores", {})
        worst = _severity(meta.get("worst"))
        for o in observations:
            scores[o.detector] = round(float(o.score), 6)
            sev = o.severity
            prior = _severity(alerted.get(o.detector))
            repeat = (
                o.detector != TRIGGER_DETECTOR
                and prior is not None
                and sev is not None
                and sev.rank <= prior.rank
            )
            if sev is None or sev.rank < Severity.LOW.rank or repeat or meta.get("allowed"):
                timeline.append({"time": _now_iso(t), "query_count": count, **o.to_dict()})
                continue
            alerted[o.detector] = str(sev)
            if worst is None or sev.rank > worst.rank:
                worst = sev
            alerts.append(
                {
                    "client": client,
                    "detector": o.detector,
                    "severity": str(sev),
                    "atlas": list(o.atlas),
                    "query_count": count,
                    "time": _now_iso(t),
                    "evidence": o.evidence,
                    "rule_id": o.rule_id,
                    "score": float(o.score),
                    "clients": list(o.clients),
                    "mode": self.mode,
                }
            )
            timeline.append(
                {"time": _now_iso(t), "query_count": count, "alert": True, **o.to_dict()}
            )
        meta["worst"] = None if worst is None else str(worst)
        return alerts, timeline

    def _emit(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        self._store.add_alerts(alerts)
        for a in alerts:
            self.metrics.inc(
                "tripwire_alerts_total", "Alerts raised, by detector.", detector=a["detector"]
            )
            log.warning(
                "alert: %s %s on client %r after %d queries",
                a["severity"],
                a["detector"],
                a["client"],
                a["query_count"],
            )
        if self.config.alert_log:
            lines = "".join(json.dumps(a) + "\n" for a in alerts)
            try:
                with self._alert_log_lock, open(self.config.alert_log, "a") as fh:
                    fh.write(lines)
            except OSError:
                log.exception("cannot write the alert log")
        if self._hooks is not None:
            for a in alerts:
                self._hooks.put(a)

    # -- background work -----------------------------------------------------------------
    def _log_query(
        self,
        client: str,
        t: float,
        x: npt.NDArray[np.float32],
        out: npt.NDArray[np.float32] | None,
        status: int,
        action: str | None,
    ) -> None:
        if self._qlog is not None:
            self._qlog.put((client, t, x, out, status, action))

    def _write_queries(self, batch: list[Any]) -> None:
        qc = self.config.query_log
        records = []
        for client, t, x, out, status, action in batch:
            rec = QueryRecord(
                client=client,
                t=t,
                meta={
                    "n": int(x.shape[0]),
                    "shape": list(x.shape),
                    "status": status,
                    "action": action,
                },
            )
            if qc.payloads:
                rec.input = encode_array(x)
                rec.output = None if out is None else encode_array(out)
                if len(rec.input) + len(rec.output or b"") > qc.max_entry_bytes:
                    rec.input = rec.output = None
                    rec.meta["payload_dropped"] = "over max_entry_bytes"
            records.append(rec)
        self._store.log_queries(records, qc.max_bytes, qc.retention_s)

    def _post_webhook(self, batch: list[dict[str, Any]]) -> None:
        url = self.config.webhook
        if url is None:
            return
        for alert in batch:
            req = urllib.request.Request(  # noqa: S310 - the config checked http(s)
                url,
                data=json.dumps(alert).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
                    resp.read(1024)
            except OSError as exc:
                self.metrics.inc("tripwire_webhook_errors_total", "Webhook deliveries that failed.")
                log.warning("webhook delivery failed: %s", exc)

    def _background(self) -> None:
        while not self._stop.wait(self.config.correlate_interval_s):
            try:
                self.correlate_now()
            except Exception:
                log.exception("cross-client correlation failed")

    def active_states(self) -> dict[str, Any]:
        """Copies of the states of clients active within the last hour (at most 1,000)."""
        monitor, records = self._mon, self._recs
        states: dict[str, Any] = {}
        for c in self._store.clients(since=time.time() - ACTIVE_WINDOW_S)[:MAX_ACTIVE_CLIENTS]:
            with records.lock(c):
                rec = records.peek(c)
                if rec.state is not None and not rec.meta.get("allowed"):
                    # A copy: request threads keep mutating the live state.
                    states[c] = monitor.loads(monitor.dumps(rec.state))
        return states

    def correlate_now(self) -> list[dict[str, Any]]:
        """Run cross-client correlation and population drift once; returns new alerts."""
        if self._offload is not None:
            alerts: list[dict[str, Any]] = self._offload.call("correlate")[0]["alerts"]
            return alerts
        if self.monitor is None or self._records is None:
            return []
        states = self.active_states()
        if not states:
            return []
        observations = self._mon.correlate(states)
        drift = self._mon.drift(states)
        self._drift = {"time": _now_iso(time.time()), "clients": len(states), **drift}
        emitted: list[dict[str, Any]] = []
        t = time.time()
        for o in observations:
            for client in o.clients or ():
                with self._recs.lock(client):
                    rec = self._recs.load(client)
                    count = int(rec.meta.get("query_count", 0))
                    alerts, timeline = self._grade(client, rec.meta, [o], t, count)
                    self._recs.save(client, rec, now=True)
                    self._store.add_timeline(client, timeline, self.config.timeline_cap)
                    self._emit(alerts)
                    emitted += alerts
        return emitted

    def drift_report(self) -> dict[str, Any]:
        """The latest population drift report (empty before the first pass)."""
        if self._offload is not None:
            return dict(self._offload.call("drift")[0]["drift"])
        return dict(self._drift)

    def flush(self) -> None:
        """Write client states, the query log and webhooks that are queued (tests, shutdown)."""
        if self._offload is not None:
            self._offload.call("flush")
        if self._records is not None:
            self._records.flush()
        for w in (self._qlog, self._hooks):
            if w is not None:
                w.flush()

    def close(self, drain_timeout: float = 10.0) -> None:
        """Refuse new requests (503), wait for those in flight, write every client state
        and what is queued, stop background threads; the store stays open."""
        with self._inflight_cv:
            self._draining = True
            self._inflight_cv.wait_for(lambda: self._inflight == 0, timeout=drain_timeout)
        self._stop.set()
        if self._offload is not None:
            self._offload.stop()
        if self._records is not None:
            self._records.close()
        for w in (self._qlog, self._hooks):
            if w is not None:
                w.stop()

    # -- admin API -----------------------------------------------------------------------
    def _check_admin(self, headers: Headers) -> None:
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        ok = (
            self._admin is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), self._admin)
        )
        if not ok:
            raise ProtocolError(
                401,
                "the admin API needs the admin token (Authorization: Bearer TOKEN)",
                "admin_unauthorized",
                {"WWW-Authenticate": "Bearer"},
            )

    def _admin_api(self, method: str, segs: list[str], headers: Headers, query: str) -> Response:
        self._check_admin(headers)
        store = self._store
        if segs == ["alerts"] and method == "GET":
            return Response.json(200, {"alerts": store.alerts()})
        if segs == ["clients"] and method == "GET":
            return Response.json(200, {"clients": store.clients()})
        if segs == ["drift"] and method == "GET":
            if not self._drift:
                self.correlate_now()
            return Response.json(200, {"drift": self._drift})
        if len(segs) >= 2 and segs[0] == "clients":
            client = segs[1]
            if len(segs) == 2 and method == "GET":
                return Response.json(200, self.client_view(client))
            if len(segs) == 3 and segs[2] == "queries" and method == "GET":
                qs = urllib.parse.parse_qs(query)
                payloads = qs.get("payloads", ["0"])[0] in ("1", "true")
                limit = (
                    int(qs.get("limit", ["100"])[0])
                    if qs.get("limit", ["100"])[0].isdigit()
                    else 100
                )
                self.flush()
                recs = store.queries(client, limit=min(limit, 10000))
                return Response.json(
                    200, {"client": client, "queries": [r.to_dict(payloads=payloads) for r in recs]}
                )
            if len(segs) == 3 and method == "POST" and segs[2] in ("clear", "allow", "disallow"):
                records = self._recs
                with records.lock(client):
                    if segs[2] == "clear":
                        store.delete_state(client)
                        records.forget(client)
                    else:
                        rec = records.load(client)
                        rec.meta["allowed"] = segs[2] == "allow"
                        records.save(client, rec, now=True)
                log.warning("admin: %s client %r", segs[2], client)
                return Response.json(200, self.client_view(client))
        raise ProtocolError(404, "no such admin endpoint", "not_found")

    def client_view(self, client: str) -> dict[str, Any]:
        """A client's record for the admin API: counts, severity, action, state, timeline."""
        monitor, records = self._mon, self._recs
        with records.lock(client):
            rec = records.peek(client)
            # Copies taken under the lock: request threads mutate the live record.
            raw = None if rec.state is None else monitor.dumps(rec.state)
            meta = json.loads(json.dumps(rec.meta))
        if raw is None and not meta:
            raise ProtocolError(404, "unknown client", "unknown_client")
        state_view: dict[str, Any] = {"bytes": len(raw or b""), "budget": monitor.state_budget}
        if raw:
            state = monitor.loads(raw)
            state_view["query_count"] = int(state.query_count)
            summary = getattr(state, "to_dict", None) or getattr(state, "summary", None)
            if callable(summary):
                with contextlib.suppress(Exception):  # a summary is a convenience only
                    state_view["summary"] = summary()
        worst = _severity(meta.get("worst"))
        return {
            "client": client,
            "query_count": int(meta.get("query_count", 0)),
            "requests": int(meta.get("requests", 0)),
            "first_seen": _now_iso(meta["first_seen"]) if "first_seen" in meta else None,
            "last_seen": _now_iso(meta["last_seen"]) if "last_seen" in meta else None,
            "worst_severity": None if worst is None else str(worst),
            "allowed": bool(meta.get("allowed")),
            "action": None if meta.get("allowed") else self.config.enforce.action_for(worst),
            "mode": self.mode,
            "scores": meta.get("scores", {}),
            "state": state_view,
            "timeline": self._store.timeline(client),
        }

    # -- metrics -------------------------------------------------------------------------
    def render_metrics(self) -> str:
        """Prometheus text (module :mod:`tripwire.gateway.metrics`)."""
        if self._offload is not None:
            # Serving counts requests and latency here; alerts, states and the query
            # log are counted by the monitor process.
            own: dict[str, tuple[str, dict[LabelKey, float]]] = {
                "tripwire_monitor_process_restarts": (
                    "Times a monitor process that died was replaced.",
                    {(): float(self._offload.restarts)},
                ),
                "tripwire_monitor_process_up": (
                    "Whether the monitor process runs (1) or requests go unwatched (0).",
                    {(): float(self._offload.alive)},
                ),
            }
            try:
                head = self._offload.call("metrics")[0]
            except (ProtocolError, RuntimeError):
                return self.metrics.render(own)
            return self.metrics.render(
                {**own, **_families(head["gauges"])}, _families(head["counters"])
            )
        return self.metrics.render(self.gauges())

    def metric_families(self) -> dict[str, Any]:
        """Counters and gauges as JSON (what the monitor process reports to serving)."""
        return {
            "counters": _unfamilies(self.metrics.counters()),
            "gauges": _unfamilies(self.gauges()),
        }

    def gauges(self) -> dict[str, tuple[str, dict[LabelKey, float]]]:
        """The gauges of :meth:`render_metrics`: clients by severity and action, drift,
        dropped query-log records."""
        gauges: dict[str, tuple[str, dict[LabelKey, float]]] = {}
        if self.store is not None:
            try:
                counts = self.store.worst_counts()
            except Exception:
                counts = {}
            by_action: dict[LabelKey, float] = {
                (("action", a),): 0.0 for a in ("degrade", "throttle", "block")
            }
            by_sev: dict[LabelKey, float] = {}
            for sev_name, n in counts.items():
                sev = _severity(sev_name)
                by_sev[(("severity", sev_name),)] = float(n)
                act = self.config.enforce.action_for(sev)
                if act is not None:
                    by_action[(("action", act),)] += n
            gauges["tripwire_clients_under_action"] = (
                f"Clients whose worst severity maps to an action (applied in enforce mode; "
                f"mode is {self.mode}).",
                by_action,
            )
            gauges["tripwire_clients_flagged"] = ("Clients by worst alert severity.", by_sev)
            drift: dict[LabelKey, float] = {
                (("stat", k),): float(v)
                for k, v in self._drift.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            }
            if drift:
                gauges["tripwire_drift"] = ("Population drift statistics of all traffic.", drift)
        if self._qlog is not None:
            gauges["tripwire_query_log_dropped"] = (
                "Query log records dropped because the writer fell behind.",
                {(): float(self._qlog.dropped)},
            )
        return gauges

    def _offload_admin(
        self, method: str, segs: list[str], headers: Headers, query: str
    ) -> Response:
        if self._offload is None:  # pragma: no cover - routed here only with one
            raise RuntimeError("no monitor process")
        head, arrays = self._offload.call(
            "admin",
            method=method,
            segs=segs,
            query=query,
            headers={"Authorization": headers.get("Authorization") or ""},
        )
        return Response(
            int(head["status"]),
            arrays[0].tobytes(),
            dict(head["headers"]),
            content_type=str(head["content_type"]),
        )


def _can_hand_over(obj: Any) -> bool:
    """Whether ``obj`` can be sent to the monitor process (spawn pickles its arguments:
    our own objects, from this process to its child, never data from outside)."""
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


def _unfamilies(fams: dict[str, tuple[str, dict[LabelKey, float]]]) -> dict[str, Any]:
    return {
        n: [h, [[list(map(list, k)), v] for k, v in series.items()]]
        for n, (h, series) in fams.items()
    }


def _families(data: dict[str, Any]) -> dict[str, tuple[str, dict[LabelKey, float]]]:
    return {
        n: (str(h), {tuple((str(a), str(b)) for a, b in k): float(v) for k, v in series})
        for n, (h, series) in data.items()
    }


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (the drift report on shutdown)."""
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


__all__ = ["MODES", "Gateway", "Response", "degrade"]
