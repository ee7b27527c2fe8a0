"""Bounded per-client state: budget, exact round trips, bad bytes, the contract."""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.detectors.extraction import (
    ClientState,
    ExtractionMonitor,
    QueryBatch,
    Reference,
    default_monitor,
)
from tripwire.detectors.extraction.monitor import shapiro_w
from tripwire.errors import InputError


def _reference(shape: tuple[int, ...], n: int = 400, c: int = 10) -> Reference:
    rng = np.random.default_rng(0)
    x = rng.random((n, *shape), dtype=np.float32) * 0.5
    p = rng.dirichlet(np.ones(c) * 0.3, n).astype(np.float32)
    return Reference(x, p, c, shape)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (20,)])
@pytest.mark.parametrize("budget", [16 * 1024, 64 * 1024])
def test_state_stays_in_budget_and_round_trips(shape: tuple[int, ...], budget: int) -> None:
    mon = default_monitor(state_budget=budget).fit(_reference(shape))
    assert isinstance(mon, ExtractionMonitor)
    rng = np.random.default_rng(1)
    state = mon.new_state()
    assert isinstance(state, ClientState)
    sizes = []
    for i in range(60):
        k = int(rng.integers(1, 40))
        x = rng.random((k, *shape), dtype=np.float32)
        p = rng.dirichlet(np.ones(10), k).astype(np.float32)
        mon.observe(state, QueryBatch(x, p, float(i)))
        data = mon.dumps(state)
        sizes.append(len(data))
        back = mon.loads(data)
        assert back.equals(state)
        assert back.query_count == state.query_count
    assert max(sizes) <= budget
    # The restored state behaves exactly as the original on the same next request.
    x = rng.random((8, *shape), dtype=np.float32)
    p = rng.dirichlet(np.ones(10), 8).astype(np.float32)
    back = mon.loads(mon.dumps(state))
    a = mon.observe(state, QueryBatch(x, p, 99.0))
    b = mon.observe(back, QueryBatch(x, p, 99.0))
    assert [o.to_dict() for o in a] == [o.to_dict() for o in b]
    assert mon.dumps(state) == mon.dumps(back)


def test_loads_rejects_foreign_bytes() -> None:
    mon = default_monitor().fit(_reference((1, 8, 8)))
    good = mon.dumps(mon.new_state())
    for bad in (b"", b"PK\x03\x04junk", good[:-10], good + b"x", b"TWX1" + b"\xff" * 8):
        with pytest.raises(InputError):
            mon.loads(bad)
    for other in (
        default_monitor().fit(_reference((1, 8, 8), c=5)),
        default_monitor(state_budget=16 * 1024).fit(_reference((1, 8, 8))),
        default_monitor(reservoir=256).fit(_reference((1, 8, 8))),
    ):
        with pytest.raises(InputError):
            other.loads(good)


def test_shapiro_w_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (3, 5, 6, 40, 200, 512):
        for draw in (rng.normal, rng.exponential):
            x = draw(size=n)
            assert shapiro_w(x) == pytest.approx(stats.shapiro(x).statistic, abs=1e-6)
