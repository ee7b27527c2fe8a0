"""``tripwire scan-model``: reverse-engineer triggers for every class and flag outliers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.cli.common import add_data_args, console, load_data, out, positive_int
from tripwire.cli.reporting import add_report_args, emit_report
from tripwire.errors import InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "scan-model",
        help="scan a trained model for backdoors: target classes and reversed triggers",
        description=(
            "Reverse-engineer, for every class at once, the smallest patch trigger (Neural "
            "Cleanse's form) and the faintest full-image pattern that send clean inputs to "
            "it; a class reached by a far smaller trigger than the others (anomaly index > "
            "2) is a suspected backdoor target. Writes REPORT.json, REPORT.triggers.npz "
            "(every class's reversed trigger, for tripwire repair) and trigger images."
        ),
    )
    p.add_argument("model", metavar="MODEL.pt", help="a TorchScript classifier")
    p.add_argument("--data", required=True, metavar="CLEAN", help="a small clean set")
    add_data_args(p, positional=False)
    p.add_argument("--max-samples", type=positive_int, help="use at most N clean samples")
    p.add_argument(
        "--methods", default="patch,blend", help="trigger searches to run (default: patch,blend)"
    )
    p.add_argument("--data-report", metavar="SCAN.json", help="a scan-data report to cross-check")
    p.add_argument("--seed", type=int, default=0)
    add_report_args(p)
    p.set_defaults(func=run)
    return p


def _read_json(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a JSON report ({str(exc)[:120]})", path) from None
    if not isinstance(doc, dict):
        raise InputError("is not a JSON report object", path)
    return doc


def run(args: argparse.Namespace) -> int:
    from tripwire.detectors.backdoor.trigger import save_triggers
    from tripwire.models.loading import load_model
    from tripwire.reports import Report, exit_code_for
    from tripwire.scan.model import check_model_and_data, scan_model

    if not args.out:
        raise InputError(
            "say where the report goes (--out REPORT.json; the triggers file goes beside it)",
            "--out",
        )
    data = load_data(args)
    if not data.is_image:
        raise InputError("scan-model needs image data; got a table", args.data)
    data_report = None
    if args.data_report:
        data_report = _read_json(args.data_report)
        if data_report.get("command") != "scan-data":
            raise InputError("is not a scan-data report", args.data_report)
    model = load_model(args.model, input_shape=data.input_shape)
    check_model_and_data(model, data)  # fail before any progress output
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    n = len(data) if not args.max_samples else min(len(data), args.max_samples)
    used = f"{n} clean samples" + (f" (of {len(data)})" if n < len(data) else "")
    console.print(f"scanning {args.model} with {used} ({', '.join(methods)})")
    try:
        res = scan_model(
            model,
            data,
            max_samples=args.max_samples,
            random_state=args.seed,
            methods=methods,
            data_report=data_report,
            artifact=str(args.model),
        )
    except InputError as exc:
        # Name the file the problem is about when the scan only knew a role.
        if exc.path in ("data", None):
            raise InputError(exc.message, args.data) from None
        raise
    out_path = Path(args.out)
    trig_name = out_path.with_suffix("").name + ".triggers.npz"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_triggers(str(out_path.parent / trig_name), res.triggers)
    pngs = _save_pngs(res, out_path)
    figures = _figures(res)
    doc = res.to_dict()
    doc.pop("findings")
    report = Report(
        command="scan-model",
        inputs={
            "model": {"path": str(args.model), "kind": model.kind, "device": res.device},
            "data": data.describe(),
        },
        summary={
            "verdict": res.verdict,
            "target_classes": res.target_classes,
            "classes": len(res.classes),
            "clean_samples": res.samples,
            "methods": res.methods,
            "time_s": round(res.time_s, 1),
        },
        findings=res.findings,
        figures=figures,
        sections={**doc, "triggers_file": trig_name, "trigger_images": pngs},
    )
    emit_report(report, args)
    fired = sorted({m for c in res.classes for m in c.fired})
    out(
        f"verdict: {res.verdict}; target classes {res.target_classes or 'none'}"
        + (f" (evidence: {', '.join(fired)})" if fired else "")
        + f"; {res.time_s:.1f} s; triggers in {out_path.parent / trig_name}"
    )
    return exit_code_for(res.findings, args.fail_on)


def _stamp(mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """The trigger as it appears on a black image: pattern * mask, channels first."""
    return np.asarray(np.clip(pattern * mask[None], 0.0, 1.0))


def _save_pngs(res: Any, out_path: Path) -> list[str]:
    """PNG files of the flagged classes' triggers (mask and stamp), beside the report."""
    from tripwire.reports.images import to_uint8_image

    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow ships with the image extras
        return []
    names: list[str] = []
    stem = out_path.with_suffix("").name
    for c in res.classes:
        for m in c.fired:
            t = res.trigger(c.cls, m)
            for what, arr in (("mask", t.mask), ("trigger", _stamp(t.mask, t.pattern))):
                name = f"{stem}.class{c.cls}.{m}.{what}.png"
                Image.fromarray(to_uint8_image(arr)).save(out_path.parent / name)
                names.append(name)
    return names


def _figures(res: Any) -> list[Any]:
    from tripwire.reports import Figure

    figs = [
        Figure.table(
            "Per class (anomaly index > 2 below the median flags a class)",
            ["class", "flagged", "fired"]
            + [f"{m} {k}" for m in res.methods for k in ("size", "index", "success")],
            [
                [c.cls, c.flagged, ",".join(c.fired) or "-"]
                + [
                    c.evidence[m][k]
                    for m in res.methods
                    for k in ("trigger_norm", "anomaly_index", "attack_success")
                ]
                for c in res.classes
            ],
        )
    ]
    for m in res.methods:
        figs.append(
            Figure.bar(
                f"{m}: anomaly index per class",
                [str(c.cls) for c in res.classes],
                [float(c.evidence[m]["anomaly_index"] or 0.0) for c in res.classes],
                xlabel="class",
                ylabel="anomaly index",
            )
        )
        trig = [res.trigger(c.cls, m) for c in res.classes]
        figs.append(
            Figure.images_from_arrays(
                f"{m}: reversed triggers (pattern x mask), one per class",
                [_stamp(t.mask, t.pattern) for t in trig],
                [
                    f"class {t.target}{' FLAGGED' if m in c.fired else ''}"
                    for t, c in zip(trig, res.classes, strict=True)
                ],
            )
        )
        if m == "patch":
            figs.append(
                Figure.images_from_arrays(
                    "patch: reversed masks, one per class",
                    [t.mask for t in trig],
                    [f"class {t.target} L1 {t.norm:.1f}" for t in trig],
                )
            )
    return figs
