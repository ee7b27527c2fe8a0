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


def _stream(shape: tuple[int, ...], n_req: int, seed: int = 5) -> list[QueryBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_req):
        k = int(rng.choice([1, 1, 1, 3, 7, 20]))
        x = rng.random((k, *shape), dtype=np.float32)
        p = rng.dirichlet(np.ones(10) * 0.2, k).astype(np.float32)
        out.append(QueryBatch(x, p, float(i)))
    return out


def test_buffered_detectors_see_what_sample_by_sample_ones_see() -> None:
    """Running the detectors once per buffer gives the features and the observations of
    running them on every request, raised at most ``flush_every - 1`` samples later."""
    ref = _reference((1, 8, 8))
    every = default_monitor(flush_every=1, min_queries=10).fit(ref)
    buffered = default_monitor(flush_every=16, min_queries=10).fit(ref)
    assert every.buffer_ == 0 and buffered.buffer_ == 16
    sa, sb = every.new_state(), buffered.new_state()
    seen_a: dict[str, int] = {}
    seen_b: dict[str, int] = {}
    for batch in _stream((1, 8, 8), 150):
        for mon, st, seen in ((every, sa, seen_a), (buffered, sb, seen_b)):
            for o in mon.observe(st, batch):
                seen.setdefault(f"{o.rule_id}:{o.severity}", st.query_count)
        assert sa.query_count == sb.query_count
        assert sb.get("pend_n") < 16
        # Float32 sums over a buffer instead of per request: equal to rounding.
        np.testing.assert_allclose(every.features(sa), buffered.features(sb), rtol=1e-5)
    assert seen_a, "the stream should raise something to compare"
    assert seen_b.keys() <= seen_a.keys()
    for key, at in seen_b.items():
        assert seen_a[key] <= at <= seen_a[key] + 15 + 20  # a request may carry 20 samples
    # Reading features never consumes the buffer or its observations.
    pend = sb.get("pend_n")
    buffered.features(sb)
    assert sb.get("pend_n") == pend


def test_buffer_survives_a_round_trip_and_flush() -> None:
    mon = default_monitor().fit(_reference((3, 32, 32)))
    rng = np.random.default_rng(2)
    st = mon.new_state()
    x = rng.random((5, 3, 32, 32), dtype=np.float32)
    p = rng.dirichlet(np.ones(10), 5).astype(np.float32)
    assert mon.observe(st, QueryBatch(x, p, 1.0)) == []
    assert st.query_count == 5 and st.get("n") == 0 and st.get("pend_n") == 5
    back = mon.loads(mon.dumps(st))
    assert back.equals(st) and back.query_count == 5
    mon.flush(back)
    assert back.get("n") == 5 and back.get("pend_n") == 0
    np.testing.assert_allclose(mon.features(back), mon.features(st))


def test_small_budget_caps_the_buffer() -> None:
    # 3x32x32 inputs pool to 192 values: 16 buffered samples would take 12 kB of 16 kB.
    mon = default_monitor(state_budget=16 * 1024).fit(_reference((3, 32, 32)))
    assert 1 < mon.buffer_ < 16
    assert mon.buffer_ * 4 * (192 + 10) <= 16 * 1024 // 4
    st = mon.new_state()
    assert len(mon.dumps(st)) <= 16 * 1024
    with pytest.raises(InputError):
        default_monitor(flush_every=0).fit(_reference((20,)))
