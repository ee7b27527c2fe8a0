"""Worker counts for per-class fits."""

from __future__ import annotations

import pytest

from tripwire.detectors import parallel
from tripwire.detectors.parallel import available_cores, worker_count


def test_available_cores_is_positive() -> None:
    assert available_cores() >= 1


def test_worker_count_is_bounded_by_tasks_and_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "available_cores", lambda: 8)
    assert worker_count(None, 3) == 3  # never more workers than tasks
    assert worker_count(None, 20) == 8  # default: every core
    assert worker_count(2, 20) == 2
    assert worker_count(None, 0) == 1
