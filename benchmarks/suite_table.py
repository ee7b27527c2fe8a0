"""The standard suite's table for docs/benchmarks.md, from finished cells (even part-way).

Reads the cells a suite has finished from ``--cache-dir`` (what ``tripwire bench
--resume`` reuses; keyed as the runner keys them, so only this code version's cells
count), and prints, per dataset, one markdown row per cell: the ensemble's precision,
recall, F1, AUROC and flag rate, the attack success rate before and after removing its
flags and retraining (1% cells; the rate alone elsewhere), the better ART defence's F1
and the ratio to it, for label flips the error ratio ``(1 - F1 ours) / (1 - F1
cleanlab)`` on the same probabilities, and the seconds of tripwire's detectors together
(the out-of-sample probability step not included).
Then issue #4's bars, cell by cell: which hold, which do not; and the costs against one
forward pass of the cell's model over its training set (the floor of issue #4's speed
bars): the feature-space detectors together (bar 0.5x) and the whole scan (bar 10x).
The cells time themselves as they run: on a shared machine the forward pass and the
detectors slow down unevenly, so read the cells run alone.

    PYTHONPATH=src python benchmarks/suite_table.py --cache-dir runs/std-cache

With ``--trusted N``, the cells of a run calibrated on N verified samples
(``tripwire bench --trusted N``); with ``--arch ARCH``, those of a run on another
architecture's models (``tripwire bench --arch ARCH``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ENSEMBLE = "tripwire:ensemble"
ART = ("art:ActivationDefence", "art:SpectralSignatureDefense")
CLEANLAB = "cleanlab:find_label_issues"
DIRTY = {"badnets", "blend", "wanet"}
CLEAN_LABEL = {"sig", "label-consistent", "feature-collision", "adaptive"}
FLIPS = {"label-flip", "pair-flip"}
#: The detectors issue #4's first speed bar counts (at most 0.5x one forward pass).
FEATURE_SPACE = (
    "spectral-signature",
    "activation-clustering",
    "feature-outlier",
    "spectre",
    "knn-label",
    "dual-space",
)


def _f(x: Any, nd: int = 3) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def cell_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's figures from its rows (one row per detector)."""
    by = {r["detector"]: r for r in rows}
    ens = by[ENSEMBLE]
    art = [by[a] for a in ART if a in by and by[a].get("f1") is not None]
    best_art = max((a["f1"] for a in art), default=None)
    out: dict[str, Any] = {
        "dataset": ens["dataset"],
        "attack": ens["attack"],
        "rate": ens["rate"],
        "seed": ens["seed"],
        "clean_accuracy": ens.get("clean_accuracy"),
        "asr": ens.get("asr"),
        "precision": ens.get("precision"),
        "recall": ens.get("recall"),
        "f1": ens.get("f1"),
        "auroc": ens.get("auroc"),
        "flag_rate": ens.get("flag_rate"),
        "asr_after": ens.get("asr_after"),
        "clean_accuracy_after": ens.get("clean_accuracy_after"),
        "time_s": ens.get("time_s"),
        "forward_s": ens.get("forward_s"),
        "feature_space_s": sum(by[d].get("time_s") or 0.0 for d in FEATURE_SPACE if d in by),
        "best_art_f1": best_art,
        "art_ratio": None,
        "cleanlab_f1": by.get(CLEANLAB, {}).get("f1"),
        "cleanlab_error_ratio": None,
    }
    if ens["attack"] == "clean":  # nothing to find: only the flag rate means anything
        out["precision"] = out["recall"] = out["f1"] = out["auroc"] = None
    if best_art is not None and out["f1"] is not None:
        out["art_ratio"] = out["f1"] / best_art if best_art > 0 else float("inf")
    cl = out["cleanlab_f1"]
    if ens["attack"] in FLIPS and cl is not None and ens.get("f1") is not None and cl < 1.0:
        out["cleanlab_error_ratio"] = (1.0 - ens["f1"]) / (1.0 - cl)
    return out


def bars(c: dict[str, Any]) -> list[tuple[str, bool]]:
    """Issue #4's bars that apply to a cell, each with whether it holds."""
    kind, rate = c["attack"], c["rate"]
    out: list[tuple[str, bool]] = []
    if kind == "clean":
        out.append(("flags <= 0.5%", (c["flag_rate"] or 0.0) <= 0.005))
        return out
    rec, prec = c["recall"] or 0.0, c["precision"] or 0.0
    if kind in DIRTY:
        out.append(("recall >= 0.95", rec >= 0.95))
        out.append(("precision >= 0.9", prec >= 0.9))
        if rate == 0.01 and c["asr_after"] is not None:
            out.append(("ASR after < 5%", c["asr_after"] < 0.05))
            if c["clean_accuracy"] is not None and c["clean_accuracy_after"] is not None:
                loss = c["clean_accuracy"] - c["clean_accuracy_after"]
                out.append(("accuracy lost <= 1 pt", loss <= 0.01))
    elif kind in CLEAN_LABEL:
        out.append(("recall >= 0.8", rec >= 0.8))
        out.append(("precision >= 0.8", prec >= 0.8))
    elif kind in FLIPS:
        out.append(("AUROC >= 0.97", (c["auroc"] or 0.0) >= 0.97))
        if c["cleanlab_error_ratio"] is not None:
            out.append(("errors <= 0.7x cleanlab", c["cleanlab_error_ratio"] <= 0.7))
    if kind not in FLIPS and c["art_ratio"] is not None:
        out.append(("F1 >= 2x ART", c["art_ratio"] >= 2.0))
    return out


def main() -> None:
    from tripwire.bench.runner import cell_file, suite_grid
    from tripwire.bench.suites import get_suite, with_arch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="standard")
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/std-cache"))
    ap.add_argument("--json", type=Path, help="also write the per-cell summaries here")
    ap.add_argument(
        "--trusted", type=int, help="the cells a `bench --trusted N` run calibrated this way"
    )
    ap.add_argument("--arch", help="the cells of a `bench --arch ARCH` run")
    args = ap.parse_args()
    suite = get_suite(args.suite)
    if args.arch:
        suite = with_arch(suite, args.arch)
    grid = list(suite_grid(suite, log=lambda _: None))
    cells: list[dict[str, Any]] = []
    missing = []
    for spec, attack, rate, seed in grid:
        f = cell_file(suite, spec, attack, rate, seed, args.cache_dir, args.trusted)
        if f.exists():
            cells.append(cell_summary(json.loads(f.read_text())["rows"]))
        else:
            missing.append(f"{spec.name}/{attack.kind}/{rate}/{seed}")
    print(f"{len(cells)} of {len(grid)} cells finished\n")
    head = (
        "| attack | rate | seed | precision | recall | F1 | AUROC | flag rate | ASR -> after "
        "| accuracy -> after | F1 / best ART | errors / cleanlab | scan s |"
    )
    for name in dict.fromkeys(c["dataset"] for c in cells):
        print(f"### {name}\n\n{head}\n" + "|---" * 13 + "|")
        for c in (c for c in cells if c["dataset"] == name):
            asr = (
                f"{_f(c['asr'])} -> {_f(c['asr_after'])}"
                if c["asr_after"] is not None
                else _f(c["asr"])
            )
            acc = (
                f"{_f(c['clean_accuracy'], 4)} -> {_f(c['clean_accuracy_after'], 4)}"
                if c["clean_accuracy_after"] is not None
                else _f(c["clean_accuracy"], 4)
            )
            art = (
                f"{_f(c['f1'])} / {_f(c['best_art_f1'])} = {c['art_ratio']:.1f}x"
                if c["art_ratio"] is not None and c["attack"] not in FLIPS
                else ""
            )
            cl = (
                f"{_f(c['cleanlab_error_ratio'], 2)}"
                if c["cleanlab_error_ratio"] is not None
                else ""
            )
            cols = (
                c["attack"],
                c["rate"],
                c["seed"],
                _f(c["precision"]),
                _f(c["recall"]),
                _f(c["f1"]),
                _f(c["auroc"]),
                _f(c["flag_rate"], 4),
                asr,
                acc,
                art,
                cl,
                _f(c["time_s"], 0),
            )
            print("| " + " | ".join(str(x) for x in cols) + " |")
        print()
    held: dict[str, list[int]] = {}
    failed: list[str] = []
    for c in cells:
        for bar, ok in bars(c):
            held.setdefault(bar, [0, 0])[0 if ok else 1] += 1
            if not ok:
                failed.append(f"{c['dataset']}/{c['attack']}/{c['rate']}/{c['seed']}: {bar}")
    print("| bar (issue #4) | cells held | cells not held |\n|---|---|---|")
    for bar, (ok, bad) in held.items():
        print(f"| {bar} | {ok} | {bad} |")
    if failed:
        print("\nNot held:\n" + "\n".join(f"- {f}" for f in failed))
    print(
        "\n| dataset | attack | rate | seed | forward s | feature-space s (x forward) "
        "| whole scan s (x forward) |\n|---|---|---|---|---|---|---|"
    )
    for c in cells:
        fwd = c["forward_s"]
        if not fwd or c["time_s"] is None:
            continue
        print(
            f"| {c['dataset']} | {c['attack']} | {c['rate']} | {c['seed']} | {fwd:.1f} "
            f"| {c['feature_space_s']:.1f} ({c['feature_space_s'] / fwd:.2f}x) "
            f"| {c['time_s']:.1f} ({c['time_s'] / fwd:.1f}x) |"
        )
    if missing:
        more = f", ... ({len(missing) - 8} more)" if len(missing) > 8 else ""
        print(f"\nNot finished ({len(missing)}): " + ", ".join(missing[:8]) + more)
    if args.json:
        args.json.write_text(json.dumps(cells, indent=1) + "\n")


if __name__ == "__main__":
    main()
