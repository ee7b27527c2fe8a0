"""Worker counts for per-class fits."""

from __future__ import annotations

import pytest

from tripwire.detectors import parallel
from tripwire.detectors.parallel import available_cores, map_in_threads, worker_count


def test_available_cores_is_positive() -> None:
    assert available_cores() >= 1


def test_worker_count_is_bounded_by_tasks_and_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "available_cores", lambda: 8)
    assert worker_count(None, 3) == 3  # never more workers than tasks
    assert worker_count(None, 20) == 8  # default: every core
    assert worker_count(2, 20) == 2
    assert worker_count(None, 0) == 1


def test_map_in_threads_keeps_order_and_limits_library_threads() -> None:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    from threadpoolctl import threadpool_info

    def task(i: int) -> tuple[int, int, list[int]]:
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        return i * i, _openmp_effective_n_threads(), blas

    out = map_in_threads(task, list(range(7)), n_jobs=3)
    assert [r[0] for r in out] == [i * i for i in range(7)]
    assert all(r[1] == 1 for r in out)  # each worker on one OpenMP thread
    assert all(all(n == 1 for n in r[2]) for r in out)  # and one BLAS thread
    assert map_in_threads(task, []) == []
