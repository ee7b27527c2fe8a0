"""The ensemble's verdict on bundled MNIST's Adaptive-Blend cells, victims and covers apart.

The `adaptive` attack marks two kinds of samples as poisoned: victims (other classes'
images with partial faint triggers, relabelled to the target) and covers (partial
triggers under their true labels, there to keep the poisons' features near the clean
ones). For the cells ``benchmarks/ensemble_ranking.py`` cached (``runs/ens-cache``),
this recomputes the shipped verdict and prints its recall on each kind.

    PYTHONPATH=src python benchmarks/probes/adaptive_victims.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tripwire.detectors.input_space import InputSpace
from tripwire.io import load_dataset
from tripwire.scan.ensemble import combine

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from combine import evidence
from ensemble_ranking import _cell_data, stored_results


def main() -> None:
    clean_y = load_dataset("bundled:mnist", split="train").y
    for arch in ("cnn-small", "resnet-mini"):
        for seed in (0, 1):
            path = Path("runs/ens-cache") / f"{arch}_adaptive_0.05_{seed}.npz"
            z = np.load(path, allow_pickle=False)
            ds = _cell_data("adaptive", 0.05, {}, seed)
            space = InputSpace(ds.model_input(), random_state=seed)
            flags = combine(stored_results(z), len(ds), **evidence(combine, ds, space, seed)).flags
            truth = z["truth"]
            victims = truth & (ds.y != clean_y)
            covers = truth & ~victims
            tp = int((flags & truth).sum())
            print(
                f"{arch} seed {seed}: flagged {int(flags.sum())}, precision"
                f" {tp / max(int(flags.sum()), 1):.3f}; victims {int(victims.sum())}, found"
                f" {int((flags & victims).sum())}; covers {int(covers.sum())}, found"
                f" {int((flags & covers).sum())}",
                flush=True,
            )


if __name__ == "__main__":
    main()
