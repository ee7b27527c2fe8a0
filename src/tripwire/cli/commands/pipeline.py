"""``tripwire pipeline``: verify, scan, train, scan the model, register, promote."""

from __future__ import annotations

import argparse
from typing import Any

from tripwire.cli.common import console, out
from tripwire.errors import InputError


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "pipeline",
        help="run the layers on a data delivery: verify, scan-data, train, scan-model, "
        "register, promote",
        description=(
            "Run the defence layers in order on one delivery of data, as a config file "
            "describes (examples/pipeline/pipeline.toml): verify the manifest, scan the "
            "data, train (or take a model), scan the model against a clean reference set, "
            "register it with every report and promote it to an alias when every scan "
            "passes. Each stage's report goes to the output folder with pipeline.json and "
            "index.html. Exit 0 all clean, 1 a stage failed its gate, 2 bad config or input."
        ),
    )
    p.add_argument("--config", required=True, metavar="pipeline.toml")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [pipeline] out)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from tripwire.response.pipeline import load_config, run_pipeline

    cfg = load_config(args.config)
    if args.out is not None:
        if not str(args.out).strip():
            raise InputError("empty path", "--out")
        cfg = replace(cfg, out=Path(args.out))
    res = run_pipeline(cfg, progress=console.print)
    for s in res.stages:
        if s.status == "error":
            # The one-line error contract: the stage's own message, then exit 2.
            raise InputError(f"stage {s.stage} could not run: {s.message}", args.config)
    what = f"promoted {res.version} to '{res.alias}'" if res.promoted else "not promoted"
    out(f"pipeline: {what}; exit {res.exit_code}; summary in {Path(res.out) / 'pipeline.json'}")
    return res.exit_code
