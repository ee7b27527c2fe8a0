"""Benchmark outputs: tidy results.csv / results.json and an HTML report."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.bench.metrics import summarise
from tripwire.reports import Figure, Report, write_reports

#: Columns of results.csv, in order (lower-case metric names are a contract).
COLUMNS = (
    "dataset",
    "attack",
    "rate",
    "seed",
    "detector",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "tpr_at_1fpr",
    "flag_rate",
    "n_flagged",
    "n_positive",
    "n_samples",
    "clean_accuracy",
    "asr",
    "asr_after",
    "clean_accuracy_after",
    "time_s",
    "forward_s",
    "time_vs_forward",
    "trusted",
)


#: Metrics averaged over seeds in the aggregate table (and shown in the report).
AGGREGATED = (
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "tpr_at_1fpr",
    "flag_rate",
    "asr",
    "asr_after",
    "clean_accuracy",
    "clean_accuracy_after",
    "time_s",
)


def write_tables(rows: list[dict[str, Any]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1, allow_nan=False) + "\n")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per (dataset, attack, rate, detector)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["attack"], r["rate"], r["detector"])].append(r)
    out = []
    for (dataset, attack, rate, det), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        row: dict[str, Any] = {
            "dataset": dataset,
            "attack": attack,
            "rate": rate,
            "detector": det,
            "seeds": len(rs),
        }
        for m in AGGREGATED:
            s = summarise([r.get(m) for r in rs])
            row[m] = s["mean"]
            row[f"{m}_std"] = s["std"]
        out.append(row)
    return out


def _heatmap_png(agg: list[dict[str, Any]], metric: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure as MplFigure
    except ImportError:
        return None
    cells = sorted({f"{r['attack']}@{r['rate']}" for r in agg if r["attack"] != "clean"})
    dets = sorted({r["detector"] for r in agg})
    if not cells or not dets:
        return None
    grid = np.full((len(dets), len(cells)), np.nan)
    for r in agg:
        key = f"{r['attack']}@{r['rate']}"
        if key in cells and r.get(metric) is not None:
            grid[dets.index(r["detector"]), cells.index(key)] = r[metric]
    fig = MplFigure(figsize=(2.5 + 0.9 * len(cells), 1.5 + 0.45 * len(dets)), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cells)), cells, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(dets)), dets, fontsize=8)
    for i in range(len(dets)):
        for j in range(len(cells)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"{metric} (mean over seeds)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def build_report(suite_name: str, result: dict[str, Any], wall_s: float) -> Report:
    rows = result["rows"]
    agg = aggregate(rows)
    figures: list[Figure] = []
    for metric in ("auroc", "f1"):
        png = _heatmap_png(agg, metric)
        if png:
            figures.append(
                Figure(
                    kind="images",
                    title=f"Attack x detector matrix: {metric}",
                    data={"images": [png], "captions": [metric]},
                )
            )
    cols = [
        "dataset",
        "attack",
        "rate",
        "detector",
        "seeds",
        *AGGREGATED,
    ]
    figures.append(
        Figure.table("Results (mean over seeds)", cols, [[r.get(c) for c in cols] for r in agg])
    )
    for name, ex in result.get("examples", {}).items():
        if ex:
            figures.append(
                Figure.images_from_arrays(
                    f"Attack examples: {name} (clean, then poisoned)",
                    list(ex["clean"]) + list(ex["poisoned"]),
                    [f"clean {lab}" for lab in ex["labels"]]
                    + [f"poisoned {lab}" for lab in ex["labels"]],
                )
            )
    by_cell: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for key, pts in result.get("curves", {}).items():
        cell, det = key.rsplit("/", 1)
        if pts.get("fpr") and cell.endswith("/0"):
            by_cell[cell].append((det, pts))
    for cell, dets in sorted(by_cell.items()):
        figures.append(
            Figure(
                kind="line",
                title=f"ROC: {cell}",
                data={
                    "series": [{"name": d, "x": p["fpr"], "y": p["tpr"]} for d, p in dets],
                    "xlabel": "false-positive rate",
                    "ylabel": "true-positive rate",
                },
            )
        )
        figures.append(
            Figure(
                kind="line",
                title=f"Precision-recall: {cell}",
                data={
                    "series": [{"name": d, "x": p["recall"], "y": p["precision"]} for d, p in dets],
                    "xlabel": "recall",
                    "ylabel": "precision",
                },
            )
        )
    ext = result.get("extraction")
    if ext:
        figures.append(
            Figure(
                kind="line",
                title=f"Extraction ({ext.get('kind')}): fidelity and stolen accuracy per budget",
                data={
                    "series": [
                        {"name": "fidelity", "x": ext["budgets"], "y": ext["fidelity"]},
                        {"name": "stolen accuracy", "x": ext["budgets"], "y": ext["accuracy"]},
                    ],
                    "xlabel": "queries",
                    "ylabel": "share",
                },
            )
        )
    return Report(
        command=f"bench --suite {suite_name}",
        summary={
            "suite": suite_name,
            "cells": len({(r["dataset"], r["attack"], r["rate"], r["seed"]) for r in rows}),
            "rows": len(rows),
            # Cells of the suite left out (a --finished-only table part-way).
            "unfinished_cells": len(result.get("unfinished", [])),
            # Cells the data cannot hold (an attack's rate above what it allows).
            "skipped_cells": len(result.get("skipped", [])),
            "wall_time_s": round(wall_s, 1),
        },
        figures=figures,
        sections={
            "aggregate": agg,
            "extraction": ext,
            "unfinished": list(result.get("unfinished", [])),
            "skipped": list(result.get("skipped", [])),
        },
    )


def write_outputs(suite_name: str, result: dict[str, Any], out_dir: Path, wall_s: float) -> None:
    write_tables(result["rows"], out_dir)
    report = build_report(suite_name, result, wall_s)
    write_reports(report, json_path=out_dir / "report.json", html_path=out_dir / "report.html")
