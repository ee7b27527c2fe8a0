"""Plain-text formatting shared by the Markdown and HTML renderers (no escaping here)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: Sample indices listed before "... N more".
INDEX_LIMIT = 20


def format_value(value: Any, max_len: int = 200) -> str:
    """Format a JSON value for a table cell: short floats, compact JSON for containers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int | str):
        text = str(value)
    else:
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, allow_nan=False)
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def format_indices(indices: Sequence[int], limit: int = INDEX_LIMIT) -> str:
    """List the first ``limit`` sample indices and say how many were left out."""
    shown = ", ".join(str(i) for i in indices[:limit])
    rest = len(indices) - limit
    return f"{shown} ... (+{rest} more)" if rest > 0 else shown


def counts_text(counts: Mapping[str, int]) -> str:
    """``"3 findings: 1 critical, 2 high"``, or ``"no findings"``."""
    total = sum(counts.values())
    if total == 0:
        return "no findings"
    parts = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
    noun = "finding" if total == 1 else "findings"
    return f"{total} {noun}: {parts}"


def location_parts(
    artifact: str | None, target_class: int | None, client: str | None, indices: Sequence[int]
) -> list[str]:
    """The non-empty parts of a finding's location, as short labelled strings."""
    parts: list[str] = []
    if artifact is not None:
        parts.append(artifact)
    if target_class is not None:
        parts.append(f"class {target_class}")
    if client is not None:
        parts.append(f"client {client}")
    if indices:
        noun = "sample" if len(indices) == 1 else f"{len(indices)} samples"
        parts.append(f"{noun}: {format_indices(indices)}")
    return parts
