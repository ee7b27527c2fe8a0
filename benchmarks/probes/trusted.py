"""The data scan with and without a trusted set, on one standard-suite cell.

``scan_data`` as ``tripwire scan-data --trusted`` runs it: the suite's cached model
(``runs/std-cache``), its features, and a trusted set of ``N`` clean samples drawn
class-balanced from the dataset's test split (the suite's model never trained on them).
Prints the ensemble's flags, precision and recall, and each detector's flags, both ways.

    PYTHONPATH=src python benchmarks/probes/trusted.py cifar10-10k clean 0.0 0 [N] [trusted]

With the last argument ``trusted``, only the scan with the trusted set runs; with
``verified``, only a scan whose trusted samples are ``N`` clean samples of the training
set itself (drawn class-balanced among the unpoisoned ones: a verified subset, scored in
the same fit as the rest, ``scan_data(trusted_mask=...)``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tripwire.bench.runner import load_suite_data, stratified_subset
from tripwire.models.loading import model_from_module
from tripwire.scan.data import scan_data

sys.path.insert(0, str(Path(__file__).parent))
from cells import DATA_DIR, standard_cell


def main() -> None:
    name, kind, rate, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    n_trusted = int(sys.argv[5]) if len(sys.argv) > 5 else 500
    mode = sys.argv[6] if len(sys.argv) > 6 else "both"
    spec, ds, truth, trained = standard_cell(name, kind, rate, seed)
    _, test = load_suite_data(spec, DATA_DIR)
    trusted = stratified_subset(test, n_trusted, seed=1000 + seed)
    net = model_from_module(trained.module, "suite model")
    feats = trained.features(ds.model_input())
    t_feats = trained.features(trusted.model_input())
    runs = [
        ("no trusted set", {}),
        (
            f"trusted {len(trusted)}",
            {
                "trusted_features": t_feats,
                "trusted_labels": trusted.y,
                "trusted_images": trusted.model_input(),
            },
        ),
    ]
    rng = np.random.default_rng(1000 + seed)
    clean = np.flatnonzero(~truth)
    per = n_trusted // ds.n_classes
    verified = np.zeros(len(ds), bool)
    for c in range(ds.n_classes):
        pool = clean[ds.y[clean] == c]
        verified[rng.permutation(pool)[:per]] = True
    if mode == "verified":
        runs = [(f"verified {int(verified.sum())}", {"trusted_mask": verified})]
    elif mode == "trusted":
        runs = runs[1:]
    for label, kw in runs:
        t0 = time.perf_counter()
        res = scan_data(ds, feats, seed=seed, model=net, **kw)  # type: ignore[arg-type]
        f = res.flags
        tp = int((f & truth).sum())
        prec = tp / max(int(f.sum()), 1)
        rec = tp / max(int(truth.sum()), 1)
        print(
            f"{label}: flagged {int(f.sum())} ({f.mean():.4f}) precision {prec:.3f} "
            f"recall {rec:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        for det, r in res.detectors.items():
            hits = int((r.flags & truth).sum())
            print(
                f"   {det}: {int(r.flags.sum())} flagged, {hits} poisoned, {r.calibration.method}"
            )
        for fam, v in res.ensemble.families.items():
            print(
                f"   family {fam}: {v}"
                if not isinstance(v, dict)
                else f"   family {fam}: {str(v)[:200]}"
            )


if __name__ == "__main__":
    main()
