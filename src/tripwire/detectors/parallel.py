"""How many workers the per-class fits of a detector may use.

Detectors that fit each class on its own (SPECTRE's filter, for one) run many small
NumPy products, too small for BLAS threads to pay off; one class per worker thread uses
the cores instead, since NumPy releases the GIL inside each product. Results never
depend on the number of workers: every random draw is made in the calling thread, in a
fixed order, before the work is handed out.
"""

from __future__ import annotations

import os


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
