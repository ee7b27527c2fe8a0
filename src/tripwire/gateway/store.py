"""Where the gateway keeps what must outlive a request: per-client state, alerts, logs.

Two implementations of one :class:`Store` protocol:

- :class:`SQLiteStore` (``sqlite:PATH``, the default): one file, WAL journal, one
  process; per-client locks are in-process (striped, so their number is bounded).
- :class:`RedisStore` (``redis://HOST:PORT/DB``, extra ``gateway-redis``): for several
  replicas behind a load balancer. Each client's read-observe-write runs under a Redis
  lock named after the client, so replicas share one view of every client.

A client's record is its monitor state (opaque bytes, bounded by the monitor's budget)
and a small JSON ``meta`` (counts, worst severity, last scores, allow-list flag).
Nothing here unpickles: states are the monitor's bytes, arrays in the query log are
``np.save`` without pickles, compressed with zlib, or (for float32 images that are
exactly 8-bit values over 255, what most image clients send) their 8-bit codes, which
decode to the same bits.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tripwire.errors import InputError, MissingDependencyError

#: Payloads smaller than this stay uncompressed (a few class probabilities: zlib's
#: per-call cost buys nothing there).
_COMPRESS_MIN = 256
_NPY_MAGIC = b"\x93NUMPY"
#: The 8-bit form of a float32 array (neither ``.npy`` nor a zlib stream starts so).
_Q8_MAGIC = b"TWQ8"
_F255 = np.float32(255.0)


@functools.lru_cache(maxsize=64)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    # The header alone, as np.save writes it, without materialising an array of ``shape``.
    d = np.lib.format.header_data_from_array_1_0(np.empty(0, dtype=np.dtype(dtype)))
    d["shape"] = shape
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


def _as_8bit(a: npt.NDArray[Any]) -> npt.NDArray[np.uint8] | None:
    """``a``'s 8-bit codes where ``a`` (float32) is exactly ``code / 255`` bit for bit,
    else ``None``."""
    with np.errstate(invalid="ignore", over="ignore"):
        # Out of range or not finite wraps or garbles the code: the check below fails.
        codes = np.rint(a * _F255).astype(np.uint8)
    # Bitwise, not ==: -0.0 or a value one ulp off must take the float form.
    if not ((codes / _F255).view(np.uint32) == a.view(np.uint32)).all():
        return None
    return codes


def encode_array(arr: npt.NDArray[Any]) -> bytes:
    """An array as ``.npy`` bytes (no pickle), zlib-compressed unless small; a float32
    array of 8-bit values over 255 as its raw 8-bit codes (lossless, a quarter of the
    bytes, and several times cheaper than compressing the floats).

    The query log encodes two arrays per request: the ``.npy`` header is cached per
    dtype and shape instead of written by ``np.save`` each time.
    """
    a = np.ascontiguousarray(arr)
    if a.dtype.hasobject:
        raise ValueError("object arrays are not stored")
    if a.dtype == np.float32 and a.nbytes >= _COMPRESS_MIN and a.ndim < 256:
        codes = _as_8bit(a)
        if codes is not None:
            # Not compressed: the codes are already a quarter of the bytes, and zlib
            # would cost the monitor process more than everything else here.
            return _Q8_MAGIC + struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape) + codes.tobytes()
    raw = _npy_header(a.dtype.str, a.shape) + a.tobytes()
    return zlib.compress(raw, 1) if len(raw) >= _COMPRESS_MIN else raw


def decode_array(data: bytes) -> npt.NDArray[Any]:
    """The inverse of :func:`encode_array` (any of its forms); refuses pickled object
    arrays.

    Raises
    ------
    ValueError
        Bytes that are none of the forms (or a truncated one).
    """
    if data[:4] == _Q8_MAGIC:
        (ndim,) = struct.unpack_from("<B", data, 4)
        shape = struct.unpack_from(f"<{ndim}I", data, 5)
        codes = np.frombuffer(data, dtype=np.uint8, offset=5 + 4 * ndim)
        if codes.size != int(np.prod(shape)):
            raise ValueError("an 8-bit payload whose size does not match its shape")
        return np.asarray((codes / _F255).reshape(shape), dtype=np.float32)
    raw = data if data[:6] == _NPY_MAGIC else zlib.decompress(data)
    return np.asarray(np.load(io.BytesIO(raw), allow_pickle=False))


@dataclass
class QueryRecord:
    """One answered (or refused) request in the query log."""

    client: str
    t: float
    meta: dict[str, Any]
    input: bytes | None = None
    output: bytes | None = None

    def to_dict(self, *, payloads: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"client": self.client, "t": self.t, **self.meta}
        if payloads:
            out["input"] = None if self.input is None else decode_array(self.input).tolist()
            out["output"] = None if self.output is None else decode_array(self.output).tolist()
        else:
            out["has_payload"] = self.input is not None
        return out


class Store(Protocol):
    """What the gateway needs from storage (see the module docstring).

    ``shared`` says whether other processes write the same store (Redis replicas): the
    gateway then reads and writes each client's state at every request.
    """

    shared: bool

    def lock(self, client: str) -> Any:
        """A context manager that holds ``client``'s lock (across replicas for Redis)."""
        ...

    def get(self, client: str) -> tuple[bytes | None, dict[str, Any]]:
        """The client's state bytes (``None`` if new) and meta (``{}`` if new)."""
        ...

    def put(self, client: str, state: bytes | None, meta: dict[str, Any]) -> None: ...

    def delete_state(self, client: str) -> None:
        """Forget the client's state, meta (except the allow-list flag) and timeline."""
        ...

    def add_alerts(self, alerts: list[dict[str, Any]]) -> None: ...

    def alerts(self) -> list[dict[str, Any]]: ...

    def add_timeline(self, client: str, entries: list[dict[str, Any]], cap: int) -> None: ...

    def timeline(self, client: str) -> list[dict[str, Any]]: ...

    def clients(self, since: float | None = None) -> list[str]:
        """Known clients, those seen at or after ``since`` when given."""
        ...

    def worst_counts(self) -> dict[str, int]:
        """Number of clients (allow-listed left out) per worst severity."""
        ...

    def log_queries(
        self, records: list[QueryRecord], max_bytes: int, retention_s: float
    ) -> None: ...

    def queries(self, client: str, limit: int | None = 100) -> list[QueryRecord]:
        """The client's newest ``limit`` records (all with ``None``), oldest first."""
        ...

    def close(self) -> None: ...


# -- SQLite ---------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client TEXT PRIMARY KEY, state BLOB, meta TEXT NOT NULL,
    worst TEXT, allowed INTEGER NOT NULL DEFAULT 0, last_seen REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY, client TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_client ON timeline (client, id);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY, client TEXT NOT NULL, t REAL NOT NULL, meta TEXT NOT NULL,
    input BLOB, output BLOB, nbytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS queries_client ON queries (client, id);
CREATE INDEX IF NOT EXISTS queries_t ON queries (t);
-- The oldest rows that still hold a payload, without scanning the dropped ones.
CREATE INDEX IF NOT EXISTS queries_payload ON queries (id) WHERE nbytes > 0;
"""

_STRIPES = 64


class SQLiteStore:
    """The default store: one SQLite file (see the module docstring).

    Raises
    ------
    InputError
        A file that cannot be opened or is not a tripwire store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.shared = False
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open the SQLite store ({exc})", self.path) from None
        try:
            # The query log gets its own connection: its batched writes never hold the
            # mutex that serving threads take for client records (WAL lets both work).
            self._qdb = (
                self._db
                if self.path == ":memory:"
                else sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=30
                )
            )
            self._qdb.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open the SQLite store ({exc})", self.path) from None
        self._mutex = threading.RLock()
        self._qmutex = self._mutex if self._qdb is self._db else threading.RLock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._payload_bytes: int | None = None

    @contextmanager
    def lock(self, client: str) -> Iterator[None]:
        with self._stripes[zlib.crc32(client.encode()) % _STRIPES]:
            yield

    def get(self, client: str) -> tuple[bytes | None, dict[str, Any]]:
        with self._mutex:
            row = self._db.execute(
                "SELECT state, meta FROM clients WHERE client = ?", (client,)
            ).fetchone()
        if row is None:
            return None, {}
        return (None if row[0] is None else bytes(row[0])), json.loads(row[1])

    def put(self, client: str, state: bytes | None, meta: dict[str, Any]) -> None:
        with self._mutex:
            self._db.execute(
                "INSERT INTO clients (client, state, meta, worst, allowed, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(client) DO UPDATE SET "
                "state = excluded.state, meta = excluded.meta, worst = excluded.worst, "
                "allowed = excluded.allowed, last_seen = excluded.last_seen",
                (
                    client,
                    state,
                    json.dumps(meta),
                    meta.get("worst"),
                    int(bool(meta.get("allowed"))),
                    float(meta.get("last_seen", 0.0)),
                ),
            )

    def delete_state(self, client: str) -> None:
        with self._mutex:
            _, meta = self.get(client)
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM timeline WHERE client = ?", (client,))
                self._db.execute(
                    "UPDATE clients SET state = NULL, worst = NULL, meta = ? WHERE client = ?",
                    (json.dumps({"allowed": bool(meta.get("allowed"))}), client),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def add_alerts(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        with self._mutex:
            self._db.executemany(
                "INSERT INTO alerts (body) VALUES (?)", [(json.dumps(a),) for a in alerts]
            )

    def alerts(self) -> list[dict[str, Any]]:
        with self._mutex:
            rows = self._db.execute("SELECT body FROM alerts ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_timeline(self, client: str, entries: list[dict[str, Any]], cap: int) -> None:
        if not entries:
            return
        with self._mutex:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO timeline (client, body) VALUES (?, ?)",
                    [(client, json.dumps(e)) for e in entries],
                )
                self._db.execute(
                    "DELETE FROM timeline WHERE client = ? AND id NOT IN "
                    "(SELECT id FROM timeline WHERE client = ? ORDER BY id DESC LIMIT ?)",
                    (client, client, cap),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def timeline(self, client: str) -> list[dict[str, Any]]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT body FROM timeline WHERE client = ? ORDER BY id", (client,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def clients(self, since: float | None = None) -> list[str]:
        with self._mutex:
            if since is None:
                rows = self._db.execute("SELECT client FROM clients ORDER BY client").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT client FROM clients WHERE last_seen >= ? ORDER BY client", (since,)
                ).fetchall()
        return [r[0] for r in rows]

    def worst_counts(self) -> dict[str, int]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT worst, COUNT(*) FROM clients WHERE allowed = 0 AND worst IS NOT NULL "
                "GROUP BY worst"
            ).fetchall()
        return {str(w): int(n) for w, n in rows}

    def log_queries(self, records: list[QueryRecord], max_bytes: int, retention_s: float) -> None:
        if not records:
            return
        rows = [
            (
                r.client,
                r.t,
                json.dumps(r.meta),
                r.input,
                r.output,
                len(r.input or b"") + len(r.output or b""),
            )
            for r in records
        ]
        with self._qmutex:
            self._qdb.execute("BEGIN")
            try:
                self._qdb.executemany(
                    "INSERT INTO queries (client, t, meta, input, output, nbytes) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._qdb.execute("DELETE FROM queries WHERE t < ?", (time.time() - retention_s,))
                if self._payload_bytes is None:
                    self._payload_bytes = int(
                        self._qdb.execute(
                            "SELECT COALESCE(SUM(nbytes), 0) FROM queries"
                        ).fetchone()[0]
                    )
                else:
                    self._payload_bytes += sum(r[5] for r in rows)
                if self._payload_bytes > max_bytes:
                    # Oldest payloads go first; their metadata stays for the timeline.
                    excess = self._payload_bytes - max_bytes
                    drop, freed, after = [], 0, -1
                    # In pages through the partial index: the log may hold millions of
                    # rows, and only the oldest few are dropped per write.
                    while freed < excess:
                        page = self._qdb.execute(
                            "SELECT id, nbytes FROM queries WHERE nbytes > 0 AND id > ? "
                            "ORDER BY id LIMIT 256",
                            (after,),
                        ).fetchall()
                        if not page:
                            break
                        for qid, nb in page:
                            if freed >= excess:
                                break
                            drop.append((qid,))
                            freed += int(nb)
                        after = int(page[-1][0])
                    self._qdb.executemany(
                        "UPDATE queries SET input = NULL, output = NULL, nbytes = 0 WHERE id = ?",
                        drop,
                    )
                    self._payload_bytes -= freed
                self._qdb.execute("COMMIT")
            except BaseException:
                self._qdb.execute("ROLLBACK")
                self._payload_bytes = None
                raise

    def queries(self, client: str, limit: int | None = 100) -> list[QueryRecord]:
        with self._qmutex:
            # SQLite reads a negative LIMIT as no limit.
            rows = self._qdb.execute(
                "SELECT client, t, meta, input, output FROM queries WHERE client = ? "
                "ORDER BY id DESC LIMIT ?",
                (client, -1 if limit is None else limit),
            ).fetchall()
        return [
            QueryRecord(
                client=r[0],
                t=float(r[1]),
                meta=json.loads(r[2]),
                input=None if r[3] is None else bytes(r[3]),
                output=None if r[4] is None else bytes(r[4]),
            )
            for r in reversed(rows)
        ]

    def close(self) -> None:
        with self._mutex, self._qmutex:
            if self._qdb is not self._db:
                self._qdb.close()
            self._db.close()


# -- Redis ----------------------------------------------------------------------------
class RedisStore:
    """The shared store for several replicas (see the module docstring).

    Parameters
    ----------
    url
        ``redis://HOST:PORT/DB``.
    prefix
        Key prefix, so that several gateways can share one Redis.
    lock_timeout
        Seconds a client's lock lives at most (a crashed replica's lock expires).

    Raises
    ------
    MissingDependencyError
        The ``redis`` package is not installed.
    InputError
        The server cannot be reached.
    """

    def __init__(self, url: str, *, prefix: str = "tw", lock_timeout: float = 10.0) -> None:
        try:
            import redis
        except ImportError:
            raise MissingDependencyError("redis", "gateway-redis") from None
        self.url = url
        self.shared = True
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        self._r: Any = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise InputError(f"cannot reach Redis ({exc})", url) from None

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @contextmanager
    def lock(self, client: str) -> Iterator[None]:
        lk = self._r.lock(
            self._k("lock", client), timeout=self.lock_timeout, blocking_timeout=self.lock_timeout
        )
        if not lk.acquire():
            raise TimeoutError(f"could not lock client state within {self.lock_timeout} s")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # an expired lock is already released
                lk.release()

    def get(self, client: str) -> tuple[bytes | None, dict[str, Any]]:
        state, meta = self._r.hmget(self._k("c", client), ["state", "meta"])
        return (state or None), (json.loads(meta) if meta else {})

    def put(self, client: str, state: bytes | None, meta: dict[str, Any]) -> None:
        pipe = self._r.pipeline()
        mapping: dict[str, Any] = {"meta": json.dumps(meta)}
        if state is not None:
            mapping["state"] = state
        else:
            pipe.hdel(self._k("c", client), "state")
        pipe.hset(self._k("c", client), mapping=mapping)
        pipe.zadd(self._k("seen"), {client: float(meta.get("last_seen", 0.0))})
        worst = meta.get("worst")
        if worst and not meta.get("allowed"):
            pipe.hset(self._k("worst"), client, worst)
        else:
            pipe.hdel(self._k("worst"), client)
        pipe.execute()

    def delete_state(self, client: str) -> None:
        _, meta = self.get(client)
        pipe = self._r.pipeline()
        pipe.hdel(self._k("c", client), "state")
        pipe.hset(self._k("c", client), "meta", json.dumps({"allowed": bool(meta.get("allowed"))}))
        pipe.hdel(self._k("worst"), client)
        pipe.delete(self._k("tl", client))
        pipe.execute()

    def add_alerts(self, alerts: list[dict[str, Any]]) -> None:
        if alerts:
            self._r.rpush(self._k("alerts"), *[json.dumps(a) for a in alerts])

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(a) for a in self._r.lrange(self._k("alerts"), 0, -1)]

    def add_timeline(self, client: str, entries: list[dict[str, Any]], cap: int) -> None:
        if not entries:
            return
        pipe = self._r.pipeline()
        pipe.rpush(self._k("tl", client), *[json.dumps(e) for e in entries])
        pipe.ltrim(self._k("tl", client), -cap, -1)
        pipe.execute()

    def timeline(self, client: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self._r.lrange(self._k("tl", client), 0, -1)]

    def clients(self, since: float | None = None) -> list[str]:
        lo = "-inf" if since is None else since
        return sorted(c.decode() for c in self._r.zrangebyscore(self._k("seen"), lo, "+inf"))

    def worst_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for w in self._r.hvals(self._k("worst")):
            counts[w.decode()] = counts.get(w.decode(), 0) + 1
        return counts

    def log_queries(self, records: list[QueryRecord], max_bytes: int, retention_s: float) -> None:
        if not records:
            return
        entries, nbytes = [], 0
        for r in records:
            size = len(r.input or b"") + len(r.output or b"")
            nbytes += size
            entries.append(
                json.dumps(
                    {
                        "client": r.client,
                        "t": r.t,
                        "meta": r.meta,
                        "nbytes": size,
                        "input": None if r.input is None else base64.b64encode(r.input).decode(),
                        "output": None if r.output is None else base64.b64encode(r.output).decode(),
                    }
                )
            )
        key, counter = self._k("queries"), self._k("qbytes")
        pipe = self._r.pipeline()
        pipe.lpush(key, *entries)
        pipe.incrby(counter, nbytes)
        total = int(pipe.execute()[-1])
        # The oldest entries sit at the tail: drop them past retention or the size cap.
        cutoff = time.time() - retention_s
        while True:
            tail = self._r.lindex(key, -1)
            if tail is None:
                break
            entry = json.loads(tail)
            if total <= max_bytes and entry["t"] >= cutoff:
                break
            self._r.rpop(key)
            total = int(self._r.decrby(counter, int(entry["nbytes"])))

    def queries(self, client: str, limit: int | None = 100) -> list[QueryRecord]:
        out: list[QueryRecord] = []
        for raw in self._r.lrange(self._k("queries"), 0, -1):
            e = json.loads(raw)
            if e["client"] != client:
                continue
            out.append(
                QueryRecord(
                    client=e["client"],
                    t=float(e["t"]),
                    meta=e["meta"],
                    input=None if e["input"] is None else base64.b64decode(e["input"]),
                    output=None if e["output"] is None else base64.b64decode(e["output"]),
                )
            )
            if limit is not None and len(out) >= limit:
                break
        return list(reversed(out))

    def close(self) -> None:
        self._r.close()


_TABLES = frozenset({"clients", "alerts", "timeline", "queries"})


def check_sqlite_store(path: str | Path) -> None:
    """Refuse a file that is not an existing tripwire SQLite store, without changing it.

    Raises
    ------
    InputError
        Naming the file: missing, not SQLite, or without the store's tables.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("no such gateway store", p)
    try:
        # Read-only: opening through SQLiteStore would create the tables in any SQLite file.
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"is not a tripwire gateway store ({exc})", p) from None
    missing = sorted(_TABLES - names)
    if missing:
        raise InputError(f"is not a tripwire gateway store (no table {', '.join(missing)})", p)


def open_store(spec: str, *, existing: bool = False) -> Store:
    """A store from ``sqlite:PATH`` or ``redis://HOST:PORT/DB``.

    With ``existing``, a SQLite file must already be a tripwire store (for readers such
    as forensics, which must not create or alter files).

    Raises
    ------
    InputError
        Any other form; with ``existing``, a file that is not a store.
    """
    if spec.startswith("sqlite:"):
        path = spec[len("sqlite:") :]
        if not path:
            raise InputError("sqlite: needs a path (sqlite:PATH)", spec)
        if existing:
            check_sqlite_store(path)
        return SQLiteStore(path)
    if spec.startswith(("redis://", "rediss://")):
        return RedisStore(spec)
    raise InputError("the store must be sqlite:PATH or redis://HOST:PORT/DB", spec)


def store_spec(store: Any) -> dict[str, Any]:
    """What reopens ``store`` in another process (:func:`open_spec`).

    Raises
    ------
    ValueError
        A store of another kind (only SQLite and Redis stores can be reopened).
    """
    if isinstance(store, SQLiteStore):
        return {"kind": "sqlite", "path": store.path}
    if isinstance(store, RedisStore):
        return {
            "kind": "redis",
            "url": store.url,
            "prefix": store.prefix,
            "lock_timeout": store.lock_timeout,
        }
    raise ValueError(f"a {type(store).__name__} cannot be opened in another process")


def open_spec(spec: dict[str, Any]) -> Store:
    """The store that :func:`store_spec` describes, opened in this process."""
    if spec["kind"] == "sqlite":
        return SQLiteStore(spec["path"])
    return RedisStore(spec["url"], prefix=spec["prefix"], lock_timeout=spec["lock_timeout"])


__all__ = [
    "QueryRecord",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "check_sqlite_store",
    "decode_array",
    "encode_array",
    "open_spec",
    "open_store",
    "store_spec",
]
