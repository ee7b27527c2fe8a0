"""The typed result of a tripwire command: one :class:`Report`, many renderings.

A command builds a :class:`Report` (findings, metrics, figures and any extra
sections of its own) and hands it to the renderers in
:mod:`tripwire.reports.render`. The JSON form is the contract other tools read:

.. code-block:: text

    {
      "schema_version": "1.0",
      "tool": {"name": "tripwire", "version": "..."},
      "command": "scan",
      "generated_at": "2025-01-01T12:00:00Z",
      "inputs": {"data": {"path": "...", "sha256": "..."}},
      "summary": {...},
      "findings": [...],
      "metrics": {...},
      "figures": [...],
      "<section>": ...          # each entry of Report.sections, merged at the top level
    }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import numpy.typing as npt

from tripwire.errors import InputError
from tripwire.reports.findings import Finding, Severity, sort_findings
from tripwire.reports.images import array_to_png_base64, is_png_base64
from tripwire.reports.jsonutil import to_json_object, to_jsonable

__all__ = [
    "FIGURE_KINDS",
    "RESERVED_KEYS",
    "SCHEMA_VERSION",
    "Figure",
    "FigureKind",
    "Report",
]

#: Version of the JSON layout; the major part changes only on breaking changes.
SCHEMA_VERSION = "1.0"

FigureKind = Literal["bar", "line", "histogram", "scatter", "images", "table"]
#: The figure kinds renderers know how to draw.
FIGURE_KINDS: tuple[str, ...] = get_args(FigureKind)

#: Top-level JSON keys owned by the report itself; sections may not use them.
RESERVED_KEYS = frozenset(
    {
        "schema_version",
        "tool",
        "command",
        "generated_at",
        "inputs",
        "summary",
        "findings",
        "metrics",
        "figures",
        "sections",
    }
)

_DEFAULT_BINS = 30
_MAX_BINS = 1000


# --- figure data checks ------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(data: Mapping[str, Any], key: str, kind: str) -> list[float | int | None]:
    values = data.get(key)
    if not isinstance(values, list):
        raise ValueError(f"{kind} figure needs '{key}': a list of numbers")
    for v in values:
        # None stands for a non-finite value that to_jsonable replaced.
        if v is not None and not _is_number(v):
            raise ValueError(f"{kind} figure '{key}' must hold numbers, found {v!r}")
    return cast(list[float | int | None], values)


def _strings(data: Mapping[str, Any], key: str, kind: str) -> list[str]:
    values = data.get(key)
    if not isinstance(values, list):
        raise ValueError(f"{kind} figure needs '{key}': a list")
    # Labels may arrive as class numbers; they are shown as text.
    return ["" if v is None else str(v) for v in values]


def _same_length(kind: str, **lists: Sequence[object]) -> None:
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"{kind} figure lists differ in length: {detail}")


def _axis_labels(data: dict[str, Any], kind: str) -> None:
    for key in ("xlabel", "ylabel"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ValueError(f"{kind} figure '{key}' must be a string")


def _check_bar(data: dict[str, Any]) -> dict[str, Any]:
    data["labels"] = _strings(data, "labels", "bar")
    _same_length("bar", labels=data["labels"], values=_numbers(data, "values", "bar"))
    _axis_labels(data, "bar")
    return data


def _check_line(data: dict[str, Any]) -> dict[str, Any]:
    series = data.get("series")
    if not isinstance(series, list) or not series:
        raise ValueError("line figure needs 'series': a non-empty list of {name, x, y}")
    for s in series:
        if not isinstance(s, dict):
            raise ValueError("line figure series must be objects with name, x and y")
        name = s.get("name")
        s["name"] = "" if name is None else str(name)
        _same_length("line", x=_numbers(s, "x", "line"), y=_numbers(s, "y", "line"))
    _axis_labels(data, "line")
    return data


def _check_histogram(data: dict[str, Any]) -> dict[str, Any]:
    _numbers(data, "values", "histogram")
    bins = data.setdefault("bins", _DEFAULT_BINS)
    if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= _MAX_BINS:
        raise ValueError(f"histogram figure 'bins' must be an integer from 1 to {_MAX_BINS}")
    threshold = data.setdefault("threshold", None)
    if threshold is not None and not _is_number(threshold):
        raise ValueError("histogram figure 'threshold' must be a number or null")
    _axis_labels(data, "histogram")
    return data


def _check_scatter(data: dict[str, Any]) -> dict[str, Any]:
    x, y = _numbers(data, "x", "scatter"), _numbers(data, "y", "scatter")
    _same_length("scatter", x=x, y=y)
    color = data.get("color")
    if color is not None:
        if not isinstance(color, list):
            raise ValueError("scatter figure 'color' must be a list")
        _same_length("scatter", x=x, color=color)
    _axis_labels(data, "scatter")
    return data


def _check_images(data: dict[str, Any]) -> dict[str, Any]:
    images = data.get("images")
    if not isinstance(images, list):
        raise ValueError("images figure needs 'images': a list of base64 PNG strings")
    for i, image in enumerate(images):
        if not is_png_base64(image):
            raise ValueError(f"images figure entry {i} is not a base64-encoded PNG")
    if "captions" not in data or data["captions"] is None:
        data["captions"] = [""] * len(images)
    data["captions"] = _strings(data, "captions", "images")
    _same_length("images", images=images, captions=data["captions"])
    return data


def _check_table(data: dict[str, Any]) -> dict[str, Any]:
    data["columns"] = _strings(data, "columns", "table")
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise ValueError("table figure needs 'rows': a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(data["columns"]):
            raise ValueError(f"table figure row {i} must be a list of {len(data['columns'])} cells")
    return data


_FIGURE_CHECKS = {
    "bar": _check_bar,
    "line": _check_line,
    "histogram": _check_histogram,
    "scatter": _check_scatter,
    "images": _check_images,
    "table": _check_table,
}


@dataclass(frozen=True)
class Figure:
    """A plot or picture for the HTML report, stored as data so every format can carry it.

    Parameters
    ----------
    kind
        One of :data:`FIGURE_KINDS`.
    title
        Caption shown above the figure.
    data
        Kind-specific content (numpy values are converted):

        - ``bar``: ``{"labels": [...], "values": [...]}``
        - ``line``: ``{"series": [{"name", "x", "y"}], "xlabel", "ylabel"}``
        - ``histogram``: ``{"values": [...], "bins": int, "threshold": float | None}``
        - ``scatter``: ``{"x": [...], "y": [...], "color": [...]?}``
        - ``images``: ``{"images": [base64 PNG], "captions": [...]}``
        - ``table``: ``{"columns": [...], "rows": [[...]]}``

        ``xlabel`` and ``ylabel`` are optional for the plotted kinds. Missing
        ``bins`` (30), ``threshold`` (None) and ``captions`` (blank) are filled in.

    Raises
    ------
    ValueError
        If the kind is unknown or the data does not fit it.
    """

    kind: FigureKind
    title: str
    data: dict[str, Any]

    def __post_init__(self) -> None:
        if self.kind not in FIGURE_KINDS:
            raise ValueError(
                f"unknown figure kind {self.kind!r}; allowed: {', '.join(FIGURE_KINDS)}"
            )
        if not isinstance(self.title, str):
            raise TypeError(f"figure title must be a string, got {type(self.title).__name__}")
        data = to_json_object(self.data, f"{self.kind} figure data")
        object.__setattr__(self, "data", _FIGURE_CHECKS[self.kind](data))

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind", "title", "data"}``."""
        return {"kind": self.kind, "title": self.title, "data": self.data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figure:
        """Rebuild a figure from :meth:`to_dict` output.

        Raises
        ------
        InputError
            If keys are missing or the content is invalid.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a figure must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("kind", "title", "data") if k not in data]
        if missing:
            raise InputError(f"figure is missing {', '.join(missing)}")
        try:
            return cls(kind=data["kind"], title=data["title"], data=data["data"])
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid figure {data.get('title')!r}: {exc}") from exc

    @classmethod
    def images_from_arrays(
        cls,
        title: str,
        arrays: Iterable[npt.ArrayLike],
        captions: Sequence[str] | None = None,
    ) -> Figure:
        """Build an ``images`` figure by PNG-encoding image arrays.

        Parameters
        ----------
        title
            Figure caption.
        arrays
            Images of shape (H, W), (H, W, C) or (C, H, W), ``uint8`` or float;
            see :func:`tripwire.reports.images.to_uint8_image`.
        captions
            One caption per image, or None for none.

        Returns
        -------
        Figure
            An ``images`` figure.

        Raises
        ------
        ValueError
            If an array is not an image or the captions do not match in number.
        """
        images = [array_to_png_base64(a) for a in arrays]
        caption_list = [""] * len(images) if captions is None else [str(c) for c in captions]
        return cls("images", title, {"images": images, "captions": caption_list})

    @classmethod
    def bar(
        cls, title: str, labels: Sequence[object], values: npt.ArrayLike, **extra: Any
    ) -> Figure:
        """Build a ``bar`` figure; ``extra`` may hold ``xlabel`` and ``ylabel``."""
        return cls("bar", title, {"labels": list(labels), "values": values, **extra})

    @classmethod
    def histogram(
        cls,
        title: str,
        values: npt.ArrayLike,
        *,
        bins: int = _DEFAULT_BINS,
        threshold: float | None = None,
        **extra: Any,
    ) -> Figure:
        """Build a ``histogram`` figure, optionally marking a decision threshold."""
        data = {"values": values, "bins": bins, "threshold": threshold, **extra}
        return cls("histogram", title, data)

    @classmethod
    def table(cls, title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Figure:
        """Build a ``table`` figure."""
        return cls("table", title, {"columns": list(columns), "rows": [list(r) for r in rows]})


# --- the report --------------------------------------------------------------------


def _default_tool() -> dict[str, str]:
    # Imported late so that this module does not depend on the package's import order.
    from tripwire import __version__

    return {"name": "tripwire", "version": __version__}


def _now() -> str:
    return _normalise_timestamp(datetime.now(UTC).replace(microsecond=0))


def _normalise_timestamp(value: object) -> str:
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"generated_at is not an ISO 8601 timestamp: {value!r}") from None
    elif isinstance(value, datetime):
        stamp = value
    else:
        raise TypeError(f"generated_at must be a string or datetime, got {type(value).__name__}")
    if stamp.tzinfo is None:
        raise ValueError("generated_at must carry a time zone; use UTC")
    return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_section_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"section names must be non-empty strings, got {key!r}")
    if key in RESERVED_KEYS:
        raise ValueError(
            f"section {key!r} collides with a reserved report key "
            f"({', '.join(sorted(RESERVED_KEYS))})"
        )
    return key


@dataclass(kw_only=True)
class Report:
    """The typed result of one tripwire command.

    All arguments are keyword-only; only ``command`` is required. Values are
    converted to plain JSON types on construction and again by :meth:`to_dict`,
    so numpy numbers may be stored directly.

    Parameters
    ----------
    command
        The command that produced the report (``"scan"``, ``"verify"``, ...).
    findings
        What the command found.
    summary
        Headline numbers for the summary table (sample counts, verdicts).
    metrics
        Detector metrics and scores worth keeping.
    figures
        Plots and images for the HTML report.
    inputs
        The files read, by role: ``{"data": {"path": ..., "sha256": ...}}``.
    sections
        Extra top-level JSON keys a command adds (``scores``, ``flagged``,
        ``detectors``); they are merged into the top level of the JSON output and
        may not use a name in :data:`RESERVED_KEYS`.
    generated_at
        ISO 8601 time of the run, normalised to UTC with a ``Z`` suffix; now by
        default.
    tool
        ``{"name": "tripwire", "version": ...}``; kept as read for old reports.
    schema_version
        The JSON layout version, :data:`SCHEMA_VERSION`.

    Raises
    ------
    ValueError, TypeError
        If a value is invalid or a section name collides with a reserved key.
    """

    command: str
    findings: list[Finding] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    generated_at: str = field(default_factory=_now)
    tool: dict[str, Any] = field(default_factory=_default_tool)
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not self.command.strip():
            raise ValueError("report command must be a non-empty string")
        self.generated_at = _normalise_timestamp(self.generated_at)
        self.findings = list(self.findings)
        self.figures = list(self.figures)
        self._check_items()
        self.summary = to_json_object(self.summary, "summary")
        self.metrics = to_json_object(self.metrics, "metrics")
        self.inputs = self._checked_inputs()
        self.tool = self._checked_tool()
        if not isinstance(self.schema_version, str):
            raise TypeError("schema_version must be a string")
        self.sections = self._checked_sections()

    def _check_items(self) -> None:
        for f in self.findings:
            if not isinstance(f, Finding):
                raise TypeError(f"findings must be Finding objects, got {type(f).__name__}")
        for fig in self.figures:
            if not isinstance(fig, Figure):
                raise TypeError(f"figures must be Figure objects, got {type(fig).__name__}")

    def _checked_inputs(self) -> dict[str, dict[str, Any]]:
        inputs = to_json_object(self.inputs, "inputs")
        for role, details in inputs.items():
            if not isinstance(details, dict):
                raise TypeError(f"inputs[{role!r}] must be a mapping such as {{'path': ...}}")
        return inputs

    def _checked_tool(self) -> dict[str, Any]:
        tool = to_json_object(self.tool, "tool")
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("version"), str):
            raise ValueError("tool must name the tool and its version as strings")
        return tool

    def _checked_sections(self) -> dict[str, Any]:
        if not isinstance(self.sections, Mapping):
            raise TypeError("sections must be a mapping")
        for key in self.sections:
            _check_section_key(key)
        return to_json_object(self.sections, "sections")

    def add_section(self, name: str, value: Any) -> None:
        """Add or replace an extra top-level section.

        Parameters
        ----------
        name
            The JSON key; must not be in :data:`RESERVED_KEYS`.
        value
            Anything :func:`~tripwire.reports.jsonutil.to_jsonable` accepts.

        Raises
        ------
        ValueError
            If the name is reserved or empty.
        """
        self.sections[_check_section_key(name)] = to_jsonable(value)

    def max_severity(self) -> Severity | None:
        """The worst severity among the findings, or None when there are none."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def findings_at_or_above(self, severity: Severity | str) -> list[Finding]:
        """Findings whose severity is ``severity`` or worse, in their stored order.

        Raises
        ------
        ValueError
            If ``severity`` is not a severity name.
        """
        threshold = Severity.parse(severity)
        return [f for f in self.findings if f.severity.rank >= threshold.rank]

    def severity_counts(self) -> dict[str, int]:
        """Number of findings per severity, most severe first, all severities present."""
        counts = {s.value: 0 for s in reversed(Severity.ordered())}
        for f in self.findings:
            counts[f.severity.value] += 1
        return counts

    def sorted_findings(self) -> list[Finding]:
        """Findings ordered for display, see :func:`~tripwire.reports.findings.sort_findings`."""
        return sort_findings(self.findings)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: reserved keys first, then the sections merged in.

        Raises
        ------
        ValueError, TypeError
            If, since construction, a section was given a reserved name or a
            value with no JSON form was stored.
        """
        self._check_items()
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "tool": to_json_object(self.tool, "tool"),
            "command": self.command,
            "generated_at": self.generated_at,
            "inputs": to_json_object(self.inputs, "inputs"),
            "summary": to_json_object(self.summary, "summary"),
            "findings": [f.to_dict() for f in self.findings],
            "metrics": to_json_object(self.metrics, "metrics"),
            "figures": [fig.to_dict() for fig in self.figures],
        }
        out.update(self._checked_sections())
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from its JSON form.

        Keys outside :data:`RESERVED_KEYS` become sections.

        Parameters
        ----------
        data
            A mapping as produced by :meth:`to_dict` (or ``json.load`` of a report).

        Returns
        -------
        Report
            The report.

        Raises
        ------
        InputError
            If the layout version is not 1.x, or a key is missing or invalid.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"a report must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(
                f"unsupported report schema_version {version!r}; "
                f"this tripwire reads {SCHEMA_VERSION.split('.')[0]}.x"
            )
        if "command" not in data:
            raise InputError("report is missing 'command'")
        for key in ("findings", "figures"):
            if not isinstance(data.get(key, []), list):
                raise InputError(f"report '{key}' must be a list")
        findings = [Finding.from_dict(f) for f in data.get("findings", [])]
        figures = [Figure.from_dict(f) for f in data.get("figures", [])]
        optional = {k: data[k] for k in ("summary", "metrics", "inputs", "tool") if k in data}
        if "generated_at" in data:
            optional["generated_at"] = data["generated_at"]
        sections = {k: v for k, v in data.items() if k not in RESERVED_KEYS}
        try:
            return cls(
                command=data["command"],
                findings=findings,
                figures=figures,
                sections=sections,
                schema_version=version,
                **optional,
            )
        except InputError:
            raise
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid report: {exc}") from exc
