"""dual-space's clusters on bundled MNIST's Adaptive-Blend cells (``cnn-small``).

For the models ``benchmarks/ensemble_ranking.py`` cached (``runs/ens-cache``), prints
the eight clusters that disagree most with their labels in input space (mean
disagreement, size, victims inside), the median and scaled MAD over all clusters, and
the threshold they give (``max(0.5, median + 3.5 * MAD)``): where the victims are split
over two clusters of a small set, neither reaches it.

    PYTHONPATH=src python benchmarks/probes/dual_space_clusters.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tripwire.bench.runner import load_suite_data, train_cached
from tripwire.bench.suites import DataSpec
from tripwire.detectors.calibration import MAD_TO_SD
from tripwire.detectors.input_space import InputSpace
from tripwire.detectors.poisoning.dual_space import (
    feature_clusters,
    leave_cluster_out_disagreement,
)
from tripwire.io import load_dataset

sys.path.insert(0, str(Path(__file__).parents[1]))
from ensemble_ranking import _cell_data


def main() -> None:
    clean_y = load_dataset("bundled:mnist", split="train").y
    for seed in (0, 1):
        spec = DataSpec(
            name="mnist-5k", spec="bundled:mnist", seeds=(seed,), epochs=5, arch="cnn-small"
        )
        _, test = load_suite_data(spec, None)
        ds = _cell_data("adaptive", 0.05, {}, seed)
        model = train_cached(ds, test, spec, seed, Path("runs/ens-cache/models"))
        x = np.asarray(model.features(ds.model_input()), np.float64)
        victims = np.asarray(ds.poisoned) & (ds.y != clean_y)
        clusters = feature_clusters(x, ds.y, n_clusters=3, n_dims=10, random_state=0)
        space = InputSpace(ds.model_input(), random_state=0)
        own = leave_cluster_out_disagreement(space, ds.y, clusters, 10)
        rows = []
        for u in np.unique(clusters):
            m = clusters == u
            rows.append((float(own[m].mean()), int(m.sum()), int(victims[m].sum())))
        dis = np.array([r[0] for r in rows])
        med = float(np.median(dis))
        mad = float(np.median(np.abs(dis - med))) * MAD_TO_SD
        top = ", ".join(f"{d:.2f} ({n} items, {v} victims)" for d, n, v in sorted(rows)[::-1][:8])
        print(f"seed {seed}: {top}")
        print(f"  median {med:.3f}, MAD {mad:.3f}, threshold {max(0.5, med + 3.5 * mad):.3f}")


if __name__ == "__main__":
    main()
