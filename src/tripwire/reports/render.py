"""Render a report in every format and write the files atomically.

The renderers are pure functions of a :class:`~tripwire.reports.report.Report`;
:func:`write_reports` is the only place that touches the file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from tripwire.errors import InputError
from tripwire.reports.html_report import render_html
from tripwire.reports.markdown import render_markdown
from tripwire.reports.report import Report
from tripwire.reports.sarif import render_sarif

__all__ = [
    "render_html",
    "render_json",
    "render_markdown",
    "render_sarif",
    "render_sarif_json",
    "write_reports",
    "write_text_atomic",
]


def render_json(report: Report) -> str:
    """Render a report as strict JSON (indent 2, no NaN or infinity).

    Parameters
    ----------
    report
        The report.

    Returns
    -------
    str
        The JSON text of :meth:`Report.to_dict`, without a trailing newline.

    Raises
    ------
    ValueError
        If a non-finite float slipped past conversion (it cannot, by design;
        ``allow_nan=False`` makes sure).
    """
    return json.dumps(report.to_dict(), indent=2, allow_nan=False, ensure_ascii=False)


def render_sarif_json(report: Report) -> str:
    """Render :func:`render_sarif` as strict JSON text (indent 2)."""
    return json.dumps(render_sarif(report), indent=2, allow_nan=False, ensure_ascii=False)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) so that readers see the old file or the new one, never half.

    The text goes to a temporary file beside the target, is flushed to disk, and
    then replaces the target with :func:`os.replace`. Parent directories are
    created as needed.

    Parameters
    ----------
    path
        The file to write.
    text
        The content.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InputError
        Naming the path, if it cannot be written.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.open with mode 0o666 lets the umask decide permissions, as for a normal write.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write report: {reason}", target) from exc
    return target


def write_reports(
    report: Report,
    *,
    json_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
    sarif_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Render and write the requested formats.

    Every format is rendered before anything is written, so a rendering error
    leaves no partial set of files behind.

    Parameters
    ----------
    report
        The report.
    json_path, html_path, sarif_path, markdown_path
        Where to write each format; None skips it.

    Returns
    -------
    dict
        Format name (``"json"``, ``"html"``, ``"sarif"``, ``"markdown"``) to the
        path written, for the formats requested.

    Raises
    ------
    InputError
        Naming the path, if a file cannot be written.
    """
    renderers = {
        "json": (json_path, render_json),
        "html": (html_path, render_html),
        "sarif": (sarif_path, render_sarif_json),
        "markdown": (markdown_path, render_markdown),
    }
    rendered: dict[str, tuple[str | os.PathLike[str], str]] = {}
    for name, (path, render) in renderers.items():
        if path is not None:
            text = render(report)
            rendered[name] = (path, text if text.endswith("\n") else text + "\n")
    return {name: write_text_atomic(path, text) for name, (path, text) in rendered.items()}
