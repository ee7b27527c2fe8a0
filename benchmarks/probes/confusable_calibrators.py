"""Probe (negative result): calibrators relabelled to a class the item resembles.

``record_dynamics`` relabels its calibrators to a uniformly drawn other class. Pair
flips (class ``c`` to ``c + 1``) are fitted sooner than such random flips, so the
calibrators' estimate of the mislabelled share reads low on them (session 33). This
probe asks whether calibrators drawn from the data's own confusions, each relabelled
to another class with probability in proportion to its out-of-sample probability of
that class (the mistake an annotator would make), show better where flips fall. One
training run of the suite's recipe per cell with such calibrators (same seed, same
positions as ``plant_calibrators``), then the planted cut and the estimate beside the
uniform calibrators' run that ``training_dynamics.py`` stored. The probabilities are
those that ``training_dynamics.py --dump`` saved for the cell.

    PYTHONPATH=src python benchmarks/probes/confusable_calibrators.py \\
        --margins-dir runs/s33/dyn --dump runs/s33/dump cifar10-10k:label-flip:0.05:0
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from tripwire.detectors.calibration import planted_fdr_threshold
from tripwire.detectors.poisoning.dynamics import PLANTED_FDR, area_under_margin
from tripwire.models.train import TrainConfig, train_model

sys.path.insert(0, str(Path(__file__).parent))
from cells import standard_data  # type: ignore[import-not-found]


def confusable(y: np.ndarray, pos: np.ndarray, probs: np.ndarray, seed: int) -> np.ndarray:
    """Labels with the items at ``pos`` moved to another class drawn in proportion to
    their probabilities (a floor of 1e-3 keeps every other class possible)."""
    rng = np.random.default_rng([seed, 0xC0F])
    p = probs[pos].astype(np.float64) + 1e-3
    p[np.arange(pos.size), y[pos]] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    out = y.copy()
    out[pos] = (p.cumsum(axis=1) > rng.random((pos.size, 1))).argmax(axis=1)
    return out


def cut_summary(tag: str, truth: np.ndarray, aum: np.ndarray, planted: np.ndarray) -> None:
    rest = np.ones(aum.size, dtype=bool)
    rest[planted] = False
    threshold, pi = planted_fdr_threshold(-aum[rest], -aum[planted], PLANTED_FDR)
    t = truth[rest]
    flags = -aum[rest] > threshold
    tp = int((t & flags).sum())
    p, r = tp / max(1, int(flags.sum())), tp / max(1, int(t.sum()))
    f1 = 2 * p * r / max(p + r, 1e-12)
    print(
        f"  {tag:>10}: estimated share {pi:.4f} (true {t.mean():.4f}); calibrators' median "
        f"{np.median(-aum[planted]):.3f}, flips' {np.median(-aum[rest][t]):.3f}; "
        f"{int(flags.sum())} flags, precision {p:.3f}, recall {r:.3f}, F1 {f1:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margins-dir", type=Path, required=True)
    ap.add_argument("--dump", type=Path, required=True)
    ap.add_argument("cells", nargs="+", metavar="DATA:KIND:RATE:SEED")
    args = ap.parse_args()
    for cell in args.cells:
        name, kind, rate, seed = cell.split(":")
        spec, ds, truth, _ = standard_data(name, kind, float(rate), int(seed))
        stem = f"{name}_{kind}_{float(rate)}_{seed}"
        with np.load(args.margins_dir / f"{stem}.npz", allow_pickle=False) as z:
            uniform, planted = z["margins"], z["calibrators"]
        with np.load(args.dump / f"{stem}.npz", allow_pickle=False) as z:
            probs = z["probs"]
        truth = np.asarray(truth, dtype=bool)
        print(cell)
        cut_summary("uniform", truth, area_under_margin(uniform), planted)
        y = confusable(np.asarray(ds.y, dtype=np.int64), planted, probs, int(seed))
        res = train_model(
            replace(ds, y=y),
            TrainConfig(arch=spec.arch, epochs=spec.epochs, seed=int(seed), val_fraction=0.0),
            record_margins=True,
        )
        if res.margins is None:
            raise RuntimeError("the training run recorded no margins")
        cut_summary("confusable", truth, area_under_margin(res.margins), planted)


if __name__ == "__main__":
    main()
