"""How many workers the per-class fits of a detector may use.

Detectors that fit each class on its own (SPECTRE's filter, for one) run many small
NumPy products, too small for BLAS threads to pay off; one class per worker thread uses
the cores instead, since NumPy releases the GIL inside each product. Results never
depend on the number of workers: every random draw is made in the calling thread, in a
fixed order, before the work is handed out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

# threadpoolctl comes with scikit-learn.
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


def worker_count(n_jobs: int | None, tasks: int) -> int:
    """Workers for ``tasks`` independent tasks: ``n_jobs`` (default: every available
    core), never more than there are tasks, at least one."""
    want = available_cores() if n_jobs is None else n_jobs
    return max(1, min(want, tasks))


def map_in_threads(fn: Callable[[T], R], tasks: Sequence[T], n_jobs: int | None = None) -> list[R]:
    """``[fn(t) for t in tasks]``, the tasks dealt out to :func:`worker_count` worker
    threads, each running its products on one BLAS and one OpenMP thread.

    For the per-class fits of a detector: small products and k-means fits, where
    library threads only add start-up and spin-waits (OpenMP threads that spin-wait on
    a busy machine made small k-means fits a hundred times slower). OpenMP's limit is
    set in each worker: a thread does not inherit the caller's. ``fn`` must not draw
    from a generator that the tasks share (make the draws before, in order).
    """

    def one(task: T) -> R:
        with threadpool_limits(limits=1, user_api="openmp"):
            return fn(task)

    workers = worker_count(n_jobs, len(tasks))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, tasks))
