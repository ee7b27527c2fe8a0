"""Gateway overhead: the same model served plainly vs through tripwire, side by side.

Four servers run at once, each in its own process with one torch and one BLAS thread
(as ``tripwire guard --threads 1`` serves):

- ``plain``: a minimal OIP v2 server without monitoring (the gateway's own HTTP and
  OIP code with no monitor, store, identity or logging: the baseline);
- ``gateway-only``: the gateway with a monitor that only counts (identity, per-client
  lock and record, query log with payloads, metrics): what the gateway itself costs;
- ``guard``: ``tripwire guard`` as the CLI builds it (the shipped extraction monitor,
  SQLite store, query log with payloads; by default the monitor, records and query log
  run in a monitor process beside the serving process), trigger check off;
- ``guard-inproc``: the same with ``--monitor-process off`` (everything in the serving
  process, as before session 8 and as enforce mode runs);
- ``guard+trigger``: the same with the run-time trigger check on, as
  ``--trigger-check reference`` builds it (tier 1 of the triggered-input detector: a
  class-conditional outlier score of the serving pass's penultimate features, threshold
  at 1% false rejections on held-out reference inputs; run by the monitor process).

Real HTTP clients (threads in this process, keep-alive connections, one client id per
thread, MNIST test images) load each server in turn, in rounds whose order rotates, so
that the machine's background load hits every configuration alike. Each turn has two
phases of ``--seconds`` each: one client sending requests back to back (the latency a
request sees when the server is not saturated: median and p99, client side), then
``--clients`` clients at once (the server saturated: throughput; their latency is
reported too, but it is mostly queueing). Then each client's stored state size against
the monitor's budget.

    PYTHONPATH=src python benchmarks/gateway_overhead.py --rounds 3 --seconds 8 \
        --clients 4 --batch 1 --out runs/gateway_overhead.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.attacks.oip_client import infer_body

ADMIN = "bench-admin"
NAME = "mnist"


# -- server side ------------------------------------------------------------------------
class _Count:
    def __init__(self, n: int = 0) -> None:
        self.query_count = n


class CountingMonitor:
    """Follows the monitor contract and only counts: isolates the gateway's own cost."""

    state_budget = 64

    def fit(self, reference: Any) -> CountingMonitor:
        return self

    def new_state(self) -> _Count:
        return _Count()

    def observe(self, state: Any, batch: Any) -> list[Any]:
        state.query_count += len(batch.x)
        return []

    def dumps(self, state: Any) -> bytes:
        return str(state.query_count).encode()

    def loads(self, data: bytes) -> _Count:
        return _Count(int(data))

    def correlate(self, states: Any) -> list[Any]:
        return []

    def drift(self, states: Any) -> dict[str, Any]:
        return {}


def make_gateway(kind: str, model_path: str, reference: str, store: str) -> Any:
    """The gateway of one configuration (see the module docstring)."""
    from tripwire.cli.commands.guard import build_gateway, guard_args
    from tripwire.gateway import Gateway, LocalBackend
    from tripwire.gateway.backend import model_input_shape
    from tripwire.models.loading import load_model

    extra = {
        "guard-inproc": ["--monitor-process", "off"],
        "guard+trigger": ["--trigger-check", "reference"],
    }.get(kind, [])
    if kind == "plain":
        model = load_model(model_path, device="cpu")
        gw = Gateway(LocalBackend(model, model_input_shape(model_path, None)), NAME)
    elif kind == "gateway-only":
        from tripwire.gateway import SQLiteStore

        model = load_model(model_path, device="cpu")
        gw = Gateway(
            LocalBackend(model, model_input_shape(model_path, None)),
            NAME,
            monitor=CountingMonitor(),
            store=SQLiteStore(store.removeprefix("sqlite:")),
            admin_token=ADMIN,
        )
    else:
        args = guard_args(
            str(model_path),
            "--name",
            NAME,
            "--reference",
            str(reference),
            "--store",
            store,
            f"--admin-token={ADMIN}",
            "--threads",
            "1",
            "--port",
            "0",
            *extra,
        )
        gw = build_gateway(args)
    return gw


def serve(kind: str, model_path: str, reference: str, store: str) -> None:
    import torch

    torch.set_num_threads(1)
    from tripwire.gateway import GatewayServer

    gw = make_gateway(kind, model_path, reference, store)
    # As `tripwire guard --threads 1` serves: torch and BLAS at one thread (the plain
    # server's only NumPy work is a softmax, so the cap does not change it).
    from tripwire.cli.commands.guard import serving_threads

    serving_threads(1)
    srv = GatewayServer(gw, "127.0.0.1", 0)
    print(f"READY {srv.port}", flush=True)
    srv.serve_forever()


# -- client side ------------------------------------------------------------------------
def load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hdr = {"Content-Type": "application/json", "X-Client-Id": f"bench-{i}"}
        k = i
        while time.perf_counter() < stop:
            body = bodies[k % len(bodies)]
            k += clients
            t0 = time.perf_counter()
            conn.request("POST", f"/v2/models/{NAME}/infer", body=body, headers=hdr)
            resp = conn.getresponse()
            resp.read()
            lat[i].append(time.perf_counter() - t0)
            if resp.status != 200:
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    all_lat = [v for row in lat for v in row]
    return {"latencies": all_lat, "requests": len(all_lat), "errors": sum(errors), "wall": wall}


class _Headers(dict[str, str]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)


def cpu_per_request(
    kinds: list[str], model_path: Path, reference: Path, work: Path, bodies: list[bytes]
) -> dict[str, float]:
    """CPU milliseconds per request of each configuration, calling the gateway in this
    process without HTTP (all threads of the process counted, the query-log writer
    included, and the monitor process's CPU where there is one): on a loaded machine,
    CPU time moves far less than wall time."""
    out: dict[str, list[float]] = {k: [] for k in kinds}
    gws = {
        k: make_gateway(k, str(model_path), str(reference), f"sqlite:{work / ('cpu-' + k + '.db')}")
        for k in kinds
    }
    n = 500
    for _ in range(3):
        for k, gw in gws.items():
            headers = _Headers({"X-Client-Id": "cpu"})
            child0 = _child_cpu(gw)
            c0 = time.process_time()
            for i in range(n):
                gw.handle(
                    "POST",
                    f"/v2/models/{NAME}/infer",
                    headers,
                    bodies[i % len(bodies)],
                    "127.0.0.1",
                )
            if gw.store is not None:
                gw.flush()  # with a monitor process: returns once it has caught up
            used = time.process_time() - c0 + _child_cpu(gw) - child0
            out[k].append(used / n * 1000)
    for gw in gws.values():
        gw.close()
    return {k: float(np.median(v)) for k, v in out.items()}


def _child_cpu(gw: Any) -> float:
    """CPU seconds (user + system) of the gateway's monitor process so far; 0 without."""
    offload = getattr(gw, "_offload", None)
    if offload is None:
        return 0.0
    fields = Path(f"/proc/{offload.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admin_get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--serve", nargs=4, metavar=("KIND", "MODEL", "REFERENCE", "STORE"), help=argparse.SUPPRESS
    )
    ap.add_argument("--data", default="bundled:mnist", help="MNIST-like data (default bundled)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="runs/gateway_overhead.json")
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return

    import torch

    torch.set_num_threads(1)
    from tripwire.io import load_dataset, save_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model

    work = Path(tempfile.mkdtemp(prefix="tw_gw_bench_"))
    train = load_dataset(args.data, split="train")
    test = load_dataset(args.data, split="test")
    t0 = time.perf_counter()
    result = train_model(train, TrainConfig(epochs=args.epochs, seed=0), show_progress=False)
    model_path = work / "mnist.pt"
    save_model(result, model_path, train)
    rng = np.random.default_rng(0)
    ref = train.subset(np.sort(rng.choice(len(train), min(2000, len(train)), replace=False)))
    save_dataset(ref, work / "reference.npz")
    print(f"model trained in {time.perf_counter() - t0:.0f} s, accuracy {result.accuracy:.3f}")

    kinds = ["plain", "gateway-only", "guard-inproc", "guard", "guard+trigger"]
    procs: dict[str, subprocess.Popen[str]] = {}
    ports: dict[str, int] = {}
    env = {**os.environ, "TRIPWIRE_NO_PROGRESS": "1"}
    for kind in kinds:
        p = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                kind,
                str(model_path),
                str(work / "reference.npz"),
                f"sqlite:{work / (kind + '.db')}",
            ],
            stdout=subprocess.PIPE,
            stderr=open(work / f"{kind}.log", "w"),  # noqa: SIM115 - lives as long as the server
            text=True,
            env=env,
        )
        line = p.stdout.readline() if p.stdout else ""
        if not line.startswith("READY"):
            for started in [*procs.values(), p]:  # leave no server behind
                started.terminate()
            raise SystemExit(f"server {kind} did not start (see {work / (kind + '.log')})")
        procs[kind], ports[kind] = p, int(line.split()[1])
    # In random order: a client reading the test set class by class is not ordinary.
    x = test.model_input(np.random.default_rng(1).permutation(len(test)))
    bodies = [
        json.dumps(infer_body(x[i : i + args.batch])).encode()
        for i in range(0, len(x) - args.batch, args.batch)
    ]
    try:
        for kind in kinds:  # warm-up: first requests load code paths and caches
            load(ports[kind], bodies, args.clients, 1.0)
        single: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
            for kind in order:
                single[kind].append(load(ports[kind], bodies, 1, args.seconds))
                runs[kind].append(load(ports[kind], bodies, args.clients, args.seconds))
        table = {}
        for kind in kinds:
            lat = np.array([v for run in single[kind] for v in run["latencies"]]) * 1000
            sat = np.array([v for run in runs[kind] for v in run["latencies"]]) * 1000
            reqs = sum(run["requests"] for run in runs[kind])
            wall = sum(run["wall"] for run in runs[kind])
            table[kind] = {
                "median_ms": float(np.median(lat)),
                "p99_ms": float(np.quantile(lat, 0.99)),
                "throughput_rps": reqs / wall,
                "saturated_median_ms": float(np.median(sat)),
                "saturated_p99_ms": float(np.quantile(sat, 0.99)),
                "requests": reqs + sum(run["requests"] for run in single[kind]),
                "errors": sum(run["errors"] for run in runs[kind] + single[kind]),
                # Per round, to show how much the shared machine moved the figures.
                "round_medians_ms": [
                    round(float(np.median(run["latencies"]) * 1000), 3) for run in single[kind]
                ],
            }
        base = table["plain"]
        for kind in kinds:
            t = table[kind]
            t["added_median_ms"] = t["median_ms"] - base["median_ms"]
            t["added_p99_ms"] = t["p99_ms"] - base["p99_ms"]
            t["throughput_ratio"] = t["throughput_rps"] / base["throughput_rps"]
        states = {}
        for kind in ("guard-inproc", "guard", "guard+trigger"):
            views = [
                admin_get(ports[kind], f"/tripwire/v1/clients/bench-{i}")
                for i in range(args.clients)
            ]
            states[kind] = {
                "bytes_max": max(v["state"]["bytes"] for v in views),
                "budget": views[0]["state"]["budget"],
                "queries_per_client_min": min(v["query_count"] for v in views),
                "alerts": len(admin_get(ports[kind], "/tripwire/v1/alerts")["alerts"]),
            }
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=30)
    # As the servers above run: BLAS at one thread. Without the cap NumPy's idle OpenBLAS
    # workers spin, and their CPU counted as the monitor's in this process-wide measure.
    from tripwire.cli.commands.guard import serving_threads

    serving_threads(1)
    cpu = cpu_per_request(kinds, model_path, work / "reference.npz", work, bodies)
    report = {
        "cpu_ms_per_request": cpu,
        "config": vars(args) | {"serve": None},
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "results": table,
        "state": states,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{'config':<15}{'median ms':>10}{'p99 ms':>9}{'+median':>9}{'+p99':>8}"
        f"{'req/s':>8}{'ratio':>7}{'errors':>7}"
    )
    for kind, t in table.items():
        print(
            f"{kind:<15}{t['median_ms']:>10.2f}{t['p99_ms']:>9.2f}{t['added_median_ms']:>9.2f}"
            f"{t['added_p99_ms']:>8.2f}{t['throughput_rps']:>8.0f}"
            f"{t['throughput_ratio']:>7.2f}{t['errors']:>7}"
        )
    print(
        "saturated (",
        args.clients,
        "clients): median/p99 ms",
        {
            k: (round(t["saturated_median_ms"], 2), round(t["saturated_p99_ms"], 2))
            for k, t in table.items()
        },
    )
    print("state:", json.dumps(states))
    print(
        "CPU ms per request (in process):",
        {k: f"{v:.3f} ({v / cpu['plain']:.2f}x)" for k, v in cpu.items()},
    )
    print("load average:", os.getloadavg())


if __name__ == "__main__":
    main()
