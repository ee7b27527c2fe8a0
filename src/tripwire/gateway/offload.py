"""The monitor in a process of its own, beside the serving process (``--monitor-process``).

Why: the gateway serves from threads of one Python process, and at saturation that
process is bound by its interpreter lock, not by the machine's cores. Everything the
monitor does per request (features, the detectors every 16 samples, grading, client
records, the query log's encoding and writes) is taken from serving. Here the serving
process only parses, runs the model, answers, and hands each answered request to a
monitor process over a pipe; the monitor process runs a complete
:class:`~tripwire.gateway.core.Gateway` without a model (records, alerts, timelines,
query log, correlation, webhooks, the admin API) on another core.

Ordering keeps the gateway's promise that an alert is visible as soon as the request
that triggered it has been answered: a request's record is written to the pipe before
its response, and admin calls travel the same pipe, so the monitor process has run every
earlier request when it answers one.

The pipe carries a small JSON header and raw array bytes per request (no pickle on this
path; the fitted monitor is handed over once, at start, by :mod:`multiprocessing` from
this process to its own child). Request threads only append their record to a list; a
sender thread writes the list every :data:`SEND_INTERVAL_S` as one message, so that
neither serving threads nor the monitor process pay a system call and a wake-up per
request. A list of :data:`MAX_PENDING` records is written by the request thread itself,
and a full pipe blocks it until the monitor catches up: requests are never dropped
unmonitored, so flooding cannot buy an attacker unwatched queries, and memory stays
bounded.

A monitor process that dies is replaced by the sender thread (every
:data:`RESTART_BACKOFF_S` until it starts): client states come back as last written
(alerts at once, counts by the write-behind pass), and until then serving goes on
unwatched, ``/v2/health/ready`` answers 503 and ``tripwire_monitor_process_up`` is 0.

Only ``observe`` mode with a store of its own (SQLite) runs this way: ``enforce``
decides each response from the client's record, which lives in the serving process, and
replicas sharing a Redis store must see each other's alerts as soon as a request is
answered. The JSON-lines alert log and the webhook are written by the monitor process,
moments after the response.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import signal
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.detectors.extraction.base import Observation
from tripwire.gateway.protocol import ProtocolError
from tripwire.reports.findings import Severity

log = logging.getLogger("tripwire.gateway")

#: Seconds the serving process waits for the monitor process's answer to an admin call.
CALL_TIMEOUT_S = 60.0
#: Seconds to start the monitor process (imports and the first reply).
START_TIMEOUT_S = 120.0
#: Seconds between the sender thread's writes of the requests handed over meanwhile.
SEND_INTERVAL_S = 0.01
#: Requests (or bytes) handed over but not yet written at most; past either, the
#: request thread writes them itself.
MAX_PENDING = 256
MAX_PENDING_BYTES = 8 << 20
#: Seconds between attempts to restart a monitor process that died.
RESTART_BACKOFF_S = 10.0
#: Data types that may travel the pipe (anything else is a bug, refused).
_DTYPES = {"<f4", "<f8", "<i8", "|u1", "|b1"}
_LEN = struct.Struct("<I")


# -- framing ------------------------------------------------------------------------------
def pack(header: dict[str, Any], arrays: tuple[npt.NDArray[Any], ...] = ()) -> bytes:
    """One message: header length, JSON header (with the arrays' dtypes and shapes),
    then the arrays' bytes in order."""
    metas = []
    blobs = []
    for a in arrays:
        c = np.ascontiguousarray(a)
        metas.append([c.dtype.str, list(c.shape)])
        blobs.append(c.tobytes())
    head = json.dumps({**header, "arrays": metas}).encode()
    return b"".join([_LEN.pack(len(head)), head, *blobs])


def join_messages(msgs: list[bytes]) -> bytes:
    """Several messages as one write: each prefixed with its length."""
    return b"".join(b for m in msgs for b in (_LEN.pack(len(m)), m))


def split_messages(data: bytes) -> list[memoryview]:
    """Inverse of :func:`join_messages`.

    Raises
    ------
    ValueError
        Lengths that do not add up to the data.
    """
    view = memoryview(data)
    out = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise ValueError("a truncated monitor message")
        (n,) = _LEN.unpack_from(view, pos)
        if pos + 4 + n > len(view):
            raise ValueError("a truncated monitor message")
        out.append(view[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def unpack(msg: bytes | memoryview) -> tuple[dict[str, Any], list[npt.NDArray[Any]]]:
    """Inverse of :func:`pack`.

    Raises
    ------
    ValueError
        A malformed message or a data type that is not allowed.
    """
    (n,) = _LEN.unpack_from(msg)
    header = json.loads(bytes(msg[4 : 4 + n]))
    pos = 4 + n
    arrays = []
    for dt, shape in header.pop("arrays"):
        if dt not in _DTYPES:
            raise ValueError(f"data type {dt!r} is not allowed on the monitor pipe")
        count = 1
        for d in shape:
            count *= int(d)
        a = np.frombuffer(msg, dtype=np.dtype(dt), count=count, offset=pos).reshape(shape)
        pos += a.nbytes
        arrays.append(a)
    if pos != len(msg):
        raise ValueError("trailing bytes in a monitor message")
    return header, arrays


def observation_from_dict(d: dict[str, Any]) -> Observation:
    """Inverse of :meth:`Observation.to_dict` (the trigger check's, made by the server)."""
    sev = d.get("severity")
    return Observation(
        detector=str(d["detector"]),
        rule_id=str(d["rule_id"]),
        score=float(d["score"]),
        severity=None if sev is None else Severity.parse(sev),
        atlas=tuple(d.get("atlas", ())),
        evidence=dict(d.get("evidence", {})),
        clients=tuple(d.get("clients", ())),
    )


@dataclass
class ChildSpec:
    """What the monitor process needs to build its gateway (handed over once, at start)."""

    name: str
    monitor: Any
    store: dict[str, Any]
    config: Any
    mode: str
    admin_token: str | None
    #: The run-time trigger check where it can be handed over (else the serving
    #: process runs it and hands over its findings).
    trigger_check: Any = None


class _NoBackend:
    """The monitor process runs no model: it only watches what the server answered."""

    platform = "tripwire-monitor"
    input_shape = None
    n_classes = None

    def ready(self) -> bool:
        return True


# -- the monitor process --------------------------------------------------------------------
def child_main(conn: Any, spec: ChildSpec) -> None:
    """The monitor process: build the gateway, then serve the pipe until told to stop or
    until the serving process goes away (its end of the pipe closes)."""
    # A terminal's Ctrl-C reaches the whole process group: the serving process decides
    # when this one stops (it sends "stop" after draining its requests).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The monitor's matrix products are small: a multi-threaded BLAS gains nothing on
    # them and its idle workers spin (see tripwire.cli.commands.guard.serving_threads).
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=1, user_api="blas")
    from tripwire.gateway.core import Gateway
    from tripwire.gateway.store import open_spec

    try:
        gw = Gateway(
            _NoBackend(),  # type: ignore[arg-type]
            spec.name,
            monitor=spec.monitor,
            store=open_spec(spec.store),
            config=spec.config,
            mode=spec.mode,
            admin_token=spec.admin_token,
            trigger_check=spec.trigger_check,
        )
    except Exception as exc:
        conn.send_bytes(pack({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    conn.send_bytes(pack({"ok": True}))
    told_to_stop = False
    try:
        while not told_to_stop:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                log.warning("monitor process: the serving process went away; stopping")
                break
            for msg in split_messages(data):
                header, arrays = unpack(msg)
                op = header["op"]
                if op == "served":
                    _served(gw, header, arrays)
                elif op == "stop":
                    told_to_stop = True
                    break
                else:
                    conn.send_bytes(_answer(gw, op, header))
    finally:
        # Every state and what is queued written, however the loop ended.
        gw.close(drain_timeout=0.0)
        if gw.store is not None:
            gw.store.close()
    if told_to_stop:
        conn.send_bytes(pack({"ok": True}))


class _Pred:
    """The part of a prediction that ``Gateway._watch`` reads."""

    def __init__(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.probs = arrays["probs"]
        self.logits = arrays.get("logits")
        self.features = arrays.get("features")


def _served(gw: Any, header: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> None:
    named = dict(zip(header["names"], arrays, strict=True))
    x, pred = named["x"], _Pred(named)
    client, t = str(header["client"]), float(header["t"])
    # The trigger check's findings where the serving process ran it; else it runs here
    # (on the logits and features handed over), or there is none.
    trig = (
        [observation_from_dict(d) for d in header["trigger"]]
        if header.get("trigger") is not None
        else None
    )
    try:
        gw._watch(client, t, x, pred, served=False, trigger=trig)
    except Exception:
        log.exception("monitoring failed for a request")
        gw.metrics.inc("tripwire_monitor_errors_total", "Monitor or store failures.")
    # Observe mode: every request handed over was answered (200) with the model's own
    # probabilities.
    gw._log_query(client, t, x, pred.probs, 200, None)


def _answer(gw: Any, op: str, header: dict[str, Any]) -> bytes:
    """The reply to a call: an admin request, the metrics text, or a maintenance op."""
    try:
        if op == "admin":
            resp = gw._admin_api(
                header["method"], header["segs"], _Headers(header["headers"]), header["query"]
            )
            return pack(
                {
                    "ok": True,
                    "status": resp.status,
                    "headers": resp.headers,
                    "content_type": resp.content_type,
                },
                (np.frombuffer(resp.body, dtype=np.uint8),),
            )
        if op == "metrics":
            return pack({"ok": True, **gw.metric_families()})
        if op == "flush":
            gw.flush()
            return pack({"ok": True})
        if op == "correlate":
            return pack({"ok": True, "alerts": gw.correlate_now()})
        if op == "drift":
            return pack({"ok": True, "drift": gw.drift_report()})
        return pack({"ok": False, "error": f"unknown op {op!r}"})
    except ProtocolError as exc:
        return pack(
            {
                "ok": False,
                "protocol": [exc.status, exc.message, exc.reason, exc.headers],
            }
        )
    except Exception as exc:
        log.exception("monitor process: %s failed", op)
        return pack({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


class _Headers(dict[str, str]):
    """Forwarded request headers, looked up case-insensitively."""

    def __init__(self, items: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in items.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


# -- the serving side -------------------------------------------------------------------------
class MonitorProcess:
    """The serving process's handle on its monitor process (module docstring).

    Raises
    ------
    RuntimeError
        The monitor process did not start (its error is in the message).
    """

    def __init__(self, spec: ChildSpec) -> None:
        self._spec = spec
        self._send_lock = threading.Lock()  # one writer on the pipe at a time
        self._call_lock = threading.Lock()  # one call awaiting its answer at a time
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_lock = threading.Lock()
        self._stopped = threading.Event()
        self.failed = False
        #: Times a monitor process that died was replaced.
        self.restarts = 0
        self._next_restart = 0.0
        self._start()
        self._sender = threading.Thread(target=self._send_loop, name="monitor-sender", daemon=True)
        self._sender.start()

    def _start(self) -> None:
        # spawn, not fork: the serving process has loaded torch and may run threads,
        # neither of which survives a fork reliably; the child needs only NumPy.
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=child_main, args=(child_conn, self._spec), name="tripwire-monitor", daemon=True
        )
        self._proc.start()
        child_conn.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self._proc.kill()
            raise RuntimeError("the monitor process did not start in time")
        try:
            head, _ = unpack(self._conn.recv_bytes())
        except (EOFError, OSError):
            raise RuntimeError("the monitor process exited at start") from None
        if not head.get("ok"):
            self._proc.join(timeout=5)
            raise RuntimeError(f"the monitor process failed at start: {head.get('error')}")

    def _restart(self) -> None:
        """Replace a monitor process that died. Client states come back as last written
        (alerts at once, counts by the write-behind pass: at most its interval of counts
        is lost); requests answered meanwhile were not watched (counted as errors)."""
        with self._call_lock, self._send_lock:
            self._conn.close()
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
            with self._pending_lock:
                self._pending, self._pending_bytes = [], 0
            try:
                self._start()
            except RuntimeError as exc:
                self._next_restart = time.monotonic() + RESTART_BACKOFF_S
                log.error("cannot restart the monitor process (%s); retrying", exc)
                return
            self.failed = False
            self.restarts += 1
            log.warning("the monitor process was restarted; requests are watched again")

    @property
    def pid(self) -> int | None:
        """The monitor process's id."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the monitor process runs and its pipe works."""
        return not self.failed and self._proc.is_alive()

    def _send(self, *msgs: bytes) -> None:
        """Write what is pending, then ``msgs``, as one message (order kept)."""
        try:
            with self._send_lock:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                    self._pending_bytes = 0
                batch.extend(msgs)
                if batch:
                    self._conn.send_bytes(join_messages(batch))
        except (OSError, ValueError) as exc:
            if not self.failed:
                log.error("the monitor process is gone (%s): requests are no longer watched", exc)
            self.failed = True
            raise

    def _send_loop(self) -> None:
        while not self._stopped.wait(SEND_INTERVAL_S):
            if self.failed or not self._proc.is_alive():
                if not self.failed:
                    log.error("the monitor process is gone: requests are no longer watched")
                    self.failed = True
                if time.monotonic() >= self._next_restart and not self._stopped.is_set():
                    self._restart()
                continue
            if self._pending:
                with contextlib.suppress(OSError, ValueError):  # marked failed by _send
                    self._send()

    def served(
        self,
        client: str,
        t: float,
        x: npt.NDArray[np.float32],
        probs: npt.NDArray[np.float32],
        trigger: list[Observation] | None,
        logits: npt.NDArray[np.float32] | None = None,
        features: npt.NDArray[np.float32] | None = None,
    ) -> bool:
        """Hand a request answered with the model's own ``probs`` (observe mode) to the
        monitor process, before its response goes; ``False`` once the monitor process is
        gone (logged once, when it was found).

        ``trigger``: the trigger check's findings, where this process ran it; ``None``
        where the monitor process runs it on ``logits`` and ``features``."""
        if self.failed:
            return False
        header = {
            "op": "served",
            "client": client,
            "t": t,
            "trigger": None if trigger is None else [o.to_dict() for o in trigger],
        }
        named = {"x": x, "probs": probs}
        if logits is not None:
            named["logits"] = logits
        if features is not None:
            named["features"] = features
        header["names"] = list(named)
        msg = pack(header, tuple(named.values()))
        with self._pending_lock:
            self._pending.append(msg)
            self._pending_bytes += len(msg)
            full = len(self._pending) >= MAX_PENDING or self._pending_bytes >= MAX_PENDING_BYTES
        if full:  # the sender fell behind: this request thread writes (and may wait)
            try:
                self._send()
            except (OSError, ValueError):
                return False
        return True

    def call(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[npt.NDArray[Any]]]:
        """Run ``op`` in the monitor process after every request handed over before it.

        Raises
        ------
        ProtocolError
            What the admin API raised there, or 503 when the monitor process is gone.
        """
        if not self.alive:
            raise ProtocolError(503, "the monitor process is not running", "monitor_down")
        with self._call_lock:
            try:
                self._send(pack({"op": op, **fields}))
                if not self._conn.poll(CALL_TIMEOUT_S):
                    raise ProtocolError(503, "the monitor process did not answer", "monitor_down")
                head, arrays = unpack(self._conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                self.failed = True
                raise ProtocolError(
                    503, "the monitor process is not running", "monitor_down"
                ) from None
        if head.get("ok"):
            return head, arrays
        if "protocol" in head:
            status, message, reason, headers = head["protocol"]
            raise ProtocolError(int(status), str(message), str(reason), dict(headers or {}))
        raise RuntimeError(f"monitor process: {head.get('error')}")

    def stop(self, timeout: float = 30.0) -> None:
        """Let the monitor process write every state and what is queued, then end it."""
        self._stopped.set()
        if self.alive:
            # A monitor process that dies meanwhile is joined (or killed) below.
            with self._call_lock, contextlib.suppress(EOFError, OSError, ValueError):
                self._send(pack({"op": "stop"}))
                if self._conn.poll(timeout):
                    self._conn.recv_bytes()
        self._proc.join(timeout=timeout)
        if self._proc.is_alive():
            log.error("the monitor process did not stop in %.0f s; killing it", timeout)
            self._proc.kill()
            self._proc.join(timeout=5)
        self.failed = True
        self._conn.close()


__all__ = ["ChildSpec", "MonitorProcess", "observation_from_dict", "pack", "unpack"]
