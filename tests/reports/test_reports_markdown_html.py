"""The Markdown and HTML renderings."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from tripwire.reports import Figure, Finding, Report, render_html, render_markdown
from tripwire.reports import plots as plots_module
from tripwire.reports.images import PNG_SIGNATURE

#: Same hostile string as the conftest fixtures use.
XSS = "<script>alert('x')</script>"

# --- Markdown ------------------------------------------------------------------------


def test_markdown_contents(report: Report) -> None:
    md = render_markdown(report)
    assert md.startswith("# tripwire scan report\n")
    assert "## Summary" in md
    assert "**Highest severity: critical** (3 findings: 1 critical, 1 high, 1 medium)" in md
    assert "| samples | 1000 |" in md
    assert "### Inputs" in md
    assert "data/train.npz" in md
    assert "## Findings" in md
    assert "| # | Severity | Rule | ATLAS | Finding | Location | Confidence |" in md
    # Worst first, with the rule name where the rule is registered.
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows[0].startswith("| 1 | **critical** | `TW299`")
    assert "`TW003` samples-relabelled" in rows[1]
    assert "[AML.T0020](https://atlas.mitre.org/techniques/AML.T0020)" in rows[1]
    assert "[AML.T0024.002](https://atlas.mitre.org/techniques/AML.T0024.002)" in rows[2]
    assert "3 samples: 3, 5, 9" in rows[1]
    assert "## Metrics" in md
    assert "| auc | 0.93 |" in md
    assert "## Figures" in md
    assert "**Outlier scores** (histogram" in md
    assert "| index | score |" in md  # the table figure and the scores section
    assert "## detectors" in md
    assert "```json" in md


def test_markdown_escapes_html_and_table_syntax() -> None:
    finding = Finding("TW101", "a|b", f"x | y {XSS}\nsecond line", "low", 0.1, ("AML.T0020",))
    md = render_markdown(Report(command="scan", findings=[finding]))
    assert "<script>" not in md
    assert "&lt;script&gt;" in md
    assert "a\\|b" in md
    assert "x \\| y" in md
    row = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert "second line" in row  # newlines do not break the table row
    assert row.count(" | ") == 6  # seven cells, no extra separators


def test_markdown_without_findings() -> None:
    md = render_markdown(Report(command="verify"))
    assert "**No findings.**" in md
    assert md.endswith("\n")
    assert not md.endswith("\n\n")


# --- HTML ----------------------------------------------------------------------------


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)


def test_html_is_self_contained(report: Report) -> None:
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe", "<object", "<embed"):
        assert forbidden not in lowered, forbidden
    # Every resource is inline; the only absolute URLs are ATLAS links to follow.
    assert all(src.startswith("data:image/png;base64,") for src in _img_sources(page))
    assert not re.search(r'\ssrc="(?!data:)', page)
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs
    assert all(h.startswith("https://atlas.mitre.org/techniques/") for h in hrefs)
    assert "Content-Security-Policy" in page


def test_html_escapes_attacker_controlled_text(findings: list[Finding]) -> None:
    report = Report(
        command="scan",
        findings=findings,
        summary={XSS: XSS},
        figures=[
            Figure.bar(XSS, [XSS], [1]),
            Figure.images_from_arrays("trigger", [np.zeros((4, 4))], [XSS]),
        ],
        sections={"clients": [{"id": XSS}], XSS: {"k": XSS}},
    )
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "client-&lt;script&gt;" in page  # the client id in the location column


def test_html_summary_and_findings(report: Report) -> None:
    page = render_html(report)
    assert "<title>tripwire scan report</title>" in page
    assert "Highest severity: critical" in page
    assert "Findings (3)" in page
    # Severity colours and ATLAS links with the technique name as a tooltip.
    assert 'class="badge" style="background:#6a1b9a">critical<' in page
    assert 'title="Manipulate AI Model: Poison AI Model">AML.T0018.000</a>' in page
    assert "<summary>evidence</summary>" in page
    # Worst finding first.
    assert page.index("TW299") < page.index("TW003") < page.index("TW301")


def test_html_draws_plots_as_png_when_matplotlib_is_present(report: Report) -> None:
    pytest.importorskip("matplotlib")
    page = render_html(report)
    plots = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(plots) == 4  # bar, histogram, line, scatter
    for b64 in plots:
        assert base64.b64decode(b64).startswith(PNG_SIGNATURE)


def test_html_shows_images_and_tables(report: Report) -> None:
    page = render_html(report)
    grid = re.search(r'<div class="grid">(.*?)</div></figure>', page)
    assert grid is not None
    assert 'alt="trigger" src="data:image/png;base64,' in grid.group(1)
    assert "<th>index</th><th>score</th>" in page  # table figure and scores section


def test_html_falls_back_to_tables_without_matplotlib(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plots_module, "_load_matplotlib", lambda: None)
    assert not plots_module.matplotlib_available()
    page = render_html(report)
    assert 'class="plot"' not in page
    assert "matplotlib is not installed" in page
    assert "<th>label</th><th>value</th>" in page  # the bar chart's data
    assert "<th>from</th><th>to</th><th>count</th>" in page  # the histogram's bins
    assert "Threshold: 1.5" in page
    assert "<th>series</th><th>x</th><th>y</th>" in page
    # Images never needed matplotlib.
    assert '<div class="grid">' in page


def test_html_survives_a_figure_matplotlib_cannot_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(figure: Figure, *, dpi: int = 100) -> str:
        raise ValueError("cannot draw")

    monkeypatch.setattr("tripwire.reports.html_report.figure_to_png_base64", broken)
    page = render_html(Report(command="x", figures=[Figure.bar("b", ["a"], [1])]))
    assert "<th>label</th><th>value</th>" in page


def test_plot_labels_with_dollar_signs_are_literal() -> None:
    pytest.importorskip("matplotlib")
    figure = Figure.bar("cost", ["$x^{", "a$b$c"], [1, 2], xlabel="$\\frac", ylabel="$")
    png = plots_module.figure_to_png_base64(figure)
    assert png is not None
    assert base64.b64decode(png).startswith(PNG_SIGNATURE)


def test_large_sections_are_truncated_in_html() -> None:
    report = Report(command="x", sections={"flagged": [{"i": i} for i in range(500)]})
    page = render_html(report)
    assert "Showing 200 of 500 rows." in page
