"""Where activation clustering's fit spends its time, one thread, on stored features.

Wraps the module's pieces (2-means fits, silhouettes, principal directions, the
flagged classes' shedding and neighbour search) with timers and counts their calls,
then fits the detector's default configuration once (a warm-up fit first). Since
session 31 a class's own split and its null samples' splits are one batch of
``two_means_many`` (before, six ``two_means`` calls), and ``two_means`` (the shedding's
fits) calls ``two_means_many`` in turn:

    PYTHONPATH=src python benchmarks/probes/dump_features.py gtsrb badnets 0.01 0
    PYTHONPATH=src python benchmarks/probes/ac_cost.py runs/probe/feat_gtsrb_badnets_0.01_0.npz

(``shed_bridges`` includes the 2-means fits it makes, which ``two_means_many`` counts
too. The principal directions are remembered between fits since session 31; the
cache is cleared before the timed fit.)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tripwire.detectors.poisoning.activation_clustering as ac

PIECES = (
    "two_means",
    "two_means_many",
    "two_cluster_silhouette",
    "top_directions",
    "shed_bridges",
    "neighbours_within",
    "grow_by_vote",
)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    data = np.load(sys.argv[1])
    x = np.asarray(data["features"], dtype=np.float64)
    y = np.asarray(data["y"])
    seconds: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            calls[name] = calls.get(name, 0) + 1
            return out

        return run

    ac.fit_activation_clusters(x, y, random_state=0)  # warm-up
    from tripwire.detectors import projection

    getattr(projection, "clear_cache", lambda: None)()
    for name in PIECES:
        if hasattr(ac, name):  # older code has two_means alone
            setattr(ac, name, timed(name, getattr(ac, name)))
    t0 = time.perf_counter()
    ac.fit_activation_clusters(x, y, random_state=0)
    print(f"{len(np.unique(y))} classes, {len(x)} x {x.shape[1]}: {time.perf_counter() - t0:.2f} s")
    for name in PIECES:
        print(f"  {name}: {seconds.get(name, 0.0):.3f} s in {calls.get(name, 0)} calls")


if __name__ == "__main__":
    main()
