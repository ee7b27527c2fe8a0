"""Per-client records (monitor state and meta) between the gateway and its store.

Two policies behind one interface:

- **shared store** (Redis, several replicas): every request loads the client's state
  from the store and writes it back under the client's lock, so that all replicas see
  one view of each client;
- **owned store** (SQLite, one process): decoded states stay in memory (an LRU of
  ``max_cached`` clients) and are written back every ``flush_interval_s`` seconds by a
  background thread, and at once whenever the client's record changes in a way others
  read (an alert, a timeline entry, an admin action). A client state is tens of
  kilobytes; writing it at every request would cost more than the model's inference.
  A clean shutdown flushes everything; a crash loses at most the last interval of
  counts (never an alert: alerts are written before the response).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from tripwire.detectors.extraction.base import ClientState, ExtractionMonitor
from tripwire.errors import InputError
from tripwire.gateway.store import Store

log = logging.getLogger("tripwire.gateway")


@dataclass
class Record:
    """One client's decoded state (``None`` before its first monitored query) and meta."""

    state: ClientState | None
    meta: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False


class ClientRecords:
    """Load and save client records (see the module docstring).

    Parameters
    ----------
    store
        The store.
    monitor
        Decodes and encodes states.
    cache
        Keep decoded states in memory with write-behind (only for a store this process
        owns alone).
    flush_interval_s
        Seconds between write-behind passes.
    max_cached
        Clients kept in memory at most (clean ones are evicted, least recent first).
    on_over_budget
        Called with the size of a state larger than the monitor's budget.
    """

    def __init__(
        self,
        store: Store,
        monitor: ExtractionMonitor,
        *,
        cache: bool,
        flush_interval_s: float = 1.0,
        max_cached: int = 10000,
        on_over_budget: Any = None,
    ) -> None:
        self.store = store
        self.monitor = monitor
        self.cache = cache
        self.flush_interval_s = flush_interval_s
        self.max_cached = max_cached
        self.on_over_budget = on_over_budget
        self._entries: OrderedDict[str, Record] = OrderedDict()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if cache:
            self._thread = threading.Thread(target=self._flusher, name="state-flush", daemon=True)
            self._thread.start()

    def lock(self, client: str) -> Any:
        """The client's lock (hold it around :meth:`load` ... :meth:`save`)."""
        return self.store.lock(client)

    def _decode(self, client: str) -> Record:
        raw, meta = self.store.get(client)
        if not raw:
            return Record(None, meta)
        try:
            return Record(self.monitor.loads(raw), meta)
        except (InputError, ValueError) as exc:
            # A state this monitor cannot read (written by another tripwire version or
            # monitor configuration): the client starts a new detector state; its counts,
            # alerts and timeline (the meta) are kept. Failing here would silence the
            # client's monitoring on every request.
            log.warning(
                "client %r: stored detector state unreadable (%s); starting anew", client, exc
            )
            meta = dict(meta)
            meta["state_reset"] = int(meta.get("state_reset", 0)) + 1
            # The new state counts from zero; the client's cumulative count goes on.
            meta["query_offset"] = int(meta.get("query_count", 0))
            return Record(None, meta)

    def load(self, client: str) -> Record:
        """The client's record (a new one if unknown); hold the client's lock."""
        if not self.cache:
            return self._decode(client)
        with self._mutex:
            rec = self._entries.get(client)
            if rec is not None:
                self._entries.move_to_end(client)
                return rec
        rec = self._decode(client)
        with self._mutex:
            self._entries[client] = rec
            self._evict()
        return rec

    def peek(self, client: str) -> Record:
        """The client's record for reading, without the lock (may lag a request)."""
        if self.cache:
            with self._mutex:
                rec = self._entries.get(client)
            if rec is not None:
                return rec
        return self._decode(client)

    def save(self, client: str, rec: Record, *, now: bool) -> None:
        """Store ``rec`` now (always for a shared store) or at the next flush."""
        rec.dirty = True
        if now or not self.cache:
            self._write(client, rec)

    def _write(self, client: str, rec: Record) -> None:
        data = None if rec.state is None else self.monitor.dumps(rec.state)
        if data is not None and len(data) > self.monitor.state_budget:
            log.error("a client state of %d bytes exceeds the budget", len(data))
            if self.on_over_budget is not None:
                self.on_over_budget(len(data))
        self.store.put(client, data, dict(rec.meta))
        rec.dirty = False

    def forget(self, client: str) -> None:
        """Drop the client's cached record (after the store's copy was cleared)."""
        with self._mutex:
            self._entries.pop(client, None)

    def _evict(self) -> None:
        excess = len(self._entries) - self.max_cached
        if excess <= 0:
            return
        for c in [c for c, r in self._entries.items() if not r.dirty][:excess]:
            del self._entries[c]

    def flush(self) -> None:
        """Write every dirty record now."""
        if not self.cache:
            return
        with self._mutex:
            dirty = [c for c, r in self._entries.items() if r.dirty]
        for client in dirty:
            with self.store.lock(client):
                with self._mutex:
                    rec = self._entries.get(client)
                if rec is not None and rec.dirty:
                    self._write(client, rec)

    def _flusher(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:
                log.exception("writing client states failed")

    def close(self) -> None:
        """Stop the flusher and write what is dirty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


__all__ = ["ClientRecords", "Record"]
