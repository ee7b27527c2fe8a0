"""The model registry: content-hashed versions, lineage, scan-gated promotion, rollback.

A registry is one SQLite file (default ``.tripwire/registry.db``) and, beside it, a
folder ``<name>.files/`` that holds the registry's own copies of every model file,
dataset manifest and scan report, named by their SHA-256. Rollback therefore works
even when the original files are gone, and the same file is stored once.

- **versions**: a model file, its SHA-256, where it came from, who added it and when,
  and its lineage: the dataset manifest it was trained on (``tripwire manifest``) and
  the dataset's content hash (from the manifest header or the model's ``.meta.json``).
  The ``.meta.json`` sidecar itself (input shape, classes: what serving the model needs)
  is kept beside the stored model, ``models/<sha256>.meta.json``, so the file
  :meth:`Registry.resolve` returns can be served without being told its input shape.
- **reports**: scan reports attached to a version (``scan-data``, ``scan-model``,
  ...), with their severity counts.
- **aliases**: serving names (``prod``) that point at one version, and their history
  (who moved them, when, from which version, why).

Promotion is gated: a version passes when it has at least one attached report and the
latest report *of each command* has no finding at or above the registry's ``fail_on``
severity (default ``high``). ``rollback`` moves an alias back to the most recent
version that passes, preferring versions the alias served before.

Every write is one SQLite transaction (``BEGIN IMMEDIATE``); a process that dies in
the middle of a promotion leaves the previous alias in place. Files are copied to a
temporary name in the store and renamed into place before the row that names them is
committed, so a row never points at a partial file.

The gateway polls :meth:`Registry.resolve` (or :class:`AliasWatcher`) to pick up a
promotion or rollback without a restart.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tripwire.errors import InputError, UsageError
from tripwire.reports.findings import Severity

__all__ = [
    "DEFAULT_REGISTRY",
    "AliasWatcher",
    "Gate",
    "PromotionRefusedError",
    "Registry",
    "ReportRecord",
    "Version",
    "registry_path",
    "resolve",
]

#: Where the registry lives when neither ``--registry`` nor ``TRIPWIRE_REGISTRY`` says.
DEFAULT_REGISTRY = Path(".tripwire") / "registry.db"
#: Environment variable naming the registry (the configuration the gateway shares).
REGISTRY_ENV = "TRIPWIRE_REGISTRY"
SCHEMA_VERSION = 1
#: Largest scan report attached (they carry per-sample scores).
MAX_REPORT_BYTES = 256 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    original_path TEXT,
    size INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    added_by TEXT NOT NULL,
    dataset_sha256 TEXT,
    manifest_sha256 TEXT,
    manifest_file TEXT,
    meta TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    sha256 TEXT NOT NULL,
    command TEXT NOT NULL,
    file TEXT NOT NULL,
    generated_at TEXT NOT NULL,
    attached_at TEXT NOT NULL,
    attached_by TEXT NOT NULL,
    findings INTEGER NOT NULL,
    severity_counts TEXT NOT NULL,
    dataset_sha256 TEXT,
    UNIQUE (version_id, sha256)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY,
    alias TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    previous_id INTEGER REFERENCES versions(id),
    action TEXT NOT NULL,
    at TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
"""


def registry_path(arg: str | os.PathLike[str] | None = None) -> Path:
    """The registry file: ``arg``, else ``$TRIPWIRE_REGISTRY``, else ``.tripwire/registry.db``."""
    if arg is not None and str(arg).strip():
        return Path(arg)
    env = os.environ.get(REGISTRY_ENV, "").strip()
    return Path(env) if env else DEFAULT_REGISTRY


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _who(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON documents (NaN, which never equals itself, included)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ReportRecord:
    """A scan report attached to a version."""

    id: int
    version_id: int
    sha256: str
    command: str
    file: str
    generated_at: str
    attached_at: str
    attached_by: str
    findings: int
    severity_counts: dict[str, int]
    dataset_sha256: str | None

    def fails(self, fail_on: Severity | str) -> bool:
        """Whether the report has a finding at or above ``fail_on``."""
        threshold = Severity.parse(fail_on)
        return any(
            n > 0 and Severity.parse(s).at_least(threshold) for s, n in self.severity_counts.items()
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """Whether a version may be promoted, and why."""

    passed: bool
    reason: str
    latest: tuple[ReportRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "latest_reports": [r.id for r in self.latest],
        }


@dataclass(frozen=True)
class Version:
    """One registered model version."""

    id: int
    sha256: str
    name: str
    file: str
    original_path: str | None
    size: int
    added_at: str
    added_by: str
    dataset_sha256: str | None
    manifest_sha256: str | None
    manifest_file: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def label(self) -> str:
        """``v<id>``, how people refer to it."""
        return f"v{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.label, **asdict(self)}


class PromotionRefusedError(UsageError):
    """The version's scans do not pass the registry's gate."""


class Registry:
    """A model registry stored in one SQLite file.

    Parameters
    ----------
    path
        The SQLite file; created (with its folder) on the first write.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.store = self.path.with_name(self.path.name.rsplit(".", 1)[0] + ".files")

    # --- connection ------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise InputError(
                "no registry here; add a model first (tripwire registry add)", self.path
            )
        if self.path.exists() and self.path.is_dir():
            raise InputError("is a directory, not a registry file", self.path)
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open the registry ({exc})", self.path) from None
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys = ON")
            if write:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
                if tables and "settings" not in tables:
                    raise InputError("is an SQLite file but not a tripwire registry", self.path)
                con.execute("PRAGMA journal_mode = WAL")
                # executescript commits first, so the schema goes in before the transaction;
                # every statement is CREATE ... IF NOT EXISTS.
                con.executescript(_SCHEMA)
                con.execute("BEGIN IMMEDIATE")
                self._check_schema(con, create=True)
            else:
                self._check_schema(con, create=False)
            yield con
            if write:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise InputError(f"not a usable registry database ({exc})", self.path) from None
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _check_schema(self, con: sqlite3.Connection, *, create: bool) -> None:
        try:
            row = con.execute("SELECT value FROM settings WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            raise InputError("is not a tripwire registry", self.path) from None
        if row is None:
            if not create:
                raise InputError("is not a tripwire registry", self.path)
            con.execute(
                "INSERT INTO settings VALUES ('schema_version', ?), ('fail_on', 'high')",
                (str(SCHEMA_VERSION),),
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise InputError(f"registry schema {row[0]} is not supported", self.path)

    def _store_file(self, src: Path, kind: str, sha: str, suffix: str) -> str:
        """Copy ``src`` into the store under its hash; returns the path relative to it."""
        rel = f"{kind}/{sha}{suffix}"
        dest = self.store / rel
        if dest.exists() and _sha256_file(dest) == sha:
            return rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            if _sha256_file(Path(tmp)) != sha:
                raise InputError("changed while it was being copied", src)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return rel

    # --- settings --------------------------------------------------------------------

    def fail_on(self) -> Severity:
        """The severity at or above which a report blocks promotion."""
        with self._connect(write=False) as con:
            row = con.execute("SELECT value FROM settings WHERE key = 'fail_on'").fetchone()
        return Severity.parse(row[0] if row else "high")

    def set_fail_on(self, severity: Severity | str) -> None:
        """Change the registry's gate severity."""
        sev = Severity.parse(severity)
        with self._connect(write=True) as con:
            con.execute("INSERT OR REPLACE INTO settings VALUES ('fail_on', ?)", (sev.value,))

    # --- versions --------------------------------------------------------------------

    def add(
        self,
        model: str | os.PathLike[str],
        *,
        manifest: str | os.PathLike[str] | None = None,
        name: str | None = None,
        by: str | None = None,
        note: str = "",
    ) -> tuple[Version, bool]:
        """Register a model file (idempotent: the same bytes are the same version).

        Parameters
        ----------
        model
            The model file. Its ``.meta.json`` sidecar (written by ``tripwire train``),
            if present, is recorded as metadata.
        manifest
            The dataset manifest (``tripwire manifest``) the model was trained on.
        name
            A readable name; the file's name by default.
        by
            Who adds it; the login name by default.
        note
            Free text.

        Returns
        -------
        (Version, bool)
            The version and whether it is new.

        Raises
        ------
        InputError
            Unreadable files, or a manifest that describes other data than the one
            the model's metadata says it was trained on.
        """
        src = Path(model)
        if not src.is_file():
            raise InputError("no such model file", src)
        sha = _sha256_file(src)
        meta, meta_path = self._read_meta(src)
        dataset_sha = (
            meta.get("dataset", {}).get("sha256") if isinstance(meta.get("dataset"), dict) else None
        )
        man_sha = man_rel = None
        if manifest is not None:
            from tripwire.ingest import read_manifest

            mpath = Path(manifest)
            m_dataset = read_manifest(mpath).dataset.sha256  # validates the whole file
            if dataset_sha and m_dataset != dataset_sha:
                raise InputError(
                    f"describes dataset {m_dataset[:12]}, but the model's metadata says it was "
                    f"trained on {dataset_sha[:12]}",
                    mpath,
                )
            dataset_sha = m_dataset
            man_sha = _sha256_file(mpath)
        with self._connect(write=True) as con:
            row = con.execute("SELECT * FROM versions WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                old = self._version(row)
                # A version registered before sidecars were kept gets its sidecar now.
                same = _same_json(meta, old.meta)
                self._store_meta(old.file, old.meta, meta_path if same else None)
                return old, False
            rel = self._store_file(src, "models", sha, src.suffix or ".bin")
            self._store_meta(rel, meta, meta_path)
            if manifest is not None and man_sha is not None:
                man_rel = self._store_file(Path(manifest), "manifests", man_sha, ".jsonl")
            cur = con.execute(
                "INSERT INTO versions (sha256, name, file, original_path, size, added_at, "
                "added_by, dataset_sha256, manifest_sha256, manifest_file, meta, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sha,
                    name or src.name,
                    rel,
                    str(src.resolve()),
                    src.stat().st_size,
                    _now(),
                    _who(by),
                    dataset_sha,
                    man_sha,
                    man_rel,
                    json.dumps(meta, sort_keys=True),
                    note,
                ),
            )
            new = con.execute("SELECT * FROM versions WHERE id = ?", (cur.lastrowid,)).fetchone()
        return self._version(new), True

    @staticmethod
    def _read_meta(src: Path) -> tuple[dict[str, Any], Path | None]:
        meta_path = src.with_name(src.name + ".meta.json")
        if not meta_path.is_file():
            meta_path = src.with_suffix(".meta.json")
        if not meta_path.is_file():
            return {}, None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable model metadata ({exc})", meta_path) from None
        if not isinstance(meta, dict):
            raise InputError("model metadata must be a JSON object", meta_path)
        if meta.get("model_sha256") not in (None, _sha256_file(src)):
            raise InputError("metadata belongs to another model file (sha256 differs)", meta_path)
        return meta, meta_path

    def meta_file_of(self, version: Version) -> Path:
        """Where the registry keeps a version's ``.meta.json``: beside its model file,
        where :func:`tripwire.models.train.metadata_path` looks for it."""
        return self._meta_dest(version.file)

    def _meta_dest(self, model_rel: str) -> Path:
        rel = Path(model_rel)
        return self.store / rel.with_name(rel.name.split(".", 1)[0] + ".meta.json")

    def _store_meta(self, model_rel: str, meta: dict[str, Any], src: Path | None) -> None:
        """Keep a model's metadata beside its stored copy (temporary name, then rename,
        like every stored file): the sidecar's own bytes when given, else ``meta``.

        Runs inside the write transaction that records the version, before it commits:
        a failure here leaves no row, and an existing version is never altered.
        """
        if not meta:
            return
        dest = self._meta_dest(model_rel)
        if dest.is_file():
            with contextlib.suppress(OSError, ValueError):
                if _same_json(json.loads(dest.read_text(encoding="utf-8")), meta):
                    return
        payload = (
            src.read_bytes()
            if src is not None
            else (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            if not _same_json(json.loads(payload), meta):
                raise InputError("changed while it was being registered", src or dest)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _checked_meta(self, v: Version) -> Path | None:
        """The stored sidecar of ``v`` if there is one, after checking that it still says
        what the database recorded (an input shape edited on disk is refused)."""
        path = self.meta_file_of(v)
        if not path.is_file():
            return None
        try:
            ok = _same_json(json.loads(path.read_text(encoding="utf-8")), v.meta)
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"stored metadata of {v.label} does not match the registry", path)
        return path

    def _version(self, row: sqlite3.Row) -> Version:
        data = dict(row)
        data["meta"] = json.loads(data["meta"])
        return Version(**data)

    def _lookup(self, con: sqlite3.Connection, ref: str) -> Version:
        text = str(ref).strip()
        row = None
        if text.lower().startswith("v") and text[1:].isdigit():
            row = con.execute("SELECT * FROM versions WHERE id = ?", (int(text[1:]),)).fetchone()
        elif len(text) >= 6 and all(c in "0123456789abcdef" for c in text.lower()):
            rows = con.execute(
                "SELECT * FROM versions WHERE sha256 LIKE ?", (text.lower() + "%",)
            ).fetchall()
            if len(rows) > 1:
                raise InputError(f"sha256 prefix '{text}' matches {len(rows)} versions", self.path)
            row = rows[0] if rows else None
        if row is None:
            alias = con.execute(
                "SELECT v.* FROM aliases a JOIN versions v ON v.id = a.version_id WHERE a.name = ?",
                (text,),
            ).fetchone()
            row = alias
        if row is None:
            raise InputError(
                f"unknown model version '{text}' (use v<N>, a sha256 prefix or an alias; "
                "see tripwire registry list)",
                self.path,
            )
        return self._version(row)

    def get(self, ref: str) -> Version:
        """A version by ``v<N>``, a SHA-256 prefix (6+ hex digits) or an alias name.

        Raises
        ------
        InputError
            If nothing matches (or a prefix matches several versions).
        """
        with self._connect(write=False) as con:
            return self._lookup(con, ref)

    def versions(self) -> list[Version]:
        """Every version, oldest first."""
        with self._connect(write=False) as con:
            return [self._version(r) for r in con.execute("SELECT * FROM versions ORDER BY id")]

    def file_of(self, version: Version) -> Path:
        """The registry's own copy of a version's model file."""
        return self.store / version.file

    # --- reports ---------------------------------------------------------------------

    def attach(
        self, ref: str, report: str | os.PathLike[str], *, by: str | None = None
    ) -> tuple[ReportRecord, bool]:
        """Attach a tripwire JSON report (a scan of the model or of its data) to a version.

        Returns
        -------
        (ReportRecord, bool)
            The record and whether it is new (the same report twice is kept once).

        Raises
        ------
        InputError
            Unknown version; a file that is not a tripwire report.
        """
        from tripwire.reports import Report

        rpath = Path(report)
        try:
            if rpath.stat().st_size > MAX_REPORT_BYTES:
                raise InputError(f"is larger than {MAX_REPORT_BYTES} bytes", rpath)
            doc = json.loads(rpath.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("no such report file", rpath) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"not a JSON report ({exc})", rpath) from None
        try:
            rep = Report.from_dict(doc)
        except InputError as exc:
            raise InputError(exc.message, rpath) from None
        data_in = rep.inputs.get("data", {})
        data_sha = data_in.get("sha256") if isinstance(data_in.get("sha256"), str) else None
        sha = _sha256_file(rpath)
        with self._connect(write=True) as con:
            v = self._lookup(con, ref)
            row = con.execute(
                "SELECT * FROM reports WHERE version_id = ? AND sha256 = ?", (v.id, sha)
            ).fetchone()
            if row is not None:
                return self._report(row), False
            rel = self._store_file(rpath, "reports", sha, ".json")
            cur = con.execute(
                "INSERT INTO reports (version_id, sha256, command, file, generated_at, "
                "attached_at, attached_by, findings, severity_counts, dataset_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    v.id,
                    sha,
                    rep.command,
                    rel,
                    rep.generated_at,
                    _now(),
                    _who(by),
                    len(rep.findings),
                    json.dumps(rep.severity_counts()),
                    data_sha,
                ),
            )
            new = con.execute("SELECT * FROM reports WHERE id = ?", (cur.lastrowid,)).fetchone()
        return self._report(new), True

    @staticmethod
    def _report(row: sqlite3.Row) -> ReportRecord:
        data = dict(row)
        data["severity_counts"] = json.loads(data["severity_counts"])
        return ReportRecord(**data)

    def reports(self, ref: str) -> list[ReportRecord]:
        """Reports attached to a version, oldest first."""
        with self._connect(write=False) as con:
            v = self._lookup(con, ref)
            return self._reports(con, v.id)

    def _reports(self, con: sqlite3.Connection, version_id: int) -> list[ReportRecord]:
        rows = con.execute(
            "SELECT * FROM reports WHERE version_id = ? ORDER BY id", (version_id,)
        ).fetchall()
        return [self._report(r) for r in rows]

    def _gate(
        self, con: sqlite3.Connection, version_id: int, fail_on: Severity, allow_unscanned: bool
    ) -> Gate:
        latest: dict[str, ReportRecord] = {}
        for r in self._reports(con, version_id):
            latest[r.command] = r  # later attachments replace earlier ones of the command
        if not latest:
            if allow_unscanned:
                return Gate(True, "no scan attached (allowed)")
            return Gate(False, "no scan report attached (tripwire registry attach)")
        failing = [r for r in latest.values() if r.fails(fail_on)]
        if failing:
            detail = "; ".join(
                f"{r.command} report #{r.id} has "
                + ", ".join(
                    f"{n} {s}"
                    for s, n in r.severity_counts.items()
                    if n and Severity.parse(s).at_least(fail_on)
                )
                for r in failing
            )
            return Gate(
                False, f"findings at or above {fail_on.value}: {detail}", tuple(latest.values())
            )
        cmds = ", ".join(sorted(latest))
        return Gate(True, f"latest {cmds} report(s) below {fail_on.value}", tuple(latest.values()))

    def gate(self, ref: str, *, fail_on: Severity | str | None = None) -> Gate:
        """Whether a version passes the promotion gate (see the module docstring)."""
        with self._connect(write=False) as con:
            v = self._lookup(con, ref)
            sev = Severity.parse(fail_on) if fail_on is not None else self._fail_on(con)
            return self._gate(con, v.id, sev, False)

    @staticmethod
    def _fail_on(con: sqlite3.Connection) -> Severity:
        row = con.execute("SELECT value FROM settings WHERE key = 'fail_on'").fetchone()
        return Severity.parse(row[0] if row else "high")

    # --- aliases ---------------------------------------------------------------------

    def promote(
        self,
        ref: str,
        alias: str,
        *,
        fail_on: Severity | str | None = None,
        by: str | None = None,
        allow_unscanned: bool = False,
        reason: str = "",
    ) -> tuple[Version, Version | None]:
        """Point ``alias`` at a version whose scans pass.

        Returns
        -------
        (Version, Version or None)
            The version now served and the one served before.

        Raises
        ------
        PromotionRefusedError
            If the version's latest scans have a finding at or above ``fail_on``
            (the registry's setting by default), or no scan is attached and
            ``allow_unscanned`` is false.
        InputError
            Unknown version; an empty alias.
        """
        alias = _check_alias(alias)
        with self._connect(write=True) as con:
            v = self._lookup(con, ref)
            sev = Severity.parse(fail_on) if fail_on is not None else self._fail_on(con)
            gate = self._gate(con, v.id, sev, allow_unscanned)
            if not gate.passed:
                raise PromotionRefusedError(
                    f"refusing to point '{alias}' at {v.label}: {gate.reason}"
                )
            previous = self._move_alias(con, alias, v, "promote", _who(by), reason or gate.reason)
        return v, previous

    def rollback(
        self,
        alias: str,
        *,
        fail_on: Severity | str | None = None,
        by: str | None = None,
        reason: str = "",
    ) -> tuple[Version, Version]:
        """Move ``alias`` back to the most recent other version whose scans pass.

        Versions the alias served before are tried first, most recent first; then
        every older registered version, newest first.

        Returns
        -------
        (Version, Version)
            The version now served and the one it replaced.

        Raises
        ------
        InputError
            Unknown alias, or no version passes.
        """
        alias = _check_alias(alias)
        with self._connect(write=True) as con:
            current = con.execute(
                "SELECT version_id FROM aliases WHERE name = ?", (alias,)
            ).fetchone()
            if current is None:
                raise InputError(f"unknown alias '{alias}'", self.path)
            cur_id = int(current[0])
            sev = Severity.parse(fail_on) if fail_on is not None else self._fail_on(con)
            history = [
                int(r[0])
                for r in con.execute(
                    "SELECT version_id FROM alias_history WHERE alias = ? ORDER BY id DESC",
                    (alias,),
                )
            ]
            older = [
                int(r[0])
                for r in con.execute(
                    "SELECT id FROM versions WHERE id < ? ORDER BY id DESC", (cur_id,)
                )
            ]
            target = None
            for vid in dict.fromkeys([*history, *older]):
                if vid != cur_id and self._gate(con, vid, sev, False).passed:
                    target = vid
                    break
            if target is None:
                raise InputError(
                    f"no version passes its scans (nothing at or above {sev.value}); "
                    f"'{alias}' stays on v{cur_id}",
                    self.path,
                )
            v = self._version(
                con.execute("SELECT * FROM versions WHERE id = ?", (target,)).fetchone()
            )
            gate = self._gate(con, v.id, sev, False)
            previous = self._move_alias(
                con, alias, v, "rollback", _who(by), reason or f"rollback: {gate.reason}"
            )
        if previous is None:  # pragma: no cover - the alias existed above
            raise RuntimeError("rollback lost the previous alias")
        return v, previous

    def _move_alias(
        self, con: sqlite3.Connection, alias: str, v: Version, action: str, by: str, reason: str
    ) -> Version | None:
        prev_row = con.execute(
            "SELECT v.* FROM aliases a JOIN versions v ON v.id = a.version_id WHERE a.name = ?",
            (alias,),
        ).fetchone()
        at = _now()
        con.execute(
            "INSERT INTO aliases (name, version_id, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET version_id = excluded.version_id, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (alias, v.id, at, by),
        )
        self._record_history(con, alias, v, prev_row, action, at, by, reason)
        return None if prev_row is None else self._version(prev_row)

    @staticmethod
    def _record_history(
        con: sqlite3.Connection,
        alias: str,
        v: Version,
        prev_row: sqlite3.Row | None,
        action: str,
        at: str,
        by: str,
        reason: str,
    ) -> None:
        con.execute(
            "INSERT INTO alias_history (alias, version_id, previous_id, action, at, by, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alias, v.id, None if prev_row is None else prev_row["id"], action, at, by, reason),
        )

    def aliases(self) -> dict[str, dict[str, Any]]:
        """Every alias: its version label, when and by whom it last moved."""
        with self._connect(write=False) as con:
            rows = con.execute("SELECT * FROM aliases ORDER BY name").fetchall()
        return {
            r["name"]: {
                "version": f"v{r['version_id']}",
                "updated_at": r["updated_at"],
                "updated_by": r["updated_by"],
            }
            for r in rows
        }

    def history(self, alias: str | None = None) -> list[dict[str, Any]]:
        """Alias moves, oldest first (of one alias, or of all)."""
        with self._connect(write=False) as con:
            if alias is None:
                rows = con.execute("SELECT * FROM alias_history ORDER BY id").fetchall()
            else:
                rows = con.execute(
                    "SELECT * FROM alias_history WHERE alias = ? ORDER BY id", (alias,)
                ).fetchall()
        return [
            {
                "alias": r["alias"],
                "version": f"v{r['version_id']}",
                "previous": None if r["previous_id"] is None else f"v{r['previous_id']}",
                "action": r["action"],
                "at": r["at"],
                "by": r["by"],
                "reason": r["reason"],
            }
            for r in rows
        ]

    def resolve(self, alias: str) -> Path:
        """The model file an alias serves now (the registry's own copy).

        The version's ``.meta.json``, when it had one, lies beside it
        (:meth:`meta_file_of`). Cheap enough to poll: one indexed read, no lock held.

        Raises
        ------
        InputError
            Unknown alias, or the stored file is missing or altered.
        """
        return self.resolve_version(alias)[0]

    def resolve_version(self, alias: str) -> tuple[Path, Version]:
        """The model file an alias serves now and its :class:`Version` (with ``meta``),
        read together so that they cannot disagree. See :meth:`resolve`."""
        with self._connect(write=False) as con:
            row = con.execute(
                "SELECT v.* FROM aliases a JOIN versions v ON v.id = a.version_id WHERE a.name = ?",
                (alias,),
            ).fetchone()
        if row is None:
            raise InputError(f"unknown alias '{alias}'", self.path)
        v = self._version(row)
        path = self.file_of(v)
        if not path.is_file():
            raise InputError(f"the stored copy of {v.label} is missing", path)
        return path, v

    def describe(self, ref: str) -> dict[str, Any]:
        """Everything about one version: lineage, reports, gate, aliases and their history."""
        with self._connect(write=False) as con:
            v = self._lookup(con, ref)
            reports = self._reports(con, v.id)
            gate = self._gate(con, v.id, self._fail_on(con), False)
            aliases = [
                r[0] for r in con.execute("SELECT name FROM aliases WHERE version_id = ?", (v.id,))
            ]
            moves = con.execute(
                "SELECT * FROM alias_history WHERE version_id = ? ORDER BY id", (v.id,)
            ).fetchall()
        return {
            **v.to_dict(),
            "stored_file": str(self.file_of(v)),
            "meta_stored": str(self.meta_file_of(v)) if self.meta_file_of(v).is_file() else None,
            "manifest_stored": None
            if v.manifest_file is None
            else str(self.store / v.manifest_file),
            "reports": [r.to_dict() for r in reports],
            "gate": gate.to_dict(),
            "aliases": aliases,
            "promotions": [
                {
                    "alias": m["alias"],
                    "action": m["action"],
                    "at": m["at"],
                    "by": m["by"],
                    "reason": m["reason"],
                }
                for m in moves
            ],
        }

    def verify(self) -> list[str]:
        """Check every stored file against its hash; returns one line per problem."""
        problems = []
        for v in self.versions():
            p = self.file_of(v)
            if not p.is_file():
                problems.append(f"{v.label}: stored model file missing ({p})")
            elif _sha256_file(p) != v.sha256:
                problems.append(f"{v.label}: stored model file altered ({p})")
            try:
                self._checked_meta(v)
            except InputError:
                problems.append(f"{v.label}: stored metadata altered ({self.meta_file_of(v)})")
        return problems


def _check_alias(alias: str) -> str:
    text = str(alias).strip()
    if not text or len(text) > 128 or any(c.isspace() for c in text):
        raise InputError("an alias is a non-empty name without spaces", "--alias")
    return text


def resolve(alias: str, registry: str | os.PathLike[str] | None = None) -> Path:
    """The model file ``alias`` serves now, in the registry at ``registry`` (see
    :func:`registry_path`). The gateway polls this to follow promotions and rollbacks."""
    return Registry(registry_path(registry)).resolve(alias)


class AliasWatcher:
    """Follow an alias: :meth:`poll` returns the new model file when the alias moved.

    Parameters
    ----------
    registry
        The registry file.
    alias
        The alias to follow.
    """

    def __init__(self, registry: str | os.PathLike[str], alias: str) -> None:
        self.registry = Registry(registry)
        self.alias = alias
        self.current_: Path | None = None
        #: The version :meth:`poll` last returned (its ``meta`` has the input shape).
        self.version_: Version | None = None

    def poll(self) -> Path | None:
        """The alias's model file if it changed since the last poll (or on the first
        poll), else None. A new file is checked against its SHA-256 before it is returned.

        Raises
        ------
        InputError
            Unknown alias, unreadable registry, or a stored file (model or metadata)
            altered on disk.
        """
        path, version = self.registry.resolve_version(self.alias)
        if path == self.current_:
            return None
        # Hash once per change, when the caller is about to load it: a stored file that
        # was swapped on disk is refused instead of served.
        expected = path.name.split(".", 1)[0]
        if _sha256_file(path) != expected:
            raise InputError("stored model file does not match its sha256; not serving it", path)
        self.registry._checked_meta(version)
        self.current_ = path
        self.version_ = version
        return path
