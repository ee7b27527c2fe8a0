"""Draw report figures as PNG with matplotlib, an optional dependency.

matplotlib is imported only when a figure is drawn, and through its
object-oriented API with an explicit Agg canvas: no pyplot, no global backend
switch, nothing that disturbs a notebook or another thread's figures.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tripwire.reports.report import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

__all__ = ["PLOTTED_KINDS", "figure_to_png_base64", "matplotlib_available"]

#: Figure kinds drawn with matplotlib; the others are HTML already.
PLOTTED_KINDS = frozenset({"bar", "line", "histogram", "scatter"})

_MAX_TICK_LABELS = 40
_MAX_CATEGORIES = 20
_THRESHOLD_COLOUR = "#c62828"


def _load_matplotlib() -> tuple[type[MplFigure], type[Any]] | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure
    except ImportError:
        return None
    return MplFigure, FigureCanvasAgg


def matplotlib_available() -> bool:
    """Tell whether figures can be drawn (matplotlib is importable)."""
    return _load_matplotlib() is not None


def _plain(text: object) -> str:
    # "$" starts matplotlib mathtext; labels can hold user strings, so keep them literal.
    return str(text).replace("$", r"\$")


def _floats(values: list[Any]) -> npt.NDArray[np.float64]:
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _axis_labels(ax: Axes, data: dict[str, Any]) -> None:
    if data.get("xlabel"):
        ax.set_xlabel(_plain(data["xlabel"]))
    if data.get("ylabel"):
        ax.set_ylabel(_plain(data["ylabel"]))


def _draw_bar(ax: Axes, data: dict[str, Any]) -> None:
    labels = [_plain(label) for label in data["labels"]]
    positions = np.arange(len(labels))
    ax.bar(positions, _floats(data["values"]), color="#1565c0")
    if len(labels) <= _MAX_TICK_LABELS:
        ax.set_xticks(positions, labels, rotation=45 if len(labels) > 8 else 0, ha="right")


def _draw_line(ax: Axes, data: dict[str, Any]) -> None:
    named = False
    for series in data["series"]:
        name = series.get("name") or None
        named = named or name is not None
        ax.plot(_floats(series["x"]), _floats(series["y"]), label=_plain(name) if name else None)
    if named:
        ax.legend(loc="best", fontsize="small")


def _draw_histogram(ax: Axes, data: dict[str, Any]) -> None:
    values = _floats(data["values"])
    values = values[np.isfinite(values)]
    ax.hist(values, bins=data["bins"], color="#1565c0", alpha=0.85)
    threshold = data.get("threshold")
    if threshold is not None:
        ax.axvline(
            float(threshold),
            color=_THRESHOLD_COLOUR,
            linestyle="--",
            label=f"threshold {threshold:.4g}",
        )
        ax.legend(loc="best", fontsize="small")
    ax.set_ylabel(_plain(data.get("ylabel") or "count"))


def _draw_scatter(ax: Axes, mpl_fig: MplFigure, data: dict[str, Any]) -> None:
    x, y = _floats(data["x"]), _floats(data["y"])
    color = data.get("color")
    if color is None:
        ax.scatter(x, y, s=10, color="#1565c0")
    elif all(c is None or isinstance(c, int | float) for c in color):
        points = ax.scatter(x, y, s=10, c=_floats(color), cmap="viridis")
        mpl_fig.colorbar(points, ax=ax)
    else:
        # Categorical colours: one legend entry per category, the rarest folded into "other".
        names = ["-" if c is None else str(c) for c in color]
        uniques, counts = np.unique(np.array(names), return_counts=True)
        keep = set(uniques[np.argsort(-counts, kind="stable")][:_MAX_CATEGORIES].tolist())
        names = [n if n in keep else "other" for n in names]
        for i, category in enumerate(sorted(set(names))):
            mask = np.array([n == category for n in names])
            ax.scatter(x[mask], y[mask], s=10, color=f"C{i % 10}", label=_plain(category))
        ax.legend(loc="best", fontsize="small", markerscale=1.5)


def figure_to_png_base64(figure: Figure, *, dpi: int = 100) -> str | None:
    """Draw a bar, line, histogram or scatter figure as a base64 PNG.

    Parameters
    ----------
    figure
        The figure; its title is not drawn (the page shows it as a caption).
    dpi
        Resolution; the canvas is 6.4 x 3.6 inches.

    Returns
    -------
    str or None
        ASCII base64 of the PNG, or None when matplotlib is not installed or the
        kind is not a plotted one, so that the caller can fall back to a table.
    """
    if figure.kind not in PLOTTED_KINDS:
        return None
    loaded = _load_matplotlib()
    if loaded is None:
        return None
    figure_class, canvas_class = loaded
    mpl_fig = figure_class(figsize=(6.4, 3.6), dpi=dpi, layout="constrained")
    canvas_class(mpl_fig)
    ax = mpl_fig.add_subplot()
    data = figure.data
    if figure.kind == "bar":
        _draw_bar(ax, data)
    elif figure.kind == "line":
        _draw_line(ax, data)
    elif figure.kind == "histogram":
        _draw_histogram(ax, data)
    else:
        _draw_scatter(ax, mpl_fig, data)
    _axis_labels(ax, data)
    ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    # No "Software" metadata, so the same figure gives the same bytes across versions.
    mpl_fig.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")
