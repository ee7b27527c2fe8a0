"""``tripwire repair``: remove a backdoor that ``scan-model`` found, with clean data."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.cli.common import add_data_args, console, load_data, out, positive_int
from tripwire.errors import InputError, MissingDependencyError
from tripwire.reports.jsonutil import dumps_strict


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "repair",
        help="remove a backdoor (unlearning with the reversed trigger, fine-pruning)",
        description=(
            "Repair MODEL with the reversed trigger(s) of the classes a scan-model report "
            "flagged and a small clean set: fine-prune the penultimate neurons the trigger "
            "drives, then fine-tune on the clean data with a share of inputs carrying the "
            "trigger under their true labels. Clean accuracy and the trigger's attack "
            "success rate are measured on a held-out part of the clean data, before and "
            "after; where the data records an attack, its real trigger is measured too. "
            "Writes a TorchScript model (forward, features, forward_features) and "
            "REPAIRED.meta.json beside it."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="the model to repair (TorchScript .pt)")
    add_data_args(p, positional=False)
    p.add_argument("--data", required=True, metavar="CLEAN", help="a small clean set")
    p.add_argument("--report", required=True, metavar="REPORT.json", help="scan-model report")
    p.add_argument("--out", required=True, metavar="REPAIRED.pt", help="where to write")
    p.add_argument("--method", choices=("both", "unlearn", "prune"), default="both")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (default 10)")
    p.add_argument(
        "--lr", type=float, default=0.001, help="fine-tuning learning rate (default 0.001)"
    )
    p.add_argument(
        "--trigger-share",
        type=float,
        default=0.5,
        help="share of each fine-tuning batch stamped with a reversed trigger (default 0.5)",
    )
    p.add_argument(
        "--distill",
        type=float,
        default=0.9,
        help="weight of self-distillation towards the original model's predictions on the "
        "clean inputs during fine-tuning, in [0, 1); 0 turns it off (default 0.9)",
    )
    p.add_argument(
        "--refresh",
        type=int,
        default=0,
        help="rounds of adversarial unlearning after the first: search the fine-tuned "
        "model again for the flagged classes' triggers and unlearn them too; for a "
        "reversed trigger that is only part of the real one (default 0: off)",
    )
    p.add_argument("--holdout", type=float, default=0.3, help="share of CLEAN kept to measure")
    p.add_argument("--max-samples", type=positive_int, help="use at most this many clean inputs")
    p.add_argument("--arch", help="architecture of a state-dict model")
    p.add_argument("--force", action="store_true", help="repair even if the verdict is clean")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def _pct(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f}%"


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    from tripwire.attacks import apply_trigger
    from tripwire.models.loading import load_model, sniff_model_file
    from tripwire.models.train import file_sha256, metadata_path
    from tripwire.response.repair import (
        RepairConfig,
        read_scan_report,
        repair_model,
        save_repaired,
        triggers_to_remove,
    )

    if not str(args.out).endswith((".pt", ".pth", ".ts")):
        raise InputError("the model is written as TorchScript: use a .pt file name", args.out)
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise InputError("would overwrite the model being repaired; choose another file", "--out")
    if args.epochs < 0:
        raise InputError("must be at least 0", "--epochs")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("no CUDA device is available", "--device")
    if args.threads:
        torch.set_num_threads(args.threads)
    kind = sniff_model_file(args.model)  # refuse pickles and junk before anything else
    if kind == "onnx":
        raise InputError(
            "is an ONNX graph; repair fine-tunes weights (give TorchScript)", args.model
        )
    summary = read_scan_report(args.report)
    triggers = triggers_to_remove(summary, force=args.force)
    ds = load_data(args, spec=args.data)
    if not ds.is_image:
        raise InputError("repair with reversed triggers needs image data", ds.path)
    notes: list[str] = []
    if ds.poisoned is not None and ds.poisoned.any():
        # Rows an attack changed are not clean; keep the rest (the attack record stays).
        keep = np.flatnonzero(~ds.poisoned)
        notes.append(f"dropped {int(ds.poisoned.sum())} rows the data marks as poisoned")
        ds = ds.subset(keep)
    if args.max_samples and len(ds) > args.max_samples:
        rng = np.random.default_rng(args.seed)
        ds = ds.subset(np.sort(rng.choice(len(ds), args.max_samples, replace=False)))
    for t in triggers:
        if t.pattern.shape != ds.input_shape:
            raise InputError(
                f"holds triggers of shape {t.pattern.shape}, the data has inputs of shape "
                f"{ds.input_shape}",
                args.report,
            )
    model = load_model(args.model, arch=args.arch, input_shape=ds.input_shape, device=args.device)
    n_out = model.check_input(ds.input_shape, ds.n_classes)
    bad_targets = [t.target for t in triggers if not 0 <= t.target < n_out]
    if bad_targets:
        raise InputError(f"names classes {bad_targets} the model does not have", args.report)
    attack = ds.attack if ds.attack and ds.attack.get("kind") else None
    real_target = None if attack is None else attack.get("target")
    real = None
    if attack is not None and real_target is not None:

        def real(x: np.ndarray) -> np.ndarray:
            return apply_trigger(x, attack, seed=args.seed)

    cfg = RepairConfig(
        method=args.method,
        epochs=args.epochs,
        lr=args.lr,
        trigger_share=args.trigger_share,
        holdout=args.holdout,
        distill=args.distill,
        refresh=args.refresh,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    console.print(
        f"repairing {args.model} ({args.method}) against the trigger(s) of class(es) "
        f"{sorted({t.target for t in triggers})} with {len(ds)} clean inputs"
    )
    result = repair_model(
        model._module,
        ds.model_input(),
        ds.y,
        triggers,
        cfg,
        device=model.device,
        real_trigger=real,
        real_target=None if real_target is None else int(real_target),
        scan_norms=summary.norms,
    )
    result.notes = notes + result.notes
    save_repaired(model._module, args.out)
    record: dict[str, Any] = {
        "format": "torchscript",
        "model_sha256": file_sha256(args.out),
        "repaired_from": {"path": str(args.model), "sha256": file_sha256(args.model)},
        "report": str(args.report),
        "verdict": summary.verdict,
        "target_classes": summary.target_classes,
        "data": {"path": ds.path, "samples": len(ds), "sha256": ds.content_sha256()},
        "input_shape": list(ds.input_shape),
        "num_classes": n_out,
        "exports": ["forward", "features", "forward_features"],
        "repair": result.to_dict(),
    }
    metadata_path(args.out).write_text(dumps_strict(record) + "\n")
    if args.json:
        out(dumps_strict(record))
        return 0
    out(
        f"clean accuracy {_pct(result.accuracy_before)} -> {_pct(result.accuracy_after)} "
        f"on {result.n_holdout} held-out clean inputs"
    )
    for eff in result.triggers:
        out(
            f"reversed trigger of class {eff.target} ({eff.method}): attack success "
            f"{_pct(eff.before)} -> {_pct(eff.after)}"
        )
    if result.real_asr_before is not None:
        out(
            f"real trigger ({attack.get('kind') if attack else '?'}, from the data's attack "
            f"record): attack success {_pct(result.real_asr_before)} -> "
            f"{_pct(result.real_asr_after)}"
        )
    for rec in result.refreshed:
        out(
            f"refreshed trigger of class {rec.target} ({rec.method}, round {rec.round}, "
            f"size {rec.trigger_norm:.3g}): attack success {_pct(rec.found)} when found "
            f"-> {_pct(rec.after)}"
        )
    for n in result.notes:
        out(f"note: {n}")
    out(f"model: {args.out}")
    out(f"metadata: {metadata_path(args.out)}")
    return 0
