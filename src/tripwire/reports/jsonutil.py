"""Turn the values detectors produce into plain, strict JSON.

Detectors hand over numpy scalars and arrays, paths, enums and small
dataclasses; reports must hold only JSON types so that every renderer (and
``json.dumps(..., allow_nan=False)``) accepts them. Non-finite floats become
``null`` because strict JSON has no NaN or infinity and a missing value is the
honest reading of one.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping, Set
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, TypeAlias, cast

import numpy as np

#: Any value ``json.dumps`` writes without help.
JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"


def _float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _key(key: object) -> str:
    # JSON object keys are strings; accept the scalar keys json.dumps itself
    # would coerce, and reject the rest so that two keys cannot silently merge.
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return _key(key.value)
    if isinstance(key, bool | np.bool_):
        return "true" if key else "false"
    if isinstance(key, int | np.integer):
        return str(int(key))
    if isinstance(key, PurePath):
        return key.as_posix()
    raise TypeError(f"JSON object keys must be strings or integers, got {type(key).__name__}")


def to_jsonable(obj: object) -> JSONValue:
    """Convert ``obj`` into plain JSON types, recursively.

    Parameters
    ----------
    obj
        ``None``, booleans, numbers, strings, numpy scalars and arrays,
        :class:`pathlib.PurePath` (written with forward slashes), enums (their
        value), dates and datetimes (ISO 8601), dataclass instances (their
        ``to_dict()`` when they have one, else their fields), mappings, lists,
        tuples and sets (sets are sorted so that output is reproducible).

    Returns
    -------
    JSONValue
        A structure made only of ``dict``, ``list``, ``str``, ``int``,
        ``float``, ``bool`` and ``None``; NaN and infinities are ``None``.

    Raises
    ------
    TypeError
        For values with no JSON form (bytes, complex numbers, arbitrary objects)
        or mapping keys that are not strings or integers.
    """
    if obj is None:
        return None
    # Enums before str and int: StrEnum and IntEnum members are both.
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, str):
        # str.__str__ turns subclasses such as numpy.str_ into a plain str.
        return obj if type(obj) is str else str.__str__(obj)
    # bool before int: bool is a subclass of int.
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _float(float(obj))
    if isinstance(obj, np.ndarray):
        kind = obj.dtype.kind
        # Fast paths: integer, boolean and all-finite float arrays are JSON as they are.
        if kind in "biu" or (kind == "f" and bool(np.isfinite(obj).all())):
            return cast(JSONValue, obj.tolist())
        if kind in "fUO":
            return to_jsonable(obj.tolist())
        raise TypeError(f"numpy arrays of dtype {obj.dtype} have no JSON form")
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, Set):
        items = [to_jsonable(x) for x in obj]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_jsonable(to_dict())
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, np.generic):
        # Remaining numpy scalars (complex, bytes, datetime64) have no faithful JSON form.
        raise TypeError(f"numpy scalar of dtype {obj.dtype} has no JSON form")
    raise TypeError(f"value of type {type(obj).__name__} has no JSON form")


def to_json_object(obj: object, what: str = "value") -> dict[str, Any]:
    """Convert a mapping with :func:`to_jsonable` and check that it stays a JSON object.

    Parameters
    ----------
    obj
        A mapping with string (or integer) keys.
    what
        What the mapping is, for the error message (``"evidence"``, ``"summary"``).

    Returns
    -------
    dict
        The converted mapping.

    Raises
    ------
    TypeError
        If ``obj`` is not a mapping or holds values with no JSON form.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(obj).__name__}")
    # A Mapping always converts to a dict; cast only informs the type checker.
    return cast(dict[str, Any], to_jsonable(obj))


def dumps_strict(obj: object, *, indent: int | None = 2) -> str:
    """Serialise ``obj`` as strict JSON (no NaN or infinity), converting it first.

    Parameters
    ----------
    obj
        Anything :func:`to_jsonable` accepts.
    indent
        Indentation, or ``None`` for the compact form.

    Returns
    -------
    str
        The JSON text, UTF-8 characters kept as they are.
    """
    separators = (",", ":") if indent is None else None
    return json.dumps(
        to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False, separators=separators
    )
