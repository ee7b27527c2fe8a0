"""``tripwire scan-data`` and ``tripwire clean``: find poisoned samples, then drop them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.cli.common import add_data_args, console, load_data, out
from tripwire.cli.reporting import add_report_args, emit_report
from tripwire.errors import EXIT_OK, InputError
from tripwire.io import Dataset


def register_scan(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "scan-data",
        help="rank training samples by suspicion, flag poisons, name enriched sources",
        description=(
            "Scan a training set for poisoned samples. Features come from --model (its "
            "features(x) export), from --features, or from a proxy model trained here. "
            "Label checks use out-of-sample probabilities, never the model's in-sample "
            "predictions. The 'poisoned' field of the data is never read."
        ),
    )
    add_data_args(p)
    p.add_argument("--model", help="a TorchScript model that exports features(x)")
    p.add_argument("--features", metavar="F.npy", help="precomputed features, one row per sample")
    p.add_argument(
        "--trusted",
        metavar="CLEAN",
        help="a small clean set, apart from the data, to calibrate thresholds (conservative: "
        "the model never trained on it, so its samples look less familiar than the data's)",
    )
    p.add_argument(
        "--trusted-source",
        metavar="NAMES",
        help="the data's samples from these sources (comma-separated values of its 'source' "
        "field) are verified clean: thresholds are calibrated on their scores",
    )
    p.add_argument("--detectors", help="comma-separated detector names (default: all that apply)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="epochs of the proxy model (no --model/--features)")
    p.add_argument(
        "--dynamics",
        action="store_true",
        help="record every sample's margin in every epoch of a training run on the data "
        "and run the training-margin detector (label flips the network disputed before "
        "memorising them): one training run of its own, with 1%% of the labels replaced "
        "at random as calibrators of its cut",
    )
    add_report_args(p)
    p.set_defaults(func=run_scan)
    return p


def register_clean(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "clean", help="write the dataset without the samples a scan-data report flagged"
    )
    add_data_args(p)
    p.add_argument("--report", required=True, metavar="REPORT.json")
    p.add_argument("--out", required=True, metavar="CLEAN.npz")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train on the cleaned data; report accuracy and attack success before/after",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.set_defaults(func=run_clean)
    return p


def _load_npy(path: str, flag: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except ValueError as exc:
        raise InputError(f"not a readable .npy array ({exc})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc})", path) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{flag} must be a numeric .npy array", path)
    return arr


def _features(
    args: argparse.Namespace, ds: Dataset, trusted: Dataset | None
) -> tuple[np.ndarray, np.ndarray | None, str, Any]:
    """Features of the data (and of the trusted set), where they came from, and the
    model trained on the data (the given one or the proxy; ``None`` with features
    only)."""
    if args.features:
        if trusted is not None and not args.model:
            raise InputError(
                "with --features, --trusted also needs --model to compute its features", "--trusted"
            )
        feats = _load_npy(args.features, "--features")
        if feats.ndim != 2 or feats.shape[0] != len(ds):
            raise InputError(
                f"has shape {feats.shape}; expected ({len(ds)}, F), one row per sample of the data",
                args.features,
            )
        origin = f"features file {args.features}"
        if not args.model:
            return feats.astype(np.float64), None, origin, None
    from tripwire.models.loading import load_model

    if args.model:
        model = load_model(args.model, input_shape=ds.input_shape)
        model.check_input(ds.input_shape, ds.n_classes)
        if not model.has_features:
            raise InputError(
                "exports no features(x); pass --features or omit --model to "
                "let tripwire train a proxy",
                args.model,
            )
        feats = (
            np.asarray(model.features(ds.model_input(), show_progress=True))
            if not args.features
            else feats
        )
        t_feats = None if trusted is None else model.features(trusted.model_input())
        return feats, t_feats, f"model {args.model}", model
    import torch

    from tripwire.models.train import TrainConfig, train_model

    console.print("no --model or --features: training a proxy model on the data")
    result = train_model(ds, TrainConfig(seed=args.seed, epochs=args.epochs))
    net = result.model.eval()

    def embed(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [
                    net.features(torch.from_numpy(x[s : s + 512])).numpy()
                    for s in range(0, len(x), 512)
                ]
            )

    from tripwire.models.loading import model_from_module

    t_feats = None if trusted is None else embed(trusted.model_input())
    proxy = model_from_module(net, f"proxy {result.arch}")
    origin = f"proxy {result.arch} trained here"
    return embed(ds.model_input()), t_feats, origin, proxy


def _trusted_sources(ds: Dataset, spec: str) -> np.ndarray:
    """The mask of the samples whose source is one of ``spec``'s comma-separated names."""
    names = {n.strip() for n in spec.split(",") if n.strip()}
    if ds.source is None:
        raise InputError("the data has no 'source' field to pick trusted samples by", ds.path)
    src = np.asarray(ds.source).astype(str)
    unknown = sorted(names - set(src.tolist()))
    if unknown:
        known = ", ".join(sorted(set(src.tolist()))[:10])
        raise InputError(f"no samples from source {', '.join(unknown)} (sources: {known})", ds.path)
    return np.isin(src, sorted(names))


def class_projections(
    feats: np.ndarray, labels: np.ndarray, flags: np.ndarray, max_classes: int = 3
) -> list[Any]:
    """2-D principal projections of the classes holding the most flags, coloured by flag.

    A reviewer sees at once whether the flags form a cluster of their own (a backdoor's
    poisons) or sit scattered at the class's edge (label noise, outliers).
    """
    from tripwire.reports import Figure

    counts = np.bincount(labels[flags], minlength=int(labels.max()) + 1)
    classes = [int(c) for c in np.argsort(-counts)[:max_classes] if counts[c] > 0]
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if idx.size < 3:
            continue
        f = feats[idx] - feats[idx].mean(axis=0)
        # Top two right singular vectors: PCA without another dependency.
        _, _, vt = np.linalg.svd(f[:2000] if idx.size > 2000 else f, full_matrices=False)
        xy = f @ vt[:2].T
        if xy.shape[1] < 2:
            xy = np.hstack([xy, np.zeros((idx.size, 1))])
        out.append(
            Figure(
                kind="scatter",
                title=f"Class {c}: activations (2 principal components), flagged vs kept",
                data={
                    "x": [round(float(v), 4) for v in xy[:, 0]],
                    "y": [round(float(v), 4) for v in xy[:, 1]],
                    "color": ["flagged" if flags[i] else "kept" for i in idx],
                    "xlabel": "PC 1",
                    "ylabel": "PC 2",
                },
            )
        )
    return out


def run_scan(args: argparse.Namespace) -> int:
    from tripwire.reports import Figure, Report, exit_code_for
    from tripwire.scan.data import scan_data

    if not (args.out or args.html or args.sarif or args.markdown):
        raise InputError("say where the report goes (--out REPORT.json, --html, --sarif)", "--out")
    ds = load_data(args)
    trusted = load_data(args, spec=args.trusted, split="train") if args.trusted else None
    if trusted is not None and trusted.input_shape != ds.input_shape:
        raise InputError(
            f"trusted samples have shape {trusted.input_shape}, the data {ds.input_shape}",
            args.trusted,
        )
    if trusted is not None and args.trusted_source:
        raise InputError("give --trusted or --trusted-source, not both", "--trusted-source")
    verified = _trusted_sources(ds, args.trusted_source) if args.trusted_source else None
    names = [n.strip() for n in args.detectors.split(",")] if args.detectors else None
    if names and "training-margin" in names and not args.dynamics:
        # Said before any training: the margins come only from a run --dynamics asks for.
        raise InputError(
            "training-margin reads a training run's margins: add --dynamics", "--detectors"
        )
    feats, t_feats, origin, model = _features(args, ds, trusted)
    dynamics = None
    if args.dynamics:
        from tripwire.detectors.poisoning.dynamics import record_dynamics

        # A run of its own, even beside a proxy trained here: its planted calibrators
        # would teach the proxy wrong labels that the other label checks then flag.
        console.print("--dynamics: a training run on the data with planted calibrators")
        dynamics = record_dynamics(ds, epochs=args.epochs, seed=args.seed)
    res = scan_data(
        ds,
        feats,
        detectors=names,
        trusted_features=t_feats,
        trusted_labels=None if trusted is None else trusted.y,
        trusted_images=None if trusted is None or not trusted.is_image else trusted.model_input(),
        trusted_mask=verified,
        seed=args.seed,
        feature_origin=origin,
        artifact=str(args.data),
        model=model,
        margins=None if dynamics is None else dynamics.margins,
        calibrators=None if dynamics is None else dynamics.calibrators,
    )
    order = np.argsort(-res.scores)[:24]
    figures = [
        Figure.histogram(
            "Combined suspicion score (1.0 = a detector's threshold)",
            res.scores.tolist(),
            threshold=1.0,
        ),
        Figure.table(
            "Sources",
            ["source", "samples", "flagged", "enrichment", "p_value"],
            [
                [r["source"], r["samples"], r["flagged"], r["enrichment"], r["p_value"]]
                for r in res.sources
            ],
        ),
        Figure.table(
            "Calibration (how the thresholds were set)",
            ["reference", "samples", "flagged among them"],
            [
                [
                    res.calibration.get("kind", "robust statistics"),
                    res.calibration.get("samples", ""),
                    res.calibration.get("flagged", ""),
                ]
            ],
        ),
        Figure.table(
            "Per class",
            ["class", "samples", "flagged"],
            [[c["class"], c["samples"], c["flagged"]] for c in res.per_class],
        ),
    ]
    figures[1:1] = class_projections(feats, ds.y, res.flags)
    if ds.is_image:
        figures.insert(
            1,
            Figure.images_from_arrays(
                "Most suspicious samples (label, score)",
                [ds.x[i] for i in order],
                [f"#{int(i)} y={int(ds.y[i])} s={res.scores[i]:.2f}" for i in order],
            ),
        )
    report = Report(
        command="scan-data",
        inputs={
            "data": ds.describe(),
            "features": {"origin": res.feature_origin},
            "probabilities": {"origin": res.probs_origin},
        },
        summary={
            "samples": len(ds),
            "flagged": len(res.flagged),
            "detectors": sorted(res.detectors),
            "calibration": res.calibration.get("kind", "robust statistics"),
            "label_agreement": res.label_agreement,
        },
        findings=res.findings,
        figures=figures,
        sections=res.sections(),
    )
    emit_report(report, args)
    out(
        f"{len(res.flagged)} of {len(ds)} samples flagged by "
        f"{', '.join(sorted(res.detectors)) or 'no detector'}; {len(res.findings)} finding(s)"
    )
    return exit_code_for(res.findings, args.fail_on)


def run_clean(args: argparse.Namespace) -> int:
    from tripwire.io import save_dataset

    ds = load_data(args)
    try:
        report = json.loads(Path(args.report).read_text())
    except FileNotFoundError:
        raise InputError("no such file", args.report) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a JSON report ({exc})", args.report) from None
    flagged = report.get("flagged") if isinstance(report, dict) else None
    scores = report.get("scores") if isinstance(report, dict) else None
    if not isinstance(flagged, list) or not isinstance(scores, list):
        raise InputError("is not a scan-data report (no 'flagged'/'scores')", args.report)
    if len(scores) != len(ds):
        raise InputError(f"covers {len(scores)} samples but the data has {len(ds)}", args.report)
    idx = np.asarray(flagged, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(ds)):
        raise InputError("flags positions outside the data", args.report)
    keep = np.setdiff1d(np.arange(len(ds)), idx)
    cleaned = ds.subset(keep)
    save_dataset(cleaned, args.out)
    out(f"kept {len(keep)} of {len(ds)} samples; written to {args.out}")
    if args.retrain:
        _retrain_report(args, ds, cleaned)
    return EXIT_OK


def _retrain_report(args: argparse.Namespace, ds: Dataset, cleaned: Dataset) -> None:
    import torch

    from tripwire.attacks import attack_success_rate, get_kind
    from tripwire.io import load_test_split
    from tripwire.models.train import TrainConfig, train_model

    test = load_test_split(args.data, label_column=args.label_column, image_size=args.image_size)
    results: dict[str, Any] = {}
    for name, data in (("before", ds), ("after", cleaned)):
        r = train_model(data, TrainConfig(seed=args.seed, epochs=args.epochs), test=test)
        net = r.model.eval()

        def predict(x: np.ndarray, net: Any = net) -> np.ndarray:
            with torch.inference_mode():
                return np.asarray(net(torch.from_numpy(x)).argmax(1).numpy())

        row: dict[str, Any] = {"accuracy": round(r.accuracy, 4), "eval_split": r.eval_split}
        if (
            test is not None
            and ds.attack is not None
            and get_kind(str(ds.attack.get("kind"))).trigger is not None
        ):
            row["attack_success_rate"] = round(attack_success_rate(predict, test, ds.attack), 4)
        results[name] = row
    out(json.dumps({"retrain": results}))
