"""Conversion of detector output to strict JSON."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath

import numpy as np
import pytest

from tripwire.reports import Severity, dumps_strict, to_json_object, to_jsonable


class Colour(enum.Enum):
    RED = 1


@dataclass
class Point:
    x: float
    tags: tuple[str, ...]


@dataclass
class WithToDict:
    value: int

    def to_dict(self) -> dict[str, int]:
        return {"doubled": self.value * 2}


def test_numpy_scalars_become_python_numbers() -> None:
    out = to_jsonable([np.int8(3), np.uint64(7), np.float32(0.5), np.bool_(True)])
    assert out == [3, 7, 0.5, True]
    assert [type(v) for v in out] == [int, int, float, bool]  # type: ignore[union-attr]


def test_string_subclasses_become_plain_strings() -> None:
    for value, expected in [(np.str_("a"), "a"), (Severity.HIGH, "high"), (Colour.RED, 1)]:
        out = to_jsonable(value)
        assert out == expected
        assert type(out) is type(expected)


def test_arrays_become_nested_lists() -> None:
    assert to_jsonable(np.arange(6).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert to_jsonable(np.array([True, False])) == [True, False]
    assert to_jsonable(np.array(["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_non_finite_scalars_become_null(value: float) -> None:
    assert to_jsonable(value) is None


def test_non_finite_array_entries_become_null() -> None:
    assert to_jsonable(np.array([1.0, np.nan, np.inf])) == [1.0, None, None]


def test_paths_enums_dates_tuples_sets_and_dataclasses() -> None:
    stamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = to_jsonable(
        {
            "path": Path("a") / "b.npz",
            "win": PureWindowsPath(r"C:\data\x.npz"),
            "enum": Colour.RED,
            "severity": Severity.HIGH,
            "when": stamp,
            "tuple": (1, (2, 3)),
            "set": {3, 1, 2},
            "point": Point(1.5, ("a",)),
            "custom": WithToDict(4),
        }
    )
    assert out == {
        "path": "a/b.npz",
        "win": "C:/data/x.npz",
        "enum": 1,
        "severity": "high",
        "when": "2025-01-02T03:04:05+00:00",
        "tuple": [1, [2, 3]],
        "set": [1, 2, 3],
        "point": {"x": 1.5, "tags": ["a"]},
        "custom": {"doubled": 8},
    }


def test_integer_and_enum_keys_become_strings() -> None:
    assert to_jsonable({1: "a", np.int64(2): "b"}) == {"1": "a", "2": "b"}
    assert to_jsonable({Severity.LOW: 1}) == {"low": 1}


@pytest.mark.parametrize("value", [b"bytes", 1 + 2j, object(), np.array([1 + 1j])])
def test_values_without_a_json_form_are_rejected(value: object) -> None:
    with pytest.raises(TypeError, match="no JSON form"):
        to_jsonable(value)


def test_unsupported_keys_are_rejected() -> None:
    with pytest.raises(TypeError, match="keys"):
        to_jsonable({(1, 2): "tuple key"})


def test_to_json_object_requires_a_mapping() -> None:
    with pytest.raises(TypeError, match="evidence must be a mapping"):
        to_json_object([1, 2], "evidence")


def test_dumps_strict_writes_valid_strict_json() -> None:
    text = dumps_strict({"x": np.array([np.nan, 1.0]), "y": "é"})
    assert "NaN" not in text
    assert "é" in text
    assert json.loads(text) == {"x": [None, 1.0], "y": "é"}
    assert dumps_strict([1, 2], indent=None) == "[1,2]"
