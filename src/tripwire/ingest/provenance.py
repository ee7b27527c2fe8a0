"""Dataset provenance: record what each sample was when it arrived, and check it later.

``tripwire manifest`` hashes every sample (its stored bytes, dtype and shape included)
and writes one JSON line per sample with its id, hash, label and supplier, after a
header that describes the whole dataset. ``tripwire verify`` compares a dataset with
such a manifest, matching samples by id, and reports what was added, removed,
relabelled or altered since. Hashes are compared exactly, so every difference it
reports is a fact, not a guess; which supplier the changed samples came from is
recorded with them because that is the first question of an incident.

The manifest format (version 1) is JSON lines, UTF-8, ASCII-escaped::

    {"type": "header", "manifest_version": 1, "created_at": "...", "tool": "tripwire",
     "tool_version": "0.1.0", "hash_algorithm": "sha256", "dataset": {"path": ...,
     "split": ..., "samples": N, "shape": [...], "dtype": "uint8", "sha256": "..."}}
    {"sample_id": "train/000000", "sha256": "...", "label": 3, "source": "vendor-a"}
    ...

Manifests may come from anywhere, so :func:`read_manifest` treats them as hostile:
sizes are bounded before anything is parsed and every field is type-checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import tripwire
from tripwire.errors import InputError, UsageError
from tripwire.io.dataset import Dataset
from tripwire.reports.findings import Finding, Severity

#: The manifest format this module writes and the only one it reads.
MANIFEST_VERSION = 1
#: How sample contents are hashed (see :meth:`Dataset.sample_hashes`).
HASH_ALGORITHM = "sha256"
#: Longest manifest line accepted, newline excluded; real lines are a few hundred bytes.
MAX_LINE_BYTES = 64 * 1024
#: Largest manifest accepted: about ten million samples at typical line lengths.
MAX_MANIFEST_BYTES = 1024**3
#: Most sample ids listed as examples in findings evidence.
MAX_EXAMPLES = 20
#: Most other manifest entries listed per sample whose content matches them.
MAX_CONTENT_MATCHES = 5

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ENTRY_FIELDS = ("sample_id", "sha256", "label", "source")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What one sample was when the manifest was made.

    Attributes
    ----------
    sample_id
        The sample's id in the dataset.
    sha256
        sha256 of the sample's stored bytes, 64 lowercase hex digits.
    label
        The sample's label.
    source
        The supplier the sample came from.
    """

    sample_id: str
    sha256: str
    label: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The manifest line of this entry, as a JSON-ready object."""
        return {
            "sample_id": self.sample_id,
            "sha256": self.sha256,
            "label": self.label,
            "source": self.source,
        }


@dataclass(frozen=True)
class DatasetDescription:
    """The dataset a manifest was made from, as its header records it.

    Attributes
    ----------
    path
        Where the data was loaded from, or ``None``.
    split
        ``"train"``/``"test"`` for split-keyed sources, else ``None``.
    samples
        Number of samples (and of manifest entries).
    shape
        Shape of one stored sample.
    dtype
        Storage dtype of the samples, as numpy spells it.
    sha256
        :meth:`Dataset.content_sha256` of the whole dataset (samples, labels, order).
    """

    path: str | None
    split: str | None
    samples: int
    shape: tuple[int, ...]
    dtype: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written in the manifest header."""
        return {
            "path": self.path,
            "split": self.split,
            "samples": self.samples,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Manifest:
    """A dataset's provenance record: a header and one entry per sample, in dataset order.

    Attributes
    ----------
    dataset
        The dataset the manifest was made from.
    entries
        One entry per sample, in the dataset's order.
    created_at
        When the manifest was made, ISO 8601 in UTC.
    tool_version
        The tripwire version that made it.
    manifest_version
        The format version, :data:`MANIFEST_VERSION`.
    hash_algorithm
        How sample contents were hashed, :data:`HASH_ALGORITHM`.
    """

    dataset: DatasetDescription
    entries: tuple[ManifestEntry, ...]
    created_at: str
    tool_version: str
    manifest_version: int = MANIFEST_VERSION
    hash_algorithm: str = HASH_ALGORITHM

    def __len__(self) -> int:
        return len(self.entries)

    def header(self) -> dict[str, Any]:
        """The header line, as a JSON-ready object with ``"type": "header"``."""
        return {
            "type": "header",
            "manifest_version": self.manifest_version,
            "created_at": self.created_at,
            "tool": "tripwire",
            "tool_version": self.tool_version,
            "hash_algorithm": self.hash_algorithm,
            "dataset": self.dataset.to_dict(),
        }


@dataclass(frozen=True)
class SampleChange:
    """One sample that differs between a dataset and its manifest.

    ``old_*`` fields are what the manifest recorded, ``new_*`` what the dataset holds
    now; each is ``None`` where that side has no such sample.

    Attributes
    ----------
    sample_id
        The sample's id.
    index
        Position of the sample in the dataset, or ``None`` for a removed sample.
    old_label, new_label
        The recorded and the current label.
    old_sha256, new_sha256
        The recorded and the current content hash.
    old_source, new_source
        The recorded supplier and the supplier the dataset names now.
    same_content_as
        Other manifest entries (ids, at most :data:`MAX_CONTENT_MATCHES`) whose
        recorded content this sample now has: a copied, moved or swapped sample.
    """

    sample_id: str
    index: int | None
    old_label: int | None
    new_label: int | None
    old_sha256: str | None
    new_sha256: str | None
    old_source: str | None
    new_source: str | None
    same_content_as: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The supplier to blame: the recorded one where known, else the current one."""
        if self.old_source is not None:
            return self.old_source
        return self.new_source if self.new_source is not None else "unknown"

    @property
    def label_changed(self) -> bool:
        """True when both sides have the sample and its label differs."""
        return (
            self.old_label is not None
            and self.new_label is not None
            and self.old_label != self.new_label
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sample_id": self.sample_id,
            "index": self.index,
            "old_label": self.old_label,
            "new_label": self.new_label,
            "old_sha256": self.old_sha256,
            "new_sha256": self.new_sha256,
            "old_source": self.old_source,
            "new_source": self.new_source,
            "source": self.source,
            "label_changed": self.label_changed,
            "same_content_as": list(self.same_content_as),
        }


@dataclass(frozen=True)
class VerifyResult:
    """How a dataset differs from its manifest.

    Attributes
    ----------
    added
        Samples in the dataset whose id the manifest does not have (dataset order).
    removed
        Manifest entries whose id the dataset does not have (manifest order).
    relabelled
        Samples with the recorded content but a different label (dataset order).
    altered
        Samples whose content differs from the record, whether or not their label
        changed too (dataset order; see :attr:`SampleChange.label_changed`).
    unchanged
        Number of samples with the recorded content and label.
    dataset
        The dataset as it is now (:class:`DatasetDescription`).
    manifest
        The dataset as the manifest recorded it.
    format_changed
        Set when the storage dtype or sample shape differs from the record: every
        content hash then differs, which may be re-encoding rather than tampering.
    """

    added: tuple[SampleChange, ...]
    removed: tuple[SampleChange, ...]
    relabelled: tuple[SampleChange, ...]
    altered: tuple[SampleChange, ...]
    unchanged: int
    dataset: DatasetDescription
    manifest: DatasetDescription
    format_changed: str | None = None

    @property
    def ok(self) -> bool:
        """True when the dataset matches its manifest sample for sample."""
        return not (self.added or self.removed or self.relabelled or self.altered)

    def summary(self) -> dict[str, int]:
        """Counts per category."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "relabelled": len(self.relabelled),
            "altered": len(self.altered),
            "unchanged": self.unchanged,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: verdict, counts, both descriptions and every change."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "dataset": self.dataset.to_dict(),
            "manifest": self.manifest.to_dict(),
            "format_changed": self.format_changed,
            "added": [c.to_dict() for c in self.added],
            "removed": [c.to_dict() for c in self.removed],
            "relabelled": [c.to_dict() for c in self.relabelled],
            "altered": [c.to_dict() for c in self.altered],
        }


# --------------------------------------------------------------------------- build


def describe_dataset(ds: Dataset) -> DatasetDescription:
    """The :class:`DatasetDescription` of ``ds`` as it is now."""
    return DatasetDescription(
        path=ds.path,
        split=ds.split,
        samples=len(ds),
        shape=tuple(int(s) for s in ds.x.shape[1:]),
        dtype=str(ds.x.dtype),
        sha256=ds.content_sha256(),
    )


def build_manifest(
    ds: Dataset, source: str | None = None, *, created_at: datetime | None = None
) -> Manifest:
    """Record the content hash, label and supplier of every sample of ``ds``.

    Parameters
    ----------
    ds
        The dataset as received.
    source
        The supplier being recorded (``--source``); it replaces every sample's own
        ``source``. ``None`` keeps the dataset's per-sample sources.
    created_at
        The time to record; now (UTC) by default. Given for reproducible output.

    Returns
    -------
    Manifest
        Entries in the dataset's order.

    Raises
    ------
    UsageError
        If ``source`` is empty or only whitespace.
    """
    if source is not None and not source.strip():
        raise UsageError("the source name must not be empty")
    when = datetime.now(UTC) if created_at is None else created_at
    if when.tzinfo is None:
        # A naive time is ambiguous in a record meant to be read elsewhere; take it as UTC.
        when = when.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = ds.sample_id.tolist()
    labels = ds.y.tolist()
    sources = [source] * len(ds) if source is not None else ds.source.tolist()
    entries = tuple(
        ManifestEntry(sample_id=str(i), sha256=h, label=int(lab), source=str(src))
        for i, h, lab, src in zip(ids, ds.sample_hashes(), labels, sources, strict=True)
    )
    return Manifest(
        dataset=describe_dataset(ds),
        entries=entries,
        created_at=stamp,
        tool_version=tripwire.__version__,
    )


# --------------------------------------------------------------------------- write


def _dump(obj: dict[str, Any]) -> str:
    # ASCII escapes keep any id (even one with lone surrogates from odd file names)
    # encodable and round-trip it exactly; compact separators keep lines short.
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def write_manifest(manifest: Manifest, path: str | Path) -> None:
    """Write ``manifest`` as JSON lines, atomically: header first, then one line per sample.

    Parameters
    ----------
    manifest
        The manifest to write.
    path
        Destination; missing parent directories are created. An existing file is
        replaced only once the new one is complete, so a crash never leaves half a
        manifest behind.

    Raises
    ------
    InputError
        Naming ``path``, if it cannot be written.
    """
    p = Path(path)
    tmp: str | None = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        # Same directory as the target so that os.replace is a rename, never a copy.
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.write(_dump(manifest.header()) + "\n")
            for entry in manifest.entries:
                f.write(_dump(entry.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())
            # mkstemp makes the file private; give it the mode a plain open would.
            os.fchmod(f.fileno(), _target_mode(p))
        os.replace(tmp, p)
        tmp = None
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(f"cannot write the manifest: {reason}", p) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _target_mode(p: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(p).st_mode)
    except OSError:
        return 0o644


# --------------------------------------------------------------------------- read


class _LineError(Exception):
    """A problem with one manifest line; turned into an InputError with the line number.

    ``lineno`` is set where the error is raised ahead of the caller's own count (inside
    the line reader); otherwise the caller's current line is meant.
    """

    def __init__(self, message: str, lineno: int | None = None) -> None:
        self.lineno = lineno
        super().__init__(message)


def read_manifest(
    path: str | Path,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_bytes: int = MAX_MANIFEST_BYTES,
) -> Manifest:
    """Read and validate a manifest written by :func:`write_manifest`.

    Parameters
    ----------
    path
        The manifest file.
    max_line_bytes
        Longest line accepted (newline excluded).
    max_bytes
        Largest file accepted.

    Returns
    -------
    Manifest
        The header and entries, in file order.

    Raises
    ------
    InputError
        Naming the file and, where one is at fault, the line (``"line 17: ..."``):
        a file that cannot be read or is too large, a line that is too long, not
        UTF-8 or not a JSON object, a missing or repeated header, an unknown
        ``manifest_version`` or hash algorithm, a field missing or of the wrong type,
        a malformed sha256, a repeated ``sample_id``, or fewer or more entries than
        the header records.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("no such manifest file", p) from None
    except OSError as e:
        raise InputError(f"cannot read the manifest: {e.strerror or e}", p) from e
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a manifest file", p)
    if not stat.S_ISREG(st.st_mode):
        # Devices and pipes can block or never end; a manifest is a plain file.
        raise InputError("not a regular file", p)
    if st.st_size > max_bytes:
        raise InputError(
            f"the manifest is {st.st_size} bytes, more than the limit of {max_bytes}", p
        )
    lineno = 0
    try:
        with p.open("rb") as f:
            header: Manifest | None = None
            entries: list[ManifestEntry] = []
            first_line: dict[str, int] = {}
            for lineno, obj in _json_lines(f, max_line_bytes=max_line_bytes, max_bytes=max_bytes):
                if header is None:
                    header = _parse_header(obj)
                    continue
                if obj.get("type") == "header":
                    raise _LineError("a second header; the header must be the first line only")
                entry = _parse_entry(obj)
                seen = first_line.get(entry.sample_id)
                if seen is not None:
                    raise _LineError(
                        f"duplicate sample_id {entry.sample_id!r} (first on line {seen})"
                    )
                if len(entries) >= header.dataset.samples:
                    raise _LineError(
                        f"more entries than the {header.dataset.samples} samples the header records"
                    )
                first_line[entry.sample_id] = lineno
                entries.append(entry)
            if header is None:
                lineno = 1
                raise _LineError("missing header: the file is empty")
            if len(entries) != header.dataset.samples:
                lineno += 1
                raise _LineError(
                    f"the manifest ends after {len(entries)} of the {header.dataset.samples} "
                    "entries its header records (truncated?)"
                )
    except _LineError as e:
        raise InputError(f"line {e.lineno or lineno}: {e}", p) from None
    except OSError as e:
        raise InputError(f"cannot read the manifest: {e.strerror or e}", p) from e
    return Manifest(
        dataset=header.dataset,
        entries=tuple(entries),
        created_at=header.created_at,
        tool_version=header.tool_version,
        manifest_version=header.manifest_version,
        hash_algorithm=header.hash_algorithm,
    )


def _json_lines(
    f: IO[bytes], *, max_line_bytes: int, max_bytes: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` per line, bounding sizes before parsing anything.

    Raises :class:`_LineError` carrying its own line number, since the caller has not
    yet seen the line at fault.
    """
    total = 0
    lineno = 0
    while True:
        # Reading one byte past the limit tells an over-long line without reading it all.
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        lineno += 1
        total += len(raw)
        if total > max_bytes:
            # The file grew after it was measured.
            raise _LineError(f"the manifest is larger than the limit of {max_bytes} bytes", lineno)
        terminated = raw.endswith(b"\n")
        body = raw[:-1] if terminated else raw
        if len(body) > max_line_bytes:
            raise _LineError(f"line longer than the limit of {max_line_bytes} bytes", lineno)
        if body.endswith(b"\r"):
            body = body[:-1]
        if not body.strip():
            raise _LineError("empty line", lineno)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _LineError(f"not valid UTF-8 (byte {e.start})", lineno) from None
        try:
            obj = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except _LineError as e:
            raise _LineError(str(e), lineno) from None
        except (ValueError, RecursionError) as e:
            # RecursionError: deeply nested arrays; ValueError covers JSONDecodeError
            # and integers with more digits than Python converts.
            hint = " (the file seems truncated)" if not terminated else ""
            raise _LineError(f"not valid JSON{hint}: {_short(e)}", lineno) from None
        if not isinstance(obj, dict):
            raise _LineError(f"expected a JSON object, got {_json_type(obj)}", lineno)
        yield lineno, obj


def _short(e: BaseException) -> str:
    # JSONDecodeError's own text says "line 1 column 2", which would read as a file line.
    text = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
    text = text or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key means two readers can disagree about a record; refuse it.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _LineError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise _LineError(f"{name} is not valid JSON")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _get(obj: dict[str, Any], key: str, where: str = "") -> Any:
    if key not in obj:
        raise _LineError(f"missing field {where}{key!r}")
    return obj[key]


def _string(obj: dict[str, Any], key: str, where: str = "", *, empty: bool = False) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str):
        raise _LineError(f"field {where}{key!r} must be a string, got {_json_type(value)}")
    if not empty and not value:
        raise _LineError(f"field {where}{key!r} must not be empty")
    return value


def _optional_string(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    value = _get(obj, key, where)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _LineError(f"field {where}{key!r} must be a string or null, got {_json_type(value)}")
    return value


def _count(obj: dict[str, Any], key: str, where: str = "") -> int:
    value = _get(obj, key, where)
    # bool is an int subclass in Python but not a number in a manifest.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _LineError(f"field {where}{key!r} must be an integer, got {_json_type(value)}")
    if value < 0:
        raise _LineError(f"field {where}{key!r} must not be negative, got {value}")
    return value


def _sha256(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = _string(obj, key, where, empty=True)
    if _SHA256_RE.fullmatch(value) is None:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise _LineError(f"field {where}{key!r} must be 64 lowercase hex digits, got {shown!r}")
    return value


def _parse_header(obj: dict[str, Any]) -> Manifest:
    if obj.get("type") != "header":
        raise _LineError(
            'missing header: the first line must be the manifest header {"type": "header", ...}'
        )
    version = _get(obj, "manifest_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _LineError(f"field 'manifest_version' must be an integer, got {_json_type(version)}")
    if version != MANIFEST_VERSION:
        newer = " (written by a newer tripwire?)" if version > MANIFEST_VERSION else ""
        raise _LineError(
            f"unsupported manifest_version {version}{newer}; this tripwire reads "
            f"version {MANIFEST_VERSION}"
        )
    algorithm = _string(obj, "hash_algorithm")
    if algorithm != HASH_ALGORITHM:
        raise _LineError(
            f"unsupported hash_algorithm {algorithm[:40]!r}; expected {HASH_ALGORITHM!r}"
        )
    created_at = _string(obj, "created_at")
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        raise _LineError(
            f"field 'created_at' must be an ISO 8601 time, got {created_at[:40]!r}"
        ) from None
    tool_version = _string(obj, "tool_version")
    ds = _get(obj, "dataset")
    if not isinstance(ds, dict):
        raise _LineError(f"field 'dataset' must be an object, got {_json_type(ds)}")
    where = "dataset."
    shape = _get(ds, "shape", where)
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise _LineError("field 'dataset.shape' must be an array of non-negative integers")
    description = DatasetDescription(
        path=_optional_string(ds, "path", where),
        split=_optional_string(ds, "split", where),
        samples=_count(ds, "samples", where),
        shape=tuple(shape),
        dtype=_string(ds, "dtype", where),
        sha256=_sha256(ds, "sha256", where),
    )
    return Manifest(
        dataset=description,
        entries=(),
        created_at=created_at,
        tool_version=tool_version,
        manifest_version=version,
        hash_algorithm=algorithm,
    )


def _parse_entry(obj: dict[str, Any]) -> ManifestEntry:
    if "type" in obj:
        kind = obj["type"]
        shown = repr(kind[:40]) if isinstance(kind, str) else _json_type(kind)
        raise _LineError(f"unknown record type {shown}; sample entries have no 'type'")
    return ManifestEntry(
        sample_id=_string(obj, "sample_id"),
        sha256=_sha256(obj, "sha256"),
        label=_count(obj, "label"),
        source=_string(obj, "source", empty=True),
    )


# --------------------------------------------------------------------------- verify


def verify_dataset(ds: Dataset, manifest: Manifest) -> VerifyResult:
    """Compare a dataset with its manifest, sample by sample, matching on ``sample_id``.

    Parameters
    ----------
    ds
        The dataset as it is now.
    manifest
        What it was when recorded.

    Returns
    -------
    VerifyResult
        Added, removed, relabelled and altered samples and the unchanged count. Added
        and altered samples whose content equals that of another manifest entry are
        marked (:attr:`SampleChange.same_content_as`): copied or swapped samples.

    Raises
    ------
    InputError
        If the manifest lists a ``sample_id`` twice (only possible for a manifest
        built by hand; :func:`read_manifest` refuses such files).
    """
    recorded: dict[str, ManifestEntry] = {}
    for entry in manifest.entries:
        if entry.sample_id in recorded:
            raise InputError(f"the manifest lists sample_id {entry.sample_id!r} twice")
        recorded[entry.sample_id] = entry

    added: list[SampleChange] = []
    relabelled: list[SampleChange] = []
    altered: list[SampleChange] = []
    unchanged = 0
    present: set[str] = set()
    rows = zip(
        ds.sample_id.tolist(), ds.sample_hashes(), ds.y.tolist(), ds.source.tolist(), strict=True
    )
    for index, (sid, digest, label, src) in enumerate(rows):
        sample_id, new_label, new_source = str(sid), int(label), str(src)
        present.add(sample_id)
        old = recorded.get(sample_id)
        if old is None:
            added.append(
                SampleChange(sample_id, index, None, new_label, None, digest, None, new_source)
            )
            continue
        if old.sha256 == digest and old.label == new_label:
            unchanged += 1
            continue
        change = SampleChange(
            sample_id, index, old.label, new_label, old.sha256, digest, old.source, new_source
        )
        # Content first: an altered sample whose label changed too stays "altered".
        (altered if old.sha256 != digest else relabelled).append(change)
    removed = [
        SampleChange(e.sample_id, None, e.label, None, e.sha256, None, e.source, None)
        for e in manifest.entries
        if e.sample_id not in present
    ]
    if added or altered:
        # Only built when needed: a clean verify of a large dataset should not pay for it.
        index_by_hash = _ids_by_hash(manifest.entries)
        added = _mark_copies(added, index_by_hash)
        altered = _mark_copies(altered, index_by_hash)

    now = describe_dataset(ds)
    then = manifest.dataset
    format_changed = None
    if (now.dtype, now.shape) != (then.dtype, then.shape):
        format_changed = (
            f"samples are stored as {now.dtype} {list(now.shape)} now but were "
            f"{then.dtype} {list(then.shape)} when recorded, so every content hash differs"
        )
    return VerifyResult(
        added=tuple(added),
        removed=tuple(removed),
        relabelled=tuple(relabelled),
        altered=tuple(altered),
        unchanged=unchanged,
        dataset=now,
        manifest=then,
        format_changed=format_changed,
    )


def _ids_by_hash(entries: Iterable[ManifestEntry]) -> dict[str, list[str]]:
    # One more than the cap, so that excluding a sample's own id still leaves the cap.
    out: dict[str, list[str]] = {}
    for e in entries:
        ids = out.setdefault(e.sha256, [])
        if len(ids) <= MAX_CONTENT_MATCHES:
            ids.append(e.sample_id)
    return out


def _mark_copies(
    changes: Sequence[SampleChange], index_by_hash: dict[str, list[str]]
) -> list[SampleChange]:
    out = []
    for c in changes:
        others = [i for i in index_by_hash.get(c.new_sha256 or "", ()) if i != c.sample_id]
        if others:
            c = replace(c, same_content_as=tuple(others[:MAX_CONTENT_MATCHES]))
        out.append(c)
    return out


# --------------------------------------------------------------------------- findings


def verify_findings(result: VerifyResult, artifact: str) -> list[Finding]:
    """Turn a :class:`VerifyResult` into findings, one per non-empty category.

    Parameters
    ----------
    result
        The comparison.
    artifact
        The dataset the findings are about, as the user named it.

    Returns
    -------
    list of Finding
        In the order added (TW001), removed (TW002), relabelled (TW003), altered
        (TW004); empty when the dataset matches its manifest. Confidence is 1.0
        throughout: hashes and labels are compared exactly.
    """
    common = {
        "dataset_sha256": result.dataset.sha256,
        "recorded_dataset_sha256": result.manifest.sha256,
    }
    findings: list[Finding] = []
    if result.added:
        c = result.added
        copies = [x for x in c if x.same_content_as]
        findings.append(
            Finding(
                rule_id="TW001",
                title="Samples added since the manifest",
                message=(
                    f"{_samples(len(c))} in the dataset {_are(len(c))} not in its manifest; "
                    f"from {_sources_text(c)}."
                    + (
                        f" {_samples(len(copies))} {_are(len(copies))} copies of recorded ones."
                        if copies
                        else ""
                    )
                ),
                severity=Severity.MEDIUM,
                confidence=1.0,
                atlas=("AML.T0020",),
                artifact=artifact,
                indices=_indices(c),
                target_class=_single(x.new_label for x in c),
                evidence={
                    **_base_evidence(c),
                    "by_label": _label_counts(x.new_label for x in c),
                    "copies_of_recorded": len(copies),
                    "copy_examples": _copy_examples(copies),
                    **common,
                },
            )
        )
    if result.removed:
        c = result.removed
        findings.append(
            Finding(
                rule_id="TW002",
                title="Samples removed since the manifest",
                message=(
                    f"{_samples(len(c))} listed in the manifest {_are(len(c))} missing from "
                    f"the dataset; recorded from {_sources_text(c)}."
                ),
                severity=Severity.LOW,
                confidence=1.0,
                artifact=artifact,
                target_class=_single(x.old_label for x in c),
                evidence={
                    **_base_evidence(c),
                    # Removals concentrated on one class thin it out: show the spread.
                    "by_label": _label_counts(x.old_label for x in c),
                    **common,
                },
            )
        )
    if result.relabelled:
        c = result.relabelled
        findings.append(
            Finding(
                rule_id="TW003",
                title="Samples relabelled since the manifest",
                message=(
                    f"{_samples(len(c))} {_have(len(c))} the recorded content but a different "
                    f"label ({_label_changes_text(c)}); recorded from {_sources_text(c)}."
                ),
                severity=Severity.HIGH,
                confidence=1.0,
                atlas=("AML.T0020",),
                artifact=artifact,
                indices=_indices(c),
                # Flips that all land on one class are the signature of a targeted attack.
                target_class=_single(x.new_label for x in c),
                evidence={
                    **_base_evidence(c),
                    "label_changes": _label_changes(c),
                    **common,
                },
            )
        )
    if result.altered:
        c = result.altered
        relabelled_too = [x for x in c if x.label_changed]
        copies = [x for x in c if x.same_content_as]
        extra = []
        if relabelled_too:
            extra.append(f"{len(relabelled_too)} also changed label")
        if copies:
            extra.append(f"{len(copies)} now hold another recorded sample's content")
        note = f" ({'; '.join(extra)})" if extra else ""
        fmt = f" Note: {result.format_changed}." if result.format_changed else ""
        findings.append(
            Finding(
                rule_id="TW004",
                title="Samples altered since the manifest",
                message=(
                    f"{_samples(len(c))} no longer match{'es' if len(c) == 1 else ''} the "
                    f"recorded content hash{note}; recorded from {_sources_text(c)}.{fmt}"
                ),
                severity=Severity.HIGH,
                confidence=1.0,
                atlas=("AML.T0020", "AML.T0010.002"),
                artifact=artifact,
                indices=_indices(c),
                target_class=_single(x.new_label for x in c),
                evidence={
                    **_base_evidence(c),
                    "label_also_changed": len(relabelled_too),
                    "label_changes": _label_changes(relabelled_too),
                    "same_content_as_other": len(copies),
                    "copy_examples": _copy_examples(copies),
                    "format_changed": result.format_changed,
                    **common,
                },
            )
        )
    return findings


def _samples(n: int) -> str:
    return f"{n} sample{'' if n == 1 else 's'}"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _have(n: int) -> str:
    return "has" if n == 1 else "have"


def _indices(changes: Sequence[SampleChange]) -> tuple[int, ...]:
    return tuple(sorted(c.index for c in changes if c.index is not None))


def _single(labels: Iterable[int | None]) -> int | None:
    distinct = {lab for lab in labels if lab is not None}
    return distinct.pop() if len(distinct) == 1 else None


def _top(counter: Counter[str]) -> dict[str, int]:
    # Most frequent first, ties by name, so evidence is the same on every run.
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:MAX_EXAMPLES])


def _base_evidence(changes: Sequence[SampleChange]) -> dict[str, Any]:
    by_source = Counter(c.source for c in changes)
    return {
        "count": len(changes),
        "examples": [c.sample_id for c in changes[:MAX_EXAMPLES]],
        # Which supplier the samples came from: the first question of an incident.
        "by_source": _top(by_source),
        "distinct_sources": len(by_source),
    }


def _label_counts(labels: Iterable[int | None]) -> dict[str, int]:
    return _top(Counter(str(lab) for lab in labels if lab is not None))


def _label_changes(changes: Sequence[SampleChange]) -> dict[str, int]:
    return _top(Counter(f"{c.old_label}->{c.new_label}" for c in changes))


def _label_changes_text(changes: Sequence[SampleChange]) -> str:
    ranked = list(_label_changes(changes).items())
    text = ", ".join(f"{k}: {v}" for k, v in ranked[:3])
    return text + (", ..." if len(ranked) > 3 else "")


def _sources_text(changes: Sequence[SampleChange]) -> str:
    counts = Counter(c.source for c in changes)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{name!r} ({n})" for name, n in ranked[:3])
    rest = len(ranked) - 3
    return text + (f" and {rest} more source{'' if rest == 1 else 's'}" if rest > 0 else "")


def _copy_examples(changes: Sequence[SampleChange]) -> dict[str, list[str]]:
    return {c.sample_id: list(c.same_content_as) for c in changes[:MAX_EXAMPLES]}
