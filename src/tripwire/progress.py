"""Progress display for long work, kept out of the algorithms' way.

Library functions take ``show_progress`` and call :func:`progress_iter`; the bars go to
stderr (stdout stays clean for JSON and Markdown output) and vanish when stderr is not
a terminal or when ``TRIPWIRE_NO_PROGRESS`` is set, as in CI logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw bars: asked for, stderr is a terminal, and not switched off."""
    return requested and sys.stderr.isatty() and not os.environ.get("TRIPWIRE_NO_PROGRESS")


def progress_iter(
    items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar on stderr when enabled."""
    if not progress_enabled(enabled):
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    yield from track(
        items,
        description=description,
        total=total,
        console=Console(stderr=True),
        transient=True,
    )
