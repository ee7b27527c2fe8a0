"""Seconds of each feature-space data detector against one forward pass, in one run.

Issue #4's first speed bar: the feature-space detectors together add at most 0.5x of
one forward pass of the given model over the data. With ``--cell`` this loads one
standard-suite cell (its attacked training set and the suite's cached model,
``runs/std-cache``), makes the features, builds the scan's shared input-space graph
(timed apart: the probabilities' proxy and the behavioural detectors read it too),
runs each of the six detectors the bar counts (fit and score, as a scan does), and
then, in ``--rounds`` rounds, times one forward pass and the six detectors back to
back: this machine's speed drifts by up to 2x between minutes, so the ratio is taken
within each round.
Given a features file from ``benchmarks/probes/dump_features.py`` instead, it times the
five that need only features and labels.

Each detector's line carries its flag count and a digest of its scores, so that two
code versions can be shown to score alike; a last line times the all-items neighbour
search against scikit-learn's all-pairs search on the same rows.

    PYTHONPATH=src python benchmarks/feature_speed.py --cell mnist badnets 0.01 0
    git archive 3cc1b8f src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python benchmarks/feature_speed.py \\
        runs/probe/feat_mnist_badnets_0.01_0.npz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from tripwire.detectors import DetectorInput, get

DETECTORS = (
    "spectral-signature",
    "activation-clustering",
    "feature-outlier",
    "spectre",
    "knn-label",
    "dual-space",
)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.round(np.asarray(a, float), 9).tobytes()).hexdigest()[:12]


def cell_inputs(
    name: str, kind: str, rate: float, seed: int
) -> tuple[DetectorInput, Callable[[], float]]:
    """The cell's detector input (features, labels, data, input space), and a function
    that times one more forward pass over the data."""
    sys.path.insert(0, str(Path(__file__).parent / "probes"))
    from cells import standard_cell  # type: ignore[import-not-found]

    from tripwire.detectors.input_space import SHARED_NEIGHBOURS, InputSpace

    _, ds, _, model = standard_cell(name, kind, rate, seed)
    images = ds.model_input()

    def forward() -> float:
        t0 = time.perf_counter()
        model.features(images)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    feats = model.features(images)
    print(f"first forward pass (TorchScript profiles it): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    space = InputSpace(images, random_state=seed)
    space.neighbours(SHARED_NEIGHBOURS)
    print(f"shared input-space graph (not counted): {time.perf_counter() - t0:.2f} s")
    x = np.asarray(feats, dtype=np.float64)
    return DetectorInput(features=x, labels=ds.y, data=ds, input_space=space), forward


def run_detectors(inputs: DetectorInput, names: tuple[str, ...], show: bool) -> float:
    """Seconds of the detectors together (fit and score each, as a scan does), from a
    cold start: the class decompositions the detectors share are forgotten first, so
    that each call pays for them once, as one scan does (older code, run by this same
    script for comparisons, has no such cache)."""
    from tripwire.detectors import projection

    getattr(projection, "clear_cache", lambda: None)()
    if show:
        print("| detector | seconds | flagged | scores digest |")
        print("|---|---|---|---|")
    total = 0.0
    for name in names:
        t0 = time.perf_counter()
        r = get(name)().detect(inputs)
        dt = time.perf_counter() - t0
        total += dt
        if show:
            print(f"| {name} | {dt:.2f} | {int(r.flags.sum())} | {digest(r.scores)} |", flush=True)
    if show:
        print(f"| together | {total:.2f} | | |")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", nargs="?", help="a features file of dump_features.py")
    ap.add_argument("--cell", nargs=4, metavar=("DATA", "ATTACK", "RATE", "SEED"))
    ap.add_argument("--rounds", type=int, default=3, help="forward/detector rounds (--cell)")
    args = ap.parse_args()
    forward: Callable[[], float] | None = None
    if args.cell:
        name, kind, rate, seed = args.cell
        inputs, forward = cell_inputs(name, kind, float(rate), int(seed))
        detectors = DETECTORS
        label = f"{name} {kind} {rate} seed {seed}"
    elif args.features:
        f = np.load(args.features)
        inputs = DetectorInput(features=f["features"].astype(np.float64), labels=f["y"])
        detectors = DETECTORS[:-1]
        label = args.features
    else:
        ap.error("give a features file or --cell")
    x = np.asarray(inputs.features)
    print(f"{label}: {x.shape[0]} x {x.shape[1]}")
    run_detectors(inputs, detectors, show=True)
    if forward is not None:
        # The machine's speed drifts (a shared VM): each round times a forward pass and
        # the detectors back to back, and the ratio is taken within the round.
        print("\n| round | forward s | detectors s | ratio |\n|---|---|---|---|")
        ratios = []
        for r in range(args.rounds):
            fw = forward()
            det = run_detectors(inputs, detectors, show=False)
            ratios.append(det / fw)
            print(f"| {r + 1} | {fw:.2f} | {det:.2f} | {det / fw:.2f}x |", flush=True)
        print(f"median ratio {float(np.median(ratios)):.2f}x (issue #4's bar: 0.5x)")
    from tripwire.detectors.neighbours import nearest_neighbours

    t0 = time.perf_counter()
    ref_d, ref_i = NearestNeighbors(n_neighbors=11).fit(x).kneighbors(x)
    brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    d, i = nearest_neighbours(x, 11)
    cells = time.perf_counter() - t0
    same = float(np.mean((ref_i == i).all(axis=1)))
    print(
        f"11 nearest of every row: all pairs {brute:.2f} s, by cells {cells:.2f} s "
        f"({brute / cells:.1f}x); rows with the same neighbours {same:.4f}, "
        f"largest distance difference {float(np.abs(ref_d - d).max()):.1e}"
    )


if __name__ == "__main__":
    main()
