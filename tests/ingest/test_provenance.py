"""Dataset provenance: manifests, their reader's defences, and verification."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import tripwire
from tripwire.errors import InputError, UsageError
from tripwire.ingest import (
    MANIFEST_VERSION,
    Manifest,
    build_manifest,
    read_manifest,
    verify_dataset,
    verify_findings,
    write_manifest,
)
from tripwire.ingest.provenance import MAX_LINE_BYTES
from tripwire.io import Dataset, load_dataset, make_dataset
from tripwire.reports.findings import Severity

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture
def small() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=20)
    source = np.array(["vendor-a"] * 10 + ["vendor-b"] * 10)
    return make_dataset(x, y, path="small.npz", classes=["a", "b", "c"], source=source)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("bundled:digits")


@pytest.fixture
def manifest_file(small: Dataset, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.jsonl"
    write_manifest(build_manifest(small, created_at=WHEN), path)
    return path


# ------------------------------------------------------------------------- build/write/read


def test_build_manifest_records_every_sample(small: Dataset) -> None:
    m = build_manifest(small, created_at=WHEN)
    assert len(m) == len(small)
    assert [e.sample_id for e in m.entries] == small.sample_id.tolist()
    assert [e.sha256 for e in m.entries] == small.sample_hashes()
    assert [e.label for e in m.entries] == small.y.tolist()
    assert [e.source for e in m.entries] == small.source.tolist()
    assert m.created_at == "2024-05-06T07:08:09Z"
    assert m.tool_version == tripwire.__version__
    assert m.manifest_version == MANIFEST_VERSION == 1
    assert m.hash_algorithm == "sha256"
    assert m.dataset.samples == 20
    assert m.dataset.shape == (8, 8)
    assert m.dataset.dtype == "uint8"
    assert m.dataset.path == "small.npz"
    assert m.dataset.sha256 == small.content_sha256()


def test_source_overrides_every_sample(small: Dataset) -> None:
    m = build_manifest(small, "acme-labelling", created_at=WHEN)
    assert {e.source for e in m.entries} == {"acme-labelling"}


def test_empty_source_is_refused(small: Dataset) -> None:
    with pytest.raises(UsageError, match="source"):
        build_manifest(small, "  ")


def test_created_at_defaults_to_now_in_utc(small: Dataset) -> None:
    stamp = datetime.fromisoformat(build_manifest(small).created_at)
    assert stamp.tzinfo is not None
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_written_format(small: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "manifest.jsonl"  # parents are created
    write_manifest(build_manifest(small, "vendor-x", created_at=WHEN), path)
    lines = path.read_text(encoding="ascii").splitlines()
    assert len(lines) == 21
    header = json.loads(lines[0])
    assert header["type"] == "header"
    assert header["manifest_version"] == 1
    assert header["hash_algorithm"] == "sha256"
    assert header["tool_version"] == tripwire.__version__
    assert header["dataset"]["sha256"] == small.content_sha256()
    assert header["dataset"]["samples"] == 20
    first = json.loads(lines[1])
    assert first == {
        "sample_id": small.sample_id[0],
        "sha256": small.sample_hashes()[0],
        "label": int(small.y[0]),
        "source": "vendor-x",
    }
    assert [p.name for p in path.parent.iterdir()] == ["manifest.jsonl"]  # no temp left


@pytest.mark.parametrize("name", ["small", "digits"])
def test_round_trip(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    ds: Dataset = request.getfixturevalue(name)
    m = build_manifest(ds, created_at=WHEN)
    path = tmp_path / "m.jsonl"
    write_manifest(m, path)
    assert read_manifest(path) == m
    write_manifest(m, path)  # overwriting an existing manifest works too
    assert read_manifest(path) == m


def test_round_trip_keeps_unusual_ids(tmp_path: Path) -> None:
    x = np.zeros((2, 4, 4), dtype=np.uint8)
    x[1, 0, 0] = 1
    ids = np.array(["caf\u00e9/\u6f22\u5b57.png", 'odd\udcff"\n.png'])
    ds = make_dataset(x, [0, 1], sample_id=ids, source="v\u00e9ndor")
    m = build_manifest(ds, created_at=WHEN)
    write_manifest(m, tmp_path / "m.jsonl")
    assert read_manifest(tmp_path / "m.jsonl") == m


def test_crlf_line_endings_are_accepted(manifest_file: Path) -> None:
    m = read_manifest(manifest_file)
    manifest_file.write_bytes(manifest_file.read_bytes().replace(b"\n", b"\r\n"))
    assert read_manifest(manifest_file) == m


def test_write_failure_names_path_and_keeps_old_file(
    manifest_file: Path, small: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = manifest_file.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(InputError, match="No space left") as err:
        write_manifest(build_manifest(small), manifest_file)
    assert str(err.value).startswith(str(manifest_file))
    assert manifest_file.read_bytes() == before
    assert [p.name for p in manifest_file.parent.iterdir()] == ["manifest.jsonl"]


def test_write_into_a_file_as_directory(small: Dataset, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    target = blocker / "m.jsonl"
    with pytest.raises(InputError) as err:
        write_manifest(build_manifest(small), target)
    assert str(err.value).startswith(f"{target}: cannot write the manifest")


# ------------------------------------------------------------------------- verify


def test_unchanged_data_verifies(small: Dataset) -> None:
    result = verify_dataset(small, build_manifest(small))
    assert result.ok
    assert result.summary() == {
        "added": 0,
        "removed": 0,
        "relabelled": 0,
        "altered": 0,
        "unchanged": 20,
    }
    assert result.format_changed is None
    assert verify_findings(result, "small.npz") == []
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True


def _tampered(ds: Dataset) -> Dataset:
    """Remove sample 3, relabel sample 5, alter one pixel of sample 12, append one."""
    keep = np.array([i for i in range(len(ds)) if i != 3])
    x = ds.x[keep].copy()
    y = ds.y[keep].copy()
    y[4] = (y[4] + 1) % 3  # was sample 5
    x[11, 2, 3] ^= 1  # was sample 12: one pixel, off by one
    new = np.full((1, 8, 8), 7, dtype=np.uint8)
    return dataclasses.replace(
        ds,
        x=np.concatenate([x, new]),
        y=np.concatenate([y, [2]]),
        sample_id=np.concatenate([ds.sample_id[keep], ["extra/000"]]),
        source=np.concatenate([ds.source[keep], ["vendor-c"]]),
    )


def test_each_change_is_detected_exactly(small: Dataset) -> None:
    manifest = build_manifest(small)
    hashes = small.sample_hashes()
    ids = small.sample_id.tolist()
    changed = _tampered(small)
    result = verify_dataset(changed, manifest)

    assert not result.ok
    assert result.summary() == {
        "added": 1,
        "removed": 1,
        "relabelled": 1,
        "altered": 1,
        "unchanged": 17,
    }

    (added,) = result.added
    assert (added.sample_id, added.index, added.new_label) == ("extra/000", 19, 2)
    assert (added.old_label, added.old_sha256, added.old_source) == (None, None, None)
    assert added.new_sha256 == changed.sample_hashes()[19]
    assert added.source == "vendor-c"

    (removed,) = result.removed
    assert (removed.sample_id, removed.index) == (ids[3], None)
    assert (removed.old_label, removed.old_sha256) == (int(small.y[3]), hashes[3])
    assert removed.source == "vendor-a"

    (relabelled,) = result.relabelled
    assert (relabelled.sample_id, relabelled.index) == (ids[5], 4)
    assert relabelled.old_label == int(small.y[5])
    assert relabelled.new_label == (int(small.y[5]) + 1) % 3
    assert relabelled.old_sha256 == relabelled.new_sha256 == hashes[5]
    assert relabelled.source == "vendor-a"

    (altered,) = result.altered
    assert (altered.sample_id, altered.index) == (ids[12], 11)
    assert altered.old_sha256 == hashes[12]
    assert altered.new_sha256 != hashes[12]
    assert not altered.label_changed
    assert altered.source == "vendor-b"
    assert altered.same_content_as == ()

    data = json.loads(json.dumps(result.to_dict()))
    assert data["ok"] is False
    assert data["summary"]["altered"] == 1
    assert data["removed"][0]["index"] is None


def test_findings_per_category(small: Dataset) -> None:
    result = verify_dataset(_tampered(small), build_manifest(small))
    findings = {f.rule_id: f for f in verify_findings(result, "data/small.npz")}
    assert sorted(findings) == ["TW001", "TW002", "TW003", "TW004"]

    expected = {
        "TW001": (Severity.MEDIUM, ("AML.T0020",), (19,), "vendor-c"),
        "TW002": (Severity.LOW, None, (), "vendor-a"),
        "TW003": (Severity.HIGH, ("AML.T0020",), (4,), "vendor-a"),
        "TW004": (Severity.HIGH, ("AML.T0020", "AML.T0010.002"), (11,), "vendor-b"),
    }
    for rule_id, (severity, atlas, indices, source) in expected.items():
        f = findings[rule_id]
        assert f.severity is severity
        assert f.confidence == 1.0
        if atlas is not None:
            assert f.atlas == atlas
        assert f.indices == indices
        assert f.artifact == "data/small.npz"
        assert f.evidence["count"] == 1
        assert f.evidence["by_source"] == {source: 1}
        assert len(f.evidence["examples"]) == 1
        assert f.evidence["dataset_sha256"] == result.dataset.sha256
        assert f.evidence["recorded_dataset_sha256"] == small.content_sha256()
        assert source in f.message
        json.dumps(f.to_dict(), allow_nan=False)

    assert findings["TW001"].target_class == 2
    new_label = (int(small.y[5]) + 1) % 3
    assert findings["TW003"].target_class == new_label
    assert findings["TW003"].evidence["label_changes"] == {f"{int(small.y[5])}->{new_label}": 1}


def test_evidence_lists_are_capped(small: Dataset) -> None:
    manifest = build_manifest(small)
    everything_altered = dataclasses.replace(small, x=small.x ^ np.uint8(1))
    result = verify_dataset(everything_altered, manifest)
    assert len(result.altered) == 20
    (finding,) = verify_findings(result, "small.npz")
    assert finding.evidence["count"] == 20
    assert finding.evidence["by_source"] == {"vendor-a": 10, "vendor-b": 10}
    assert finding.indices == tuple(range(20))

    many = make_dataset(
        np.arange(30 * 4, dtype=np.uint8).reshape(30, 2, 2), np.zeros(30, dtype=int)
    )
    flipped = dataclasses.replace(many, y=np.ones(30, dtype=np.int64))
    (finding,) = verify_findings(verify_dataset(flipped, build_manifest(many)), "many")
    assert finding.evidence["count"] == 30
    assert len(finding.evidence["examples"]) == 20


def test_single_pixel_off_by_one_changes_the_hash(small: Dataset) -> None:
    x = small.x.copy()
    x[0, 4, 4] = x[0, 4, 4] + 1 if x[0, 4, 4] < 255 else 254
    nudged = dataclasses.replace(small, x=x)
    assert nudged.sample_hashes()[0] != small.sample_hashes()[0]
    assert nudged.sample_hashes()[1:] == small.sample_hashes()[1:]
    result = verify_dataset(nudged, build_manifest(small))
    assert [c.index for c in result.altered] == [0]
    assert result.summary()["unchanged"] == 19


def test_swapped_and_copied_samples_are_matched(small: Dataset) -> None:
    manifest = build_manifest(small)
    ids = small.sample_id.tolist()
    x = small.x.copy()
    x[[1, 2]] = x[[2, 1]]  # two ids swap contents
    copy = small.x[7:8]  # a recorded sample reappears under a new id
    changed = dataclasses.replace(
        small,
        x=np.concatenate([x, copy]),
        y=np.concatenate([small.y, small.y[7:8]]),
        sample_id=np.concatenate([small.sample_id, ["copy/7"]]),
        source=np.concatenate([small.source, ["vendor-c"]]),
    )
    result = verify_dataset(changed, manifest)
    assert {c.sample_id: c.same_content_as for c in result.altered} == {
        ids[1]: (ids[2],),
        ids[2]: (ids[1],),
    }
    assert [(c.sample_id, c.same_content_as) for c in result.added] == [("copy/7", (ids[7],))]
    findings = {f.rule_id: f for f in verify_findings(result, "small.npz")}
    assert findings["TW001"].evidence["copies_of_recorded"] == 1
    assert findings["TW001"].evidence["copy_examples"] == {"copy/7": [ids[7]]}
    assert findings["TW004"].evidence["same_content_as_other"] == 2


def test_altered_and_relabelled_is_flagged(small: Dataset) -> None:
    x, y = small.x.copy(), small.y.copy()
    x[0] = 255 - x[0]
    y[0] = (y[0] + 1) % 3
    result = verify_dataset(dataclasses.replace(small, x=x, y=y), build_manifest(small))
    (altered,) = result.altered
    assert altered.label_changed
    assert result.relabelled == ()
    (finding,) = verify_findings(result, "small.npz")
    assert finding.evidence["label_also_changed"] == 1


def test_format_change_is_explained(small: Dataset) -> None:
    as_float = make_dataset(
        small.x.astype(np.float32) / 255.0,
        small.y,
        sample_id=small.sample_id,
        source=small.source,
    )
    result = verify_dataset(as_float, build_manifest(small))
    assert len(result.altered) == 20
    assert result.format_changed is not None
    assert "float32" in result.format_changed
    assert "uint8" in result.format_changed


def test_verify_bundled_digits(digits: Dataset) -> None:
    manifest = build_manifest(digits, "scikit-learn")
    y = digits.y.copy()
    y[[10, 20]] = (y[[10, 20]] + 1) % 10
    result = verify_dataset(dataclasses.replace(digits, y=y), manifest)
    assert [c.index for c in result.relabelled] == [10, 20]
    assert {c.source for c in result.relabelled} == {"scikit-learn"}
    assert result.summary()["unchanged"] == len(digits) - 2


def test_hand_built_manifest_with_duplicate_ids(small: Dataset) -> None:
    m = build_manifest(small)
    bad = dataclasses.replace(m, entries=(*m.entries, m.entries[0]))
    with pytest.raises(InputError, match="twice"):
        verify_dataset(small, bad)


# ------------------------------------------------------------------------- hostile manifests


def _edit(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"".join(line + b"\n" for line in change(lines)))


def _set(lineno: int, **fields: object) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        obj = json.loads(lines[lineno - 1])
        obj.update(fields)
        lines[lineno - 1] = json.dumps(obj).encode()
        return lines

    return change


def _replace(lineno: int, text: bytes) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        lines[lineno - 1] = text
        return lines

    return change


def _header(**fields: object) -> Callable[[list[bytes]], list[bytes]]:
    return _set(1, **fields)


CORRUPTIONS: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int, str]] = {
    "not json": (_replace(3, b"{not json"), 3, "not valid JSON: Expecting property name"),
    "missing header": (lambda lines: lines[1:], 1, "missing header"),
    "empty file": (lambda lines: [], 1, "missing header: the file is empty"),
    "bad sha256": (_set(4, sha256="AB" * 32), 4, "64 lowercase hex"),
    "short sha256": (_set(4, sha256="ab" * 31), 4, "64 lowercase hex"),
    "duplicate id": (
        _set(6, sample_id="000000"),
        6,
        "duplicate sample_id '000000' (first on line 2)",
    ),
    "second header": (lambda lines: [*lines[:3], lines[0], *lines[4:]], 4, "second header"),
    "unknown version": (_header(manifest_version=2), 1, "unsupported manifest_version 2"),
    "version as string": (_header(manifest_version="1"), 1, "must be an integer"),
    "other hash": (_header(hash_algorithm="md5"), 1, "unsupported hash_algorithm"),
    "bad created_at": (_header(created_at="yesterday"), 1, "ISO 8601"),
    "dataset not object": (_header(dataset=[1]), 1, "'dataset' must be an object"),
    "bad shape": (_header(dataset={"shape": "8x8"}), 1, "dataset.shape"),
    "label as string": (_set(2, label="1"), 2, "'label' must be an integer, got a string"),
    "label as bool": (_set(2, label=True), 2, "'label' must be an integer, got a boolean"),
    "negative label": (_set(2, label=-1), 2, "must not be negative"),
    "missing source": (
        _replace(2, b'{"sample_id":"x","sha256":"' + b"a" * 64 + b'","label":0}'),
        2,
        "missing field 'source'",
    ),
    "empty id": (_set(2, sample_id=""), 2, "'sample_id' must not be empty"),
    "record type": (_set(2, type="comment"), 2, "unknown record type 'comment'"),
    "array line": (_replace(5, b"[1, 2]"), 5, "expected a JSON object, got an array"),
    "NaN": (_replace(5, b'{"label": NaN}'), 5, "NaN is not valid JSON"),
    "repeated key": (_replace(5, b'{"label": 1, "label": 2}'), 5, "'label' appears twice"),
    "empty line": (_replace(5, b""), 5, "empty line"),
    "not utf-8": (_replace(5, b'{"sample_id": "\xff"}'), 5, "not valid UTF-8"),
    "deep nesting": (_replace(5, b"[" * 50_000), 5, "not valid JSON"),
    "huge integer": (_replace(2, b'{"label": ' + b"9" * 5000 + b"}"), 2, "not valid JSON"),
    "dropped lines": (lambda lines: lines[:-2], 20, "ends after 18 of the 20 entries"),
    "extra entry": (
        lambda lines: [*lines, lines[-1].replace(b'"000019"', b'"000020"')],
        22,
        "more entries than the 20 samples",
    ),
    "oversize line": (
        _replace(3, b'{"sample_id": "' + b"a" * MAX_LINE_BYTES + b'"}'),
        3,
        f"line longer than the limit of {MAX_LINE_BYTES} bytes",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_manifest_names_file_and_line(case: str, manifest_file: Path) -> None:
    change, lineno, message = CORRUPTIONS[case]
    _edit(manifest_file, change)
    with pytest.raises(InputError) as err:
        read_manifest(manifest_file)
    text = str(err.value)
    assert text.startswith(f"{manifest_file}: line {lineno}: "), text
    assert message in text
    assert "\n" not in text


def test_truncated_final_line(manifest_file: Path) -> None:
    data = manifest_file.read_bytes()
    manifest_file.write_bytes(data[: len(data) - 40])  # cut inside the last entry
    with pytest.raises(InputError) as err:
        read_manifest(manifest_file)
    text = str(err.value)
    assert text.startswith(f"{manifest_file}: line 21: not valid JSON (the file seems truncated)")


def test_missing_final_newline_is_accepted(manifest_file: Path) -> None:
    m = read_manifest(manifest_file)
    manifest_file.write_bytes(manifest_file.read_bytes().rstrip(b"\n"))
    assert read_manifest(manifest_file) == m


def test_size_limits(manifest_file: Path) -> None:
    size = manifest_file.stat().st_size
    with pytest.raises(InputError, match=f"{size} bytes, more than the limit of 1000"):
        read_manifest(manifest_file, max_bytes=1000)
    with pytest.raises(InputError, match="line 1: line longer than the limit of 100 bytes"):
        read_manifest(manifest_file, max_line_bytes=100)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such manifest file") as err:
        read_manifest(tmp_path / "absent.jsonl")
    assert str(err.value).startswith(str(tmp_path / "absent.jsonl"))
    with pytest.raises(InputError, match="is a directory"):
        read_manifest(tmp_path)


def test_read_returns_a_manifest(manifest_file: Path) -> None:
    m = read_manifest(manifest_file)
    assert isinstance(m, Manifest)
    assert m.created_at == "2024-05-06T07:08:09Z"
    assert len(m.entries) == 20
