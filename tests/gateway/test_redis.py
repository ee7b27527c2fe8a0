"""Two gateway replicas sharing one real redis-server see one view of each client."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gateway.test_gateway import ADMIN, call
from tripwire.attacks.oip_client import OIPClient

pytest.importorskip("redis", reason="the redis package is absent (extra gateway-redis)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("redis-server did not start")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_two_replicas_share_each_client(start_gateway: Any, redis_url: str, digits: Any) -> None:
    from tripwire.gateway import RedisStore

    a = start_gateway(store=RedisStore(redis_url))
    b = start_gateway(store=RedisStore(redis_url))
    rng = np.random.default_rng(0)
    ordinary = digits[1].model_input(np.arange(5))

    def send(i: int) -> None:
        # One client spread over both replicas, concurrently (a load balancer's view).
        srv = a if i % 2 == 0 else b
        OIPClient(srv.url, "digits", client_id="shared").infer(ordinary)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(40)))
    for srv in (a, b):
        _, view, _ = call(srv, "GET", "/tripwire/v1/clients/shared", headers=ADMIN)
        # Per-client locking: no lost update among 40 interleaved requests.
        assert view["query_count"] == 200 and view["requests"] == 40
    # An alert raised through one replica is visible through the other at once.
    OIPClient(a.url, "digits", client_id="thief").infer(rng.random((64, 1, 8, 8), dtype=np.float32))
    alerts = call(b, "GET", "/tripwire/v1/alerts", headers=ADMIN)[1]["alerts"]
    assert [(x["client"], x["query_count"]) for x in alerts] == [("thief", 64)]
    a.gateway.flush()
    b.gateway.flush()
    # The query log is shared too: every request of the client, whichever replica took it.
    assert len(b.gateway.store.queries("shared", limit=100)) == 40


def _qrec(client: str, t: float, x: Any, out: Any) -> Any:
    from tripwire.gateway.store import QueryRecord, encode_array

    return QueryRecord(client, t, {"n": len(x), "status": 200}, encode_array(x), encode_array(out))


def test_redis_queries_without_a_limit(redis_url: str) -> None:
    from tripwire.gateway import RedisStore

    st = RedisStore(redis_url)
    x = np.zeros((1, 2), dtype=np.float32)
    st.log_queries([_qrec("a", time.time() + i, x, x) for i in range(120)], 1 << 30, 1e9)
    st.log_queries([_qrec("b", time.time(), x, x)], 1 << 30, 1e9)
    assert len(st.queries("a", limit=7)) == 7
    every = st.queries("a", limit=None)
    assert len(every) == 120 and all(r.client == "a" for r in every)
    assert [r.t for r in every] == sorted(r.t for r in every)
    st.close()
