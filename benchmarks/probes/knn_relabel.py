"""Iterative neighbour relabelling for knn-label, on cells stored by label_noise.py --dump.

knn-label flags an item when the weighted majority of its feature-space neighbours
carry another label. With flips concentrated in one class (45% of the ones labelled
7) a flipped item's neighbours are about half flipped themselves, so the majority
rule catches about half. This probe relabels the flagged items to their neighbours'
weighted majority and asks again (up to 3 rounds), and prints, per stored cell,
knn-label as shipped, the relabelled rule, confident learning, and the label family's
quorum with either: flags, precision, recall. (Session 15: no better on the
concentrated cells; recorded as a negative result in the issue note.)

    PYTHONPATH=src python benchmarks/label_noise.py --dump runs/ln-dump --out runs/ln.jsonl
    PYTHONPATH=src python benchmarks/probes/knn_relabel.py 'runs/ln-dump/*.npz'
"""

from __future__ import annotations

import glob
import sys

import numpy as np

from tripwire.detectors import DetectorInput, get
from tripwire.detectors.input_space import without_self
from tripwire.detectors.neighbours import nearest_neighbours
from tripwire.detectors.poisoning.label_noise import neighbour_disagreement


def relabelled(x: np.ndarray, y: np.ndarray, k: int = 10, rounds: int = 3) -> np.ndarray:
    d, i = nearest_neighbours(x, k + 1)
    d, i = without_self(d, i, 0, k)
    w = 1.0 / (d + d.mean(axis=1, keepdims=True) + 1e-12)
    cur = y.copy()
    for _ in range(rounds):
        share, _ = neighbour_disagreement(d, cur[i], y)
        votes = np.zeros((len(y), int(y.max()) + 1))
        np.add.at(votes, (np.repeat(np.arange(len(y)), k), cur[i].ravel()), w.ravel())
        new = np.where(share >= 0.5, votes.argmax(axis=1), y)
        if (new == cur).all():
            break
        cur = new
    share, _ = neighbour_disagreement(d, cur[i], y)
    return np.asarray(share >= 0.5)


def main() -> None:
    for path in sorted(glob.glob(sys.argv[1])):
        f = np.load(path)
        x, y, t, p = f["features"].astype(np.float64), f["y"], f["truth"], f["probs"]
        if not t.any():
            continue
        knn = get("knn-label")().detect(DetectorInput(features=x, labels=y)).flags
        cl = get("confident-learning")().detect(DetectorInput(probs=p, labels=y)).flags
        rel = relabelled(x, y)

        def pr(flags: np.ndarray, t: np.ndarray = t) -> str:
            tp = int((flags & t).sum())
            n = int(flags.sum())
            return f"{n} / {tp / max(n, 1):.3f} / {tp / int(t.sum()):.3f}"

        print(
            path.split("/")[-1],
            f"| knn {pr(knn)} | relabelled {pr(rel)} | CL {pr(cl)}",
            f"| CL & knn {pr(cl & knn)} | CL & relabelled {pr(cl & rel)}",
        )


if __name__ == "__main__":
    main()
