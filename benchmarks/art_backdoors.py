"""ART's backdoor poisons on a standard-suite dataset, scanned as the bench scans a cell.

tripwire's ensemble rules were set on tripwire's own attacks; this checks them on
poisons that ART (adversarial-robustness-toolbox) makes. On one dataset of the standard
suite (default: the CIFAR-10 subset, where the inputs do not predict their labels and
the ensemble's lone-member extension applies), ``--rate`` of the non-target training
items are poisoned with ART's ``PoisoningAttackBackdoor`` and relabelled to
``--target``:

- ``pattern``: ``add_pattern_bd`` (ART's BadNets corner pattern);
- ``blend``: ``insert_image`` of a full-size random image (written to a temporary PNG,
  seeded) at opacity ``--blend`` (Chen et al.'s blended attack, ART's implementation);
- ``clean``: no poison (the false-flag control).

The suite's recipe trains on each set (cached in ``--cache-dir`` like the bench's
models), then every detector runs as in a bench cell, calibrated on ``--trusted``
verified samples of the training set (0: robust statistics), and the ensemble combines
them twice: as shipped, and with the lone-member extension switched off
(``MIN_EXTENDED_SHARE`` above 1), so that what the extension adds on ART's poisons is
read side by side. ART's ActivationDefence and SpectralSignatureDefense run on the same
model and data. One JSON line per (poison, row) in ``--out``. With ``--dump DIR`` each
cell's labels, truth, features, probabilities and detector outputs are also stored
there (``DIR/<data>_art-<kind>_<rate>_<seed>.npz``, the ensemble cache's layout: ``s__``
and ``f__`` arrays, thresholds in ``meta``; no pickles), to read what the ensemble
missed without training again.

    PYTHONPATH=src python benchmarks/art_backdoors.py --data cifar10-10k \\
        --kinds clean,pattern,blend --trusted 500 --out runs/art_backdoors.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.bench import runner
from tripwire.bench.metrics import detection_metrics
from tripwire.io import Dataset
from tripwire.io.dataset import from_model_space
from tripwire.scan import ensemble
from tripwire.scan.data import scan_ensemble

sys.path.insert(0, str(Path(__file__).parent / "probes"))
from cells import DATA_DIR, standard_suite  # type: ignore[import-not-found]


def art_poison(
    train: Dataset, kind: str, *, rate: float, target: int, blend: float, seed: int
) -> tuple[Dataset, np.ndarray, Any]:
    """``train`` with ART's ``kind`` poison on ``rate`` of its non-target items (their
    labels set to ``target``), the poisoned mask, and the trigger (model space in, out)."""
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd, insert_image

    truth = np.zeros(len(train), dtype=bool)
    if kind == "clean":
        return train, truth, None
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(train.y != target)
    idx = np.sort(rng.choice(pool, round(rate * len(train)), replace=False))
    x = train.model_input(idx)  # NCHW in [0, 1]
    if kind == "pattern":

        def trigger(batch: np.ndarray) -> np.ndarray:
            return add_pattern_bd(batch, distance=2, pixel_value=1, channels_first=True)

    elif kind == "blend":
        from PIL import Image

        h, w = x.shape[2:]
        noise = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        png = Path(tempfile.mkdtemp()) / "blend.png"
        Image.fromarray(noise, mode="RGB").save(png)
        mode = "RGB" if x.shape[1] == 3 else "L"

        def trigger(batch: np.ndarray) -> np.ndarray:
            return insert_image(
                batch,
                backdoor_path=str(png),
                channels_first=True,
                random=False,
                size=(h, w),
                mode=mode,
                blend=blend,
            )

    else:
        raise SystemExit(f"{kind}: not one of clean, pattern, blend")
    onehot = np.eye(train.n_classes, dtype=np.float32)[target]
    x_art, _ = PoisoningAttackBackdoor(trigger).poison(x, y=onehot, broadcast=True)
    images = train.x.copy()
    images[idx] = from_model_space(np.clip(x_art, 0.0, 1.0), train.layout, train.x.dtype)
    labels = train.y.copy()
    labels[idx] = target
    truth[idx] = True
    return replace(train, x=images, y=labels, poisoned=truth, attack=None), truth, trigger


def attack_success(model: Any, test: Dataset, trigger: Any, target: int) -> float:
    keep = np.flatnonzero(test.y != target)
    x = np.clip(trigger(test.model_input(keep)), 0.0, 1.0).astype(np.float32)
    return float((model.predict(x) == target).mean())


def dump_cell(
    folder: Path,
    name: str,
    ds: Dataset,
    results: dict[str, Any],
    features: np.ndarray,
    probs: np.ndarray,
) -> None:
    """The cell's labels, truth, model features and probabilities and its detectors'
    scores, flags and thresholds, in ``folder/name.npz`` (no pickles)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "y": ds.y,
        "truth": np.zeros(len(ds), bool) if ds.poisoned is None else np.asarray(ds.poisoned),
        "features": np.asarray(features, np.float32),
        "probs": np.asarray(probs, np.float32),
    }
    for name_, r in results.items():
        arrays[f"s__{name_}"] = np.asarray(r.scores, float)
        arrays[f"f__{name_}"] = np.asarray(r.flags, bool)
    meta = {n: float(r.threshold) for n, r in results.items()}
    np.savez_compressed(folder / f"{name}.npz", meta=np.array(json.dumps(meta)), **arrays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10-10k", help="standard-suite dataset[@arch]")
    ap.add_argument("--kinds", default="clean,pattern,blend")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--target", type=int, default=0)
    ap.add_argument("--blend", type=float, default=0.2, help="opacity of the blended image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trusted", type=int, default=500, help="verified samples (0: none)")
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/std-cache"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dump", type=Path, help="folder for each cell's detector outputs")
    args = ap.parse_args()

    _, spec = standard_suite(args.data)
    spec = replace(spec, spec=spec.spec.format(data_dir=DATA_DIR))
    train, test = runner.load_suite_data(spec, DATA_DIR)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        ds, truth, trigger = art_poison(
            train, kind, rate=args.rate, target=args.target, blend=args.blend, seed=args.seed
        )
        model = runner.train_cached(ds, test, spec, args.seed, args.cache_dir)
        asr = None if trigger is None else attack_success(model, test, trigger, args.target)
        inputs, forward_s = runner.detector_input(ds, model, args.seed)
        space, feats, probs = inputs.input_space, inputs.features, inputs.probs
        if space is None or feats is None or probs is None:
            raise RuntimeError("incomplete detector input")
        verified = (
            runner.verified_subset(ds.y, truth, args.trusted, args.seed) if args.trusted else None
        )
        ours, _ = runner.run_detectors(inputs, verified)
        shipped = scan_ensemble(ours, ds, space, args.seed, feats)
        default_share = ensemble.MIN_EXTENDED_SHARE
        ensemble.MIN_EXTENDED_SHARE = 2.0  # no group holds more than all of a member's flags
        try:
            without = scan_ensemble(ours, ds, space, args.seed, feats)
        finally:
            ensemble.MIN_EXTENDED_SHARE = default_share
        rows: dict[str, tuple[np.ndarray, np.ndarray]] = {
            name: (r.scores, r.flags) for name, r in ours.items()
        }
        rows["tripwire:ensemble"] = (shipped.scores, shipped.flags)
        rows["tripwire:ensemble (no extension)"] = (without.scores, without.flags)
        for name, (scores, flags, _) in runner.baselines(
            feats, ds.y, probs, ds=ds, module=model.module
        ).items():
            rows[name] = (scores, flags)
        if args.dump is not None:
            cell = f"{args.data}_art-{kind}_{args.rate}_{args.seed}"
            dump_cell(args.dump, cell, ds, ours, feats, probs)
        extended = {
            fam: entry["lone_extended"]
            for fam, entry in shipped.families.items()
            if "lone_extended" in entry
        }
        base = {
            "data": args.data,
            "poison": f"art-{kind}" if kind != "clean" else "clean",
            "rate": args.rate if kind != "clean" else 0.0,
            "seed": args.seed,
            "trusted": args.trusted,
            "clean_accuracy": round(model.accuracy, 4),
            "asr": None if asr is None else round(asr, 4),
            "forward_s": round(forward_s, 2),
            "lone_extended": extended,
        }
        with args.out.open("a") as fh:
            for name, (scores, flags) in rows.items():
                row = {**base, "row": name, **detection_metrics(truth, scores, flags)}
                fh.write(json.dumps(row) + "\n")
        ens = detection_metrics(truth, shipped.scores, shipped.flags)
        print(
            f"{args.data} {kind}: acc {model.accuracy:.3f} asr {asr} ensemble "
            f"{ens.get('n_flagged')} flagged P {ens.get('precision')} R {ens.get('recall')} "
            f"extended {extended} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
