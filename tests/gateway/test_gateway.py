"""The gateway over real HTTP: OIP shapes, bad input, identity, alerts, actions, metrics,
the query log, persistence across a restart, and ``--upstream`` in front of a gateway."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from tests.gateway.fakes import LogitTrigger
from tripwire.attacks.benign import benign_stream
from tripwire.attacks.extraction import Victim, extract
from tripwire.attacks.oip_client import OIPClient
from tripwire.gateway import GuardConfig, SQLiteStore, UpstreamBackend
from tripwire.gateway.config import EnforceConfig
from tripwire.gateway.store import decode_array
from tripwire.reports.findings import Severity

ADMIN = {"Authorization": "Bearer admin-secret"}
ALERT_KEYS = {"client", "detector", "severity", "atlas", "query_count", "time", "evidence"}


def call(
    srv: Any,
    method: str,
    path: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    parsed = json.loads(body) if "json" in ctype else body.decode()
    return resp.status, parsed, dict(resp.getheaders())


def infer_body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }


def noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_oip_endpoints_and_shapes(start_gateway: Any, digits: Any, local_model: Any) -> None:
    srv = start_gateway()
    assert call(srv, "GET", "/v2/health/live")[0] == 200
    assert call(srv, "GET", "/v2/health/ready")[:2] == (200, {"ready": True})
    status, meta, _ = call(srv, "GET", "/v2/models/digits")
    assert status == 200 and meta["name"] == "digits"
    assert meta["inputs"][0]["datatype"] == "FP32" and meta["inputs"][0]["shape"] == [-1, 1, 8, 8]
    assert meta["outputs"][0]["shape"] == [-1, 10]
    x = digits[1].model_input(np.arange(5))
    status, out, _ = call(srv, "POST", "/v2/models/digits/infer", infer_body(x))
    first = out["outputs"][0]
    assert status == 200 and first["shape"] == [5, 10] and first["datatype"] == "FP32"
    got = np.asarray(first["data"], dtype=np.float32).reshape(5, 10)
    np.testing.assert_allclose(got, local_model.probabilities(x), atol=1e-6)
    nested = {
        "inputs": [{"name": "any", "shape": [5, 1, 8, 8], "datatype": "FP32", "data": x.tolist()}]
    }
    status, out2, _ = call(srv, "POST", "/v2/models/digits/infer", nested)
    assert status == 200 and out2["outputs"][0]["data"] == first["data"]


def test_bad_requests_get_the_right_4xx_and_are_counted(start_gateway: Any) -> None:
    srv = start_gateway(config=GuardConfig(max_body_bytes=4096, correlate_interval_s=0))
    good = infer_body(noise(1))
    cases = [
        ("POST", "/v2/models/digits/infer", b"{oops", 400),
        (
            "POST",
            "/v2/models/digits/infer",
            json.dumps(infer_body(noise(1)[:, :, :4])).encode(),
            400,
        ),
        (
            "POST",
            "/v2/models/digits/infer",
            json.dumps({"inputs": [{**good["inputs"][0], "datatype": "FP64"}]}).encode(),
            400,
        ),
        ("POST", "/v2/models/other/infer", json.dumps(good).encode(), 404),
        ("GET", "/v2/models/other", None, 404),
        ("POST", "/v2/models/digits/infer", json.dumps(infer_body(noise(10))).encode(), 413),
        ("GET", "/v2/models/digits/infer", None, 405),
        ("GET", "/nowhere", None, 404),
    ]
    for method, path, raw, want in cases:
        status, body, _ = call(srv, method, path, raw=raw)
        assert status == want, (path, raw and raw[:40], body)
        assert isinstance(body, dict) and "error" in body
    # A client that declares no length gets a 411, not a hang.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.putrequest("POST", "/v2/models/digits/infer")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    _, text, _ = call(srv, "GET", "/metrics")
    bad = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tripwire_bad_requests_total")
    )
    assert bad == len(cases) + 1
    assert 'code="500"' not in text


def test_admin_api_needs_the_token(start_gateway: Any, offload: bool) -> None:
    srv = start_gateway(monitor_process=offload)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        status, body, _hdrs = call(srv, "GET", "/tripwire/v1/alerts", headers=headers)
        assert status == 401 and "error" in body
    assert call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[:2] == (200, {"alerts": []})
    # No token configured: the admin API stays closed.
    closed = start_gateway(admin_token=None, monitor_process=offload)
    assert call(closed, "GET", "/tripwire/v1/alerts", headers=ADMIN)[0] == 401


def test_attacker_is_alerted_benign_clients_are_not(
    start_gateway: Any, digits: Any, local_model: Any, offload: bool
) -> None:
    srv = start_gateway(monitor_process=offload)
    _train, test = digits
    victim = Victim.from_oip(srv.url, "digits")
    result = extract(
        victim,
        "random",
        budget=256,
        input_shape=(1, 8, 8),
        n_classes=10,
        eval_data=test.subset(np.arange(100)),
        epochs=1,
        seed=0,
    )
    assert len(result.queries) == 256
    for i, kind in enumerate(("ordinary", "batch-scorer", "repeater")):
        stream = benign_stream(test, kind, n_queries=300, seed=i, client_id=f"benign-{i}")
        client = OIPClient(srv.url, "digits", client_id=f"benign-{i}")
        for _, _, x in stream.requests():
            client.infer(x)
    status, body, _ = call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)
    alerts = body["alerts"]
    assert status == 200 and alerts
    assert {a["client"] for a in alerts} == {"attacker-0"}
    first = alerts[0]
    assert set(first) >= ALERT_KEYS and all(first[k] is not None for k in ALERT_KEYS)
    assert first["detector"] == "fake-ood" and first["severity"] == "high"
    assert first["atlas"] == ["AML.T0024.002"]
    # Flagged at the first request past the monitor's 50-query minimum (requests of 64).
    assert first["query_count"] == 64
    # One alert per detector and severity: the later requests went to the timeline.
    assert len(alerts) == 1
    status, view, _ = call(srv, "GET", "/tripwire/v1/clients/attacker-0", headers=ADMIN)
    assert view["query_count"] == 256 and view["worst_severity"] == "high"
    assert view["state"]["bytes"] <= view["state"]["budget"]
    assert len(view["timeline"]) == 4 and view["timeline"][0]["alert"] is True
    status, view, _ = call(srv, "GET", "/tripwire/v1/clients/benign-1", headers=ADMIN)
    assert view["query_count"] == 300 and view["worst_severity"] is None
    assert call(srv, "GET", "/tripwire/v1/clients/nobody", headers=ADMIN)[0] == 404
    # Observe mode: the attacker still got the model's exact probabilities.
    np.testing.assert_allclose(
        result.responses, local_model.probabilities(result.queries.x), atol=1e-6
    )
    _, text, _ = call(srv, "GET", "/metrics")
    assert 'tripwire_alerts_total{detector="fake-ood"} 1' in text
    assert 'tripwire_clients_under_action{action="throttle"} 1' in text
    assert "attacker" not in text and "benign" not in text
    assert "tripwire_request_duration_seconds_bucket" in text


def test_api_keys_identify_clients(start_gateway: Any, tmp_path: Path) -> None:
    srv = start_gateway(config=GuardConfig(keys={"k-alice": "alice"}, correlate_interval_s=0))
    body = infer_body(noise(2))
    status, err, _hdrs = call(srv, "POST", "/v2/models/digits/infer", body)
    assert status == 401 and "API key" in err["error"]
    assert (
        call(srv, "POST", "/v2/models/digits/infer", body, {"Authorization": "Bearer nope"})[0]
        == 401
    )
    # X-Client-Id does not stand in for a key where keys are required.
    assert call(srv, "POST", "/v2/models/digits/infer", body, {"X-Client-Id": "alice"})[0] == 401
    assert (
        call(srv, "POST", "/v2/models/digits/infer", body, {"Authorization": "Bearer k-alice"})[0]
        == 200
    )
    _, view, _ = call(srv, "GET", "/tripwire/v1/clients/alice", headers=ADMIN)
    assert view["query_count"] == 2
    # Without keys: X-Client-Id as it arrived, else the source address.
    open_srv = start_gateway()
    conn = http.client.HTTPConnection("127.0.0.1", open_srv.port, timeout=10)
    conn.putrequest("POST", "/v2/models/digits/infer")
    raw = json.dumps(body).encode()
    conn.putheader("X-Client-Id", "équipe β".encode())  # UTF-8 bytes on the wire
    conn.putheader("Content-Length", str(len(raw)))
    conn.endheaders(raw)
    assert conn.getresponse().status == 200
    conn.close()
    call(open_srv, "POST", "/v2/models/digits/infer", body)
    _, listing, _ = call(open_srv, "GET", "/tripwire/v1/clients", headers=ADMIN)
    assert set(listing["clients"]) == {"équipe β", "addr:127.0.0.1"}
    quoted = urllib.parse.quote("équipe β", safe="")
    assert call(open_srv, "GET", f"/tripwire/v1/clients/{quoted}", headers=ADMIN)[0] == 200


def test_enforce_grades_actions_and_admin_can_allow_and_clear(start_gateway: Any) -> None:
    cfg = GuardConfig(enforce=EnforceConfig(throttle_interval_s=30.0), correlate_interval_s=0)
    srv = start_gateway(mode="enforce", config=cfg)
    hdr = {"X-Client-Id": "thief"}
    path = "/v2/models/digits/infer"
    # The request that raises the alert (high once 50 queries are mostly noise) is
    # answered in full: actions apply from the client's next request.
    status, out, _ = call(srv, "POST", path, infer_body(noise(64)), hdr)
    assert status == 200 and "parameters" not in out
    # High means throttle (which also degrades): one degraded answer per interval.
    status, out, _ = call(srv, "POST", path, infer_body(noise(4, 2)), hdr)
    assert status == 200 and out["parameters"]["tripwire_degraded"] is True
    probs = np.asarray(out["outputs"][0]["data"]).reshape(4, 10)
    assert set(np.unique(probs)) == {0.0, 1.0}  # top-1 only
    status, _err, headers = call(srv, "POST", path, infer_body(noise(4, 3)), hdr)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 30
    # Allow-listed: back to full answers, no further actions.
    assert call(srv, "POST", "/tripwire/v1/clients/thief/allow", headers=ADMIN)[0] == 200
    status, out, _ = call(srv, "POST", path, infer_body(noise(4, 4)), hdr)
    assert status == 200 and "parameters" not in out
    # Cleared: state, severity and timeline forgotten (the alert history stays).
    call(srv, "POST", "/tripwire/v1/clients/thief/disallow", headers=ADMIN)
    _, view, _ = call(srv, "POST", "/tripwire/v1/clients/thief/clear", headers=ADMIN)
    assert view["worst_severity"] is None and view["query_count"] == 0 and view["timeline"] == []
    assert len(call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]) == 1
    # Block at high: 403.
    blocker = start_gateway(
        mode="enforce",
        config=GuardConfig(enforce=EnforceConfig(block=Severity.HIGH), correlate_interval_s=0),
    )
    call(blocker, "POST", path, infer_body(noise(64)), hdr)
    assert call(blocker, "POST", path, infer_body(noise(4)), hdr)[0] == 403


def test_query_log_keeps_what_the_client_obtained(
    start_gateway: Any, digits: Any, offload: bool
) -> None:
    srv = start_gateway(monitor_process=offload)
    x = digits[1].model_input(np.arange(3))
    _, out, _ = call(srv, "POST", "/v2/models/digits/infer", infer_body(x), {"X-Client-Id": "c"})
    srv.gateway.flush()
    recs = srv.gateway.store.queries("c")
    assert len(recs) == 1 and recs[0].meta["status"] == 200 and recs[0].meta["n"] == 3
    np.testing.assert_array_equal(decode_array(recs[0].input), x)
    np.testing.assert_allclose(
        decode_array(recs[0].output).reshape(-1), out["outputs"][0]["data"], atol=1e-7
    )
    status, listing, _ = call(
        srv, "GET", "/tripwire/v1/clients/c/queries?payloads=1", headers=ADMIN
    )
    assert status == 200 and np.allclose(listing["queries"][0]["input"], x)


def test_state_and_alerts_survive_a_restart(
    start_gateway: Any, tmp_path: Path, offload: bool
) -> None:
    db = tmp_path / "persist.db"
    hdr = {"X-Client-Id": "slow-thief"}
    first = start_gateway(db=db, monitor_process=offload)
    call(first, "POST", "/v2/models/digits/infer", infer_body(noise(40)), hdr)
    first.stop()
    first.gateway.store.close()
    second = start_gateway(db=db, monitor_process=offload)
    _, view, _ = call(second, "GET", "/tripwire/v1/clients/slow-thief", headers=ADMIN)
    assert view["query_count"] == 40
    # 40 + 20 noise queries: the restarted gateway continues the count and alerts at 60.
    call(second, "POST", "/v2/models/digits/infer", infer_body(noise(20, 1)), hdr)
    alerts = call(second, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [(a["client"], a["query_count"]) for a in alerts] == [("slow-thief", 60)]
    second.stop()
    second.gateway.store.close()
    third = start_gateway(db=db, monitor_process=offload)
    assert len(call(third, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]) == 1


def test_an_unreadable_stored_state_starts_anew_and_the_count_goes_on(
    start_gateway: Any, tmp_path: Path
) -> None:
    """A state another tripwire version wrote (here: bytes this monitor cannot decode)
    must not silence the client's monitoring: a new state, the cumulative count kept."""
    db = tmp_path / "old.db"
    hdr = {"X-Client-Id": "upgraded"}
    first = start_gateway(db=db)
    call(first, "POST", "/v2/models/digits/infer", infer_body(noise(40)), hdr)
    first.stop()
    first.gateway.store.close()
    store = SQLiteStore(db)
    _, meta = store.get("upgraded")
    store.put("upgraded", b"TWX1\x05\x00\x00\x00{bad}", meta)
    store.close()
    second = start_gateway(db=db)
    call(second, "POST", "/v2/models/digits/infer", infer_body(noise(20, 1)), hdr)
    _, view, _ = call(second, "GET", "/tripwire/v1/clients/upgraded", headers=ADMIN)
    assert view["query_count"] == 60
    assert view["state"]["query_count"] == 20  # the detectors' new state
    metrics = call(second, "GET", "/metrics")[1]
    assert "tripwire_monitor_errors_total" not in metrics


def test_upstream_mode_in_front_of_a_second_server(
    start_gateway: Any, digits: Any, local_model: Any
) -> None:
    inner = start_gateway(plain=True)
    upstream = UpstreamBackend(inner.url, "digits", timeout=10)
    assert upstream.wait_ready(10)
    outer = start_gateway(backend=upstream)
    status, meta, _ = call(outer, "GET", "/v2/models/digits")
    assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8] and meta["platform"] == "upstream"
    x = digits[1].model_input(np.arange(4))
    probs = OIPClient(outer.url, "digits", client_id="u").infer(x)
    np.testing.assert_allclose(probs, local_model.probabilities(x), atol=1e-6)
    OIPClient(outer.url, "digits", client_id="u2").infer(noise(64))
    alerts = call(outer, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [a["client"] for a in alerts] == ["u2"]
    inner.stop()  # the upstream going away is a 502, not a 500
    status, err, _ = call(outer, "POST", "/v2/models/digits/infer", infer_body(x))
    assert status == 502 and "upstream" in err["error"]


def test_trigger_check_raises_its_own_alerts(
    start_gateway: Any, digits: Any, local_model: Any, offload: bool
) -> None:
    train, test = digits
    # Calibrated at 1% FPR on clean inputs of the other classes: class 0 plays the target.
    clean = train.model_input(np.flatnonzero(train.y != 0)[:500])
    check = LogitTrigger(float(np.quantile(local_model.logits(clean)[:, 0], 0.99)))
    srv = start_gateway(trigger_check=check, monitor_process=offload)
    zeros = test.model_input(np.flatnonzero(test.y == 0)[:5])
    others = test.model_input(np.flatnonzero(test.y == 3)[:5])
    OIPClient(srv.url, "digits", client_id="t").infer(others)
    assert call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"] == []
    OIPClient(srv.url, "digits", client_id="t").infer(zeros)
    alerts = call(srv, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [a["detector"] for a in alerts] == ["input-trigger"]
    assert alerts[0]["evidence"]["n_flagged"] >= 3


def test_cross_client_correlation_and_drift(start_gateway: Any, offload: bool) -> None:
    srv = start_gateway(config=GuardConfig(correlate_interval_s=0), monitor_process=offload)
    for i in range(4):
        OIPClient(srv.url, "digits", client_id=f"sybil-{i}").infer(noise(30, i))
    emitted = srv.gateway.correlate_now()
    assert sorted(a["client"] for a in emitted) == [f"sybil-{i}" for i in range(4)]
    assert {a["detector"] for a in emitted} == {"fake-correlation"}
    _, drift, _ = call(srv, "GET", "/tripwire/v1/drift", headers=ADMIN)
    assert drift["drift"]["queries"] == 120
    assert 'tripwire_drift{stat="far_rate"}' in call(srv, "GET", "/metrics")[1]


def test_sqlite_store_caps_payload_bytes(tmp_path: Path) -> None:
    from tripwire.gateway.store import QueryRecord, encode_array

    store = SQLiteStore(tmp_path / "cap.db")
    blob = encode_array(np.random.default_rng(0).random(500).astype(np.float32))
    recs = [QueryRecord("c", float(i), {"n": 1}, blob, None) for i in range(10)]
    import time

    now = time.time()
    for r in recs:
        r.t = now
    store.log_queries(recs, max_bytes=len(blob) * 4, retention_s=3600)
    kept = store.queries("c", limit=100)
    assert len(kept) == 10  # metadata stays
    assert sum(r.input is not None for r in kept) == 4  # the newest payloads only
    assert kept[-1].input is not None and kept[0].input is None
    # More payloads to drop than one page of the oldest holds (256), in later writes.
    more = [QueryRecord("c", now, {"n": 1}, blob, None) for _ in range(700)]
    store.log_queries(more[:300], max_bytes=len(blob) * 4, retention_s=3600)
    store.log_queries(more[300:], max_bytes=len(blob) * 4, retention_s=3600)
    kept = store.queries("c", limit=None)
    assert len(kept) == 710
    assert [r.input is not None for r in kept] == [False] * 706 + [True] * 4
    store.close()


def test_alerts_go_to_the_jsonl_log_and_the_webhook(
    start_gateway: Any, tmp_path: Path, offload: bool
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict[str, Any]] = []
    got = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            got.set()

        def log_message(self, *args: Any) -> None:
            """Keep the test output quiet: the assertions say what was received."""

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    log_path = tmp_path / "alerts.jsonl"
    cfg = GuardConfig(
        alert_log=str(log_path),
        webhook=f"http://127.0.0.1:{hook.server_address[1]}/hook",
        correlate_interval_s=0,
    )
    srv = start_gateway(config=cfg, monitor_process=offload)
    OIPClient(srv.url, "digits", client_id="thief").infer(noise(64))
    # The log is written where the monitor runs: in a monitor process, once it has
    # caught up with the request (flush waits for that).
    srv.gateway.flush()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(a["client"], a["detector"]) for a in lines] == [("thief", "fake-ood")]
    assert got.wait(10) and received[0]["client"] == "thief"
    hook.shutdown()


class _Broken:
    """A monitor whose observe fails: observe mode must still answer normally."""

    state_budget = 64

    def fit(self, reference: Any) -> _Broken:
        return self

    def new_state(self) -> Any:
        from tests.gateway.fakes import FakeState

        return FakeState()

    def observe(self, state: Any, batch: Any) -> list[Any]:
        raise RuntimeError("detector bug")

    def dumps(self, state: Any) -> bytes:
        return b"{}"

    def loads(self, data: bytes) -> Any:
        return self.new_state()

    def correlate(self, states: Any) -> list[Any]:
        return []

    def drift(self, states: Any) -> dict[str, Any]:
        return {}


def test_a_failing_monitor_never_costs_the_client_its_answer(
    start_gateway: Any, digits: Any, local_model: Any, offload: bool
) -> None:
    srv = start_gateway(monitor=_Broken(), monitor_process=offload)
    x = digits[1].model_input(np.arange(3))
    probs = OIPClient(srv.url, "digits", client_id="c").infer(x)
    np.testing.assert_allclose(probs, local_model.probabilities(x), atol=1e-6)
    assert "tripwire_monitor_errors_total 1" in call(srv, "GET", "/metrics")[1]


def test_a_closing_gateway_refuses_new_requests(start_gateway: Any, offload: bool) -> None:
    srv = start_gateway(monitor_process=offload)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/v2/health/live")
    first = conn.getresponse()
    first.read()
    assert first.status == 200
    srv.gateway.close()
    # The kept-alive connection is still open: its next request is refused, not lost.
    conn.request("POST", "/v2/models/digits/infer", body=json.dumps(infer_body(noise(1))))
    resp = conn.getresponse()
    assert resp.status == 503 and resp.getheader("Connection") == "close"
    conn.close()


def test_head_answers_like_get_without_a_body(start_gateway: Any) -> None:
    srv = start_gateway()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("HEAD", "/v2/health/ready")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"" and int(resp.getheader("Content-Length")) > 0
    conn.close()


def test_payload_encoding_round_trips_and_reads_older_entries() -> None:
    import io
    import zlib

    import pytest

    from tripwire.gateway.store import decode_array, encode_array

    rng = np.random.default_rng(0)
    for a in (
        rng.random((2, 1, 28, 28)).astype(np.float32),  # compressed
        rng.random((1, 10)).astype(np.float32),  # small: stored as plain .npy
        np.zeros((0, 10), np.float32),
        np.arange(5, dtype=">i8"),
    ):
        out = decode_array(encode_array(a))
        assert out.dtype == a.dtype and out.shape == a.shape
        np.testing.assert_array_equal(out, a)
    # Entries written before small payloads went uncompressed still decode.
    buf = io.BytesIO()
    np.save(buf, np.ones((1, 10), np.float32), allow_pickle=False)
    np.testing.assert_array_equal(decode_array(zlib.compress(buf.getvalue(), 1)), np.ones((1, 10)))
    with pytest.raises(ValueError):
        encode_array(np.array([{"a": 1}], dtype=object))


def test_eight_bit_images_are_stored_as_codes_and_decode_bit_for_bit() -> None:
    import pytest

    from tripwire.gateway.store import decode_array, encode_array

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    for img in (
        codes.astype(np.float32) / np.float32(255),  # scaled in float32
        (codes.astype(np.float64) / 255).astype(np.float32),  # in float64, then cast
    ):
        enc = encode_array(img)
        assert len(enc) < img.nbytes // 3  # the codes, not the floats
        out = decode_array(enc)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.array_equal(out.view(np.uint32), img.view(np.uint32))
    # Anything that is not exactly code / 255 keeps the float form, bit for bit.
    near = codes.astype(np.float32) / np.float32(255)
    near[0, 0, 0, 0] = np.nextafter(near[0, 0, 0, 0], np.float32(2))
    neg = np.zeros((1, 1, 16, 16), np.float32)
    neg[0, 0, 0, 0] = -0.0
    for a in (near, neg, np.full((1, 100), 2.0, np.float32), np.full((1, 100), np.nan, np.float32)):
        out = decode_array(encode_array(a))
        assert np.array_equal(out.view(np.uint32), a.view(np.uint32))
    with pytest.raises(ValueError):
        decode_array(encode_array(codes.astype(np.float32) / np.float32(255))[:-5])
