"""The monitor process (``Gateway(monitor_process=True)``, ``guard --monitor-process``):
its pipe format, and what serving does when the monitor process is gone. The gateway's
behaviour through it (alerts, restarts, the admin API, logs) is checked by the tests of
``test_gateway.py``, which run in both arrangements."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gateway.test_gateway import ADMIN, call, infer_body, noise
from tripwire.cli.main import main
from tripwire.gateway.offload import join_messages, pack, split_messages, unpack


def test_messages_round_trip_and_bad_ones_are_refused() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2)
    p = np.full((3, 10), 0.1, dtype=np.float32)
    msgs = [pack({"op": "served", "client": "ü-1"}, (x, p)), pack({"op": "flush"})]
    parts = split_messages(join_messages(msgs))
    assert len(parts) == 2
    head, arrays = unpack(parts[0])
    assert head == {"op": "served", "client": "ü-1"}
    np.testing.assert_array_equal(arrays[0], x)
    np.testing.assert_array_equal(arrays[1], p)
    assert unpack(parts[1]) == ({"op": "flush"}, [])
    with pytest.raises(ValueError, match="not allowed"):
        unpack(pack({"op": "x"}, (np.array(["a"]),)))
    with pytest.raises(ValueError, match="trailing"):
        unpack(msgs[0] + b"\0")
    with pytest.raises(ValueError, match="truncated"):
        split_messages(join_messages(msgs)[:-3])


def _wait(cond: Any, seconds: float = 60.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_serving_goes_on_when_the_monitor_process_dies_and_it_is_replaced(
    start_gateway: Any, digits: Any, local_model: Any
) -> None:
    srv = start_gateway(monitor_process=True)
    hdr = {"X-Client-Id": "c"}
    assert call(srv, "POST", "/v2/models/digits/infer", infer_body(noise(40)), hdr)[0] == 200
    srv.gateway.flush()  # the state written, as the write-behind pass would
    assert call(srv, "GET", "/v2/health/ready")[1] == {"ready": True}
    offload = srv.gateway._offload
    offload._next_restart = time.monotonic() + 3600  # hold the restart back for now
    offload._proc.kill()
    offload._proc.join(10)
    assert _wait(lambda: offload.failed, 10)
    x = digits[1].model_input(np.arange(3))
    status, out, _ = call(srv, "POST", "/v2/models/digits/infer", infer_body(x), hdr)
    assert status == 200
    np.testing.assert_allclose(
        np.asarray(out["outputs"][0]["data"]).reshape(3, -1),
        local_model.probabilities(x),
        atol=1e-6,
    )
    # Not ready (the gateway does not watch), the admin API says why, metrics count it.
    status, body, _ = call(srv, "GET", "/v2/health/ready")
    assert status == 503 and body == {"ready": False}
    status, body, _ = call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)
    assert status == 503 and "monitor process" in body["error"]
    _, text, _ = call(srv, "GET", "/metrics")
    assert "tripwire_monitor_errors_total 1" in text
    assert "tripwire_monitor_process_up 0" in text
    # Replaced: ready again, the state written before the crash kept, alerts raised.
    offload._next_restart = 0.0
    assert _wait(lambda: call(srv, "GET", "/v2/health/ready")[0] == 200)
    _, view, _ = call(srv, "GET", "/tripwire/v1/clients/c", headers=ADMIN)
    assert view["query_count"] == 40
    call(srv, "POST", "/v2/models/digits/infer", infer_body(noise(20, 1)), hdr)
    alerts = call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [(a["client"], a["query_count"]) for a in alerts] == [("c", 60)]
    _, text, _ = call(srv, "GET", "/metrics")
    assert "tripwire_monitor_process_restarts 1" in text
    assert "tripwire_monitor_process_up 1" in text


def test_a_monitor_process_needs_observe_mode_and_an_own_store(
    tmp_path: Path, local_model: Any, reference: Any
) -> None:
    from tests.gateway.fakes import OODRateMonitor
    from tripwire.gateway import Gateway, LocalBackend, SQLiteStore

    be = LocalBackend(local_model, (1, 8, 8))
    mon = OODRateMonitor().fit(reference)
    store = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError, match="observe mode"):
        Gateway(be, "d", monitor=mon, store=store, mode="enforce", monitor_process=True)
    store.shared = True  # as a Redis store shared by replicas is
    with pytest.raises(ValueError, match="observe mode"):
        Gateway(be, "d", monitor=mon, store=store, monitor_process=True)
    store.close()


def test_guard_refuses_a_monitor_process_it_cannot_run(
    digits_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["guard", str(digits_model), "--mode", "enforce", "--monitor-process", "on"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--monitor-process on needs observe mode" in err[0]


class _LockedTrigger:
    """A trigger check that cannot be handed to another process (it holds a lock)."""

    def __init__(self, threshold: float) -> None:
        import threading

        self.threshold = threshold
        self._lock = threading.Lock()

    def score_outputs(self, logits: Any, features: Any) -> Any:
        return np.asarray(logits[:, 0], dtype=np.float64)


def test_a_trigger_check_that_cannot_travel_runs_in_the_serving_process(
    start_gateway: Any, digits: Any, local_model: Any
) -> None:
    train, test = digits
    clean = train.model_input(np.flatnonzero(train.y != 0)[:500])
    srv = start_gateway(
        trigger_check=_LockedTrigger(float(np.quantile(local_model.logits(clean)[:, 0], 0.99))),
        monitor_process=True,
    )
    assert srv.gateway._trigger_remote is False
    zeros = test.model_input(np.flatnonzero(test.y == 0)[:5])
    call(srv, "POST", "/v2/models/digits/infer", infer_body(zeros), {"X-Client-Id": "t"})
    alerts = call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [a["detector"] for a in alerts] == ["input-trigger"]


def test_the_reference_trigger_check_travels_without_its_model(
    digits: Any, local_model: Any
) -> None:
    import pickle

    from tripwire.gateway.hooks import ReferenceTriggerCheck

    train, test = digits
    check = ReferenceTriggerCheck.fit(local_model, train.model_input(np.arange(400)))
    copy = pickle.loads(pickle.dumps(check))  # our own object, as spawn hands it over
    assert copy.detector.model_ is None and check.detector.model_ is local_model
    logits, feats = local_model.logits_and_features(test.model_input(np.arange(50)))
    np.testing.assert_allclose(
        copy.score_outputs(logits, feats), check.score_outputs(logits, feats), rtol=1e-6
    )
    assert copy.threshold == check.threshold
