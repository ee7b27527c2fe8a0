"""Activation clustering's split of the target class on bundled MNIST with 5% WaNet.

For the models that ``benchmarks/ensemble_ranking.py`` trained and cached
(``runs/ens-cache/models``; ``cnn-small`` and ``resnet-mini``, seeds 0 and 1), the
2-means split of class 0 (400 clean digits and 200 poisons): the smaller cluster's
size, its poisons and its share of the class (the detector flags at most 0.35), the
silhouette's z-score against the Gaussian null, and what ``shed_bridges`` leaves.

    PYTHONPATH=src python benchmarks/probes/ac_share.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tripwire.bench.runner import load_suite_data, train_cached
from tripwire.bench.suites import DataSpec
from tripwire.detectors.poisoning.activation_clustering import (
    null_silhouettes,
    shed_bridges,
    silhouette,
    two_means,
)
from tripwire.detectors.projection import top_directions

sys.path.insert(0, str(Path(__file__).parents[1]))
from ensemble_ranking import _cell_data


def main() -> None:
    for arch in ("cnn-small", "resnet-mini"):
        for seed in (0, 1):
            spec = DataSpec(
                name="mnist-5k", spec="bundled:mnist", seeds=(seed,), epochs=5, arch=arch
            )
            _, test = load_suite_data(spec, None)
            ds = _cell_data("wanet", 0.05, {"s": 5.0}, seed)
            model = train_cached(ds, test, spec, seed, Path("runs/ens-cache/models"))
            x = np.asarray(model.features(ds.model_input()), np.float64)
            truth = np.asarray(ds.poisoned)
            rows = np.flatnonzero(ds.y == 0)
            centred = x[rows] - x[rows].mean(axis=0)
            z = centred @ top_directions(centred, 10).T
            assign, centres = two_means(z, random_state=0, n_init=10)
            sil = silhouette(z, assign, max_samples=1000, random_state=0)
            rng = np.random.default_rng(0)
            null = null_silhouettes(z.var(axis=0), len(z), draws=5, max_samples=1000, rng=rng)
            sil_z = (sil - null.mean()) / max(float(null.std(ddof=1)), 0.01)
            small = assign == 1
            kept, _, bridges = shed_bridges(z, small, centres[0], random_state=0, n_init=10)
            t = truth[rows]
            print(
                f"{arch} seed {seed}: class 0 {len(z)} items, {int(t.sum())} poisons | smaller"
                f" cluster {int(small.sum())} ({int(t[small].sum())} poisons), share"
                f" {small.mean():.3f}, silhouette z {sil_z:.1f} | after shedding"
                f" {int(kept.sum())} ({int(t[kept].sum())} poisons), {len(bridges)} bridges",
                flush=True,
            )


if __name__ == "__main__":
    main()
