"""A small declarative schema for the YAML system descriptions ``threat-model`` reads.

The schema is data, so that the validator, the defaults and the documentation
(``docs/threat-model.md``) come from one place. Every problem is reported with the
dotted path of the field at fault (``data.sources[1].kind``), and unknown fields are
named, because a typo in a security description silently dropping a fact is worse
than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Field", "SchemaError", "validate"]


class SchemaError(ValueError):
    """A value does not fit the schema; ``where`` is the dotted path of the field."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Field:
    """One field of the schema.

    Parameters
    ----------
    kind
        ``"str"``, ``"bool"``, ``"int"``, ``"enum"``, ``"object"`` or ``"list"``.
    doc
        One line for the documentation.
    required
        Whether the field must be present.
    default
        The value used when the field is absent (scalars only).
    choices
        Allowed values of an ``enum``.
    fields
        Sub-fields of an ``object`` (or of the objects of a ``list``).
    """

    kind: str
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    fields: Mapping[str, Field] = field(default_factory=dict)


def _check_object(value: object, spec: Mapping[str, Field], where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(where, f"must be a mapping of fields, got {type(value).__name__}")
    unknown = [str(k) for k in value if k not in spec]
    if unknown:
        known = ", ".join(spec)
        prefix = f"{where}." if where else ""
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        raise SchemaError(
            "", f"unknown field{'s' if len(unknown) > 1 else ''} {names} (known here: {known})"
        )
    out: dict[str, Any] = {}
    for name, f in spec.items():
        path = f"{where}.{name}" if where else name
        if name not in value or value[name] is None:
            if f.required:
                raise SchemaError(path, "is required")
            if f.kind == "object":
                out[name] = _check_object({}, f.fields, path)
            elif f.kind == "list":
                out[name] = []
            else:
                out[name] = f.default
            continue
        out[name] = _check_value(value[name], f, path)
    return out


def _check_value(value: object, f: Field, where: str) -> Any:
    if f.kind == "object":
        return _check_object(value, f.fields, where)
    if f.kind == "list":
        if not isinstance(value, list):
            raise SchemaError(where, f"must be a list, got {type(value).__name__}")
        return [_check_object(v, f.fields, f"{where}[{i}]") for i, v in enumerate(value)]
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise SchemaError(where, f"must be true or false, got {value!r}")
        return value
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SchemaError(where, f"must be a non-negative integer, got {value!r}")
        return value
    if f.kind == "enum":
        if not isinstance(value, str) or value not in f.choices:
            raise SchemaError(where, f"must be one of {', '.join(f.choices)}; got {value!r}")
        return value
    if f.kind == "str":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SchemaError(where, f"must be text, got {type(value).__name__}")
        text = str(value).strip()
        if f.required and not text:
            raise SchemaError(where, "must not be empty")
        return text
    raise ValueError(f"schema field of unknown kind {f.kind!r}")  # programming error


def validate(value: object, spec: Mapping[str, Field]) -> dict[str, Any]:
    """Check a parsed document against ``spec`` and fill in defaults.

    Parameters
    ----------
    value
        The parsed document (``yaml.safe_load`` output).
    spec
        The top-level fields.

    Returns
    -------
    dict
        The document with every field present (defaults filled in).

    Raises
    ------
    SchemaError
        Naming the field at fault, or every unknown field of one mapping.
    """
    return _check_object(value, spec, "")


def describe(spec: Mapping[str, Field], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows ``(field, type, default, doc)`` documenting ``spec``, depth first."""
    rows: list[tuple[str, str, str, str]] = []
    for name, f in spec.items():
        path = f"{prefix}.{name}" if prefix else name
        if f.kind == "list":
            path += "[]"
        kind = f"one of {' / '.join(f.choices)}" if f.kind == "enum" else f.kind
        default = "required" if f.required else ("" if f.default is None else str(f.default))
        if isinstance(f.default, bool):
            default = str(f.default).lower()
        rows.append((path, kind, default, f.doc))
        if f.fields:
            rows.extend(describe(f.fields, path))
    return rows
