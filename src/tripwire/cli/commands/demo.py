"""``tripwire demo``: the end-to-end tour on bundled MNIST digits, offline, in minutes.

For now it covers the foundation: provenance (manifest and verify), the reference
trainer, and the report in every format. Later layers add the red-team/blue-team run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.cli.common import console, out, positive_int
from tripwire.errors import MissingDependencyError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="train on bundled MNIST digits and write a manifest and a report"
    )
    p.add_argument(
        "--out-dir", default="tripwire-demo", help="where to write (default: ./tripwire-demo)"
    )
    p.add_argument(
        "--data", default="bundled:mnist", help="bundled:mnist (default) or bundled:digits"
    )
    p.add_argument("--epochs", type=positive_int, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    from tripwire.ingest import build_manifest, read_manifest, verify_dataset, write_manifest
    from tripwire.io import load_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model
    from tripwire.reports import Figure, Report, write_reports

    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = load_dataset(args.data, split="train")
    test = load_dataset(args.data, split="test")
    console.print(f"[bold]1/3 provenance[/]: hashing {len(train)} training samples")
    manifest_path = out_dir / "manifest.jsonl"
    write_manifest(build_manifest(train, None), manifest_path)
    check = verify_dataset(train, read_manifest(manifest_path))

    console.print(f"[bold]2/3 training[/] on {len(train)} samples, testing on {len(test)}")
    result = train_model(train, TrainConfig(epochs=args.epochs, seed=args.seed), test=test)
    model_path = out_dir / "model.pt"
    meta = save_model(result, model_path, train)

    console.print("[bold]3/3 report[/]")
    probs_pred = result.model.eval()(torch.from_numpy(test.model_input())).argmax(1).numpy()
    per_class = [float((probs_pred[test.y == c] == c).mean()) for c in range(test.n_classes)]
    confusion = np.zeros((test.n_classes, test.n_classes), dtype=int)
    np.add.at(confusion, (test.y, probs_pred), 1)
    examples = [int(np.flatnonzero(train.y == c)[0]) for c in range(train.n_classes)]
    report = Report(
        command="demo",
        inputs={
            "data": train.describe(),
            "test": test.describe(),
            "model": {"path": str(model_path), "sha256": meta["model_sha256"]},
        },
        summary={
            "test_accuracy": round(result.accuracy, 4),
            "arch": result.arch,
            "epochs": result.epochs,
            "train_time_s": round(result.train_time_s, 1),
            "manifest": str(manifest_path),
            "manifest_verified": check.ok,
        },
        metrics={"per_class_accuracy": per_class, "history": result.history},
        figures=[
            Figure(
                kind="images",
                title="One training sample per class",
                data=Figure.images_from_arrays(
                    "", [train.x[i] for i in examples], [str(train.y[i]) for i in examples]
                ).data,
            ),
            Figure(
                kind="line",
                title="Training loss per epoch",
                data={
                    "series": [
                        {
                            "name": "loss",
                            "x": [h["epoch"] for h in result.history],
                            "y": [h["loss"] for h in result.history],
                        }
                    ],
                    "xlabel": "epoch",
                    "ylabel": "cross-entropy",
                },
            ),
            Figure(
                kind="bar",
                title="Test accuracy per class",
                data={"labels": [str(c) for c in range(test.n_classes)], "values": per_class},
            ),
            Figure(
                kind="table",
                title="Confusion matrix (rows: true class, columns: predicted)",
                data={
                    "columns": ["true"] + [str(c) for c in range(test.n_classes)],
                    "rows": [[str(c), *map(int, confusion[c])] for c in range(test.n_classes)],
                },
            ),
        ],
    )
    write_reports(
        report,
        json_path=out_dir / "report.json",
        html_path=out_dir / "report.html",
        markdown_path=out_dir / "report.md",
        sarif_path=out_dir / "report.sarif",
    )
    out(
        f"test accuracy: {result.accuracy:.4f} ({len(test)} held-out digits, "
        f"{result.arch}, {result.epochs} epochs)"
    )
    out(
        f"manifest: {manifest_path} ({len(train)} samples, verified: {'yes' if check.ok else 'NO'})"
    )
    out(f"model: {model_path}")
    out(f"report: {out_dir / 'report.html'} (also .json, .md, .sarif)")
    from tripwire.gateway.demo import extraction_scenario

    out(extraction_scenario(model_path, train, test, out_dir / "gateway")["summary"])
    out(f"done in {time.perf_counter() - started:.0f} s")
    return 0
