"""Gateway soak: steady load for a long time, a restart in the middle, no lost state.

Starts ``tripwire guard`` (the CLI, SQLite store) on a model trained on ``--data``;
``--clients`` client threads send MNIST test images at a steady total rate for
``--minutes``; halfway the gateway is stopped with SIGTERM (a clean shutdown) and started
again on the same port and store, while the clients keep going (requests refused during
the restart are retried, and counted apart). Every 30 s the gateway's resident memory
(VmRSS) is sampled. At the end, each client's ``query_count`` in the admin API must
equal the samples it was answered (nothing lost across the restart). Memory is the
gateway's and its children's (the monitor process), summed, with the children's part
recorded apart.

    PYTHONPATH=src python benchmarks/gateway_soak.py --minutes 30 --rate 100 \
        --out runs/gateway_soak.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.attacks.oip_client import infer_body

ADMIN = "soak-admin"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def rss_tree_kib(pid: int) -> tuple[int, int]:
    """Resident memory of ``pid`` and its children (the monitor process), and of the
    children alone."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        kids = []
    children = sum(rss_kib(k) for k in kids)
    return rss_kib(pid) + children, children


def start(model: Path, db: Path, port: int, log: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "TRIPWIRE_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tripwire",
            "guard",
            str(model),
            "--port",
            str(port),
            "--store",
            f"sqlite:{db}",
            "--admin-token",
            ADMIN,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=open(log, "a"),  # noqa: SIM115 - lives as long as the gateway
        text=True,
        env=env,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "serving" not in line:
        raise SystemExit(f"the gateway did not start (see {log})")
    return proc, int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bundled:mnist")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second, in all")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default="runs/gateway_soak.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tripwire.io import load_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model

    work = Path(tempfile.mkdtemp(prefix="tw_gw_soak_"))
    train = load_dataset(args.data)
    test = load_dataset(args.data, split="test")
    result = train_model(train, TrainConfig(epochs=1, seed=0), show_progress=False)
    model = work / "model.pt"
    save_model(result, model, train)
    db, log = work / "guard.db", work / "guard.log"
    proc, port = start(model, db, 0, log)
    x = test.model_input(np.random.default_rng(1).permutation(len(test)))
    bodies = [
        json.dumps(infer_body(x[i : i + args.batch])).encode()
        for i in range(0, len(x) - args.batch, args.batch)
    ]
    duration = args.minutes * 60
    t0 = time.monotonic()
    stop_at = t0 + duration
    answered = [0] * args.clients  # samples answered with 200
    errors = [0] * args.clients  # non-200 answers
    refused = [0] * args.clients  # connection failures (the restart window)
    lat: list[float] = []
    lat_lock = threading.Lock()
    gap = args.clients / args.rate

    def client(i: int) -> None:
        conn: http.client.HTTPConnection | None = None
        k, nxt = i, time.monotonic() + i * gap / args.clients
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            if now < nxt:
                time.sleep(nxt - now)
            nxt += gap
            body = bodies[k % len(bodies)]
            k += args.clients
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                t = time.perf_counter()
                conn.request(
                    "POST",
                    "/v2/models/model/infer",
                    body=body,
                    headers={"X-Client-Id": f"soak-{i}"},
                )
                resp = conn.getresponse()
                resp.read()
                with lat_lock:
                    lat.append(time.perf_counter() - t)
                if resp.status == 200:
                    answered[i] += args.batch
                elif resp.status == 503:  # the gateway draining for its restart
                    refused[i] += 1
                    conn.close()
                    conn = None
                else:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                refused[i] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    memory: list[tuple[float, int]] = []
    child_memory: list[tuple[float, int]] = []

    def sample() -> None:
        total, kids = rss_tree_kib(proc.pid)
        memory.append((round(time.monotonic() - t0, 1), total))
        child_memory.append((round(time.monotonic() - t0, 1), kids))

    restarted = False
    restart_s = None
    while time.monotonic() < stop_at:
        time.sleep(min(30.0, max(0.0, stop_at - time.monotonic())))
        sample()
        if not restarted and time.monotonic() - t0 >= duration / 2:
            r0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            proc, _ = start(model, db, port, log)
            restart_s = time.monotonic() - r0
            restarted = True
            sample()
    for t in threads:
        t.join()
    lost = {}
    for i in range(args.clients):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "GET", f"/tripwire/v1/clients/soak-{i}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        view = json.loads(conn.getresponse().read())
        conn.close()
        lost[f"soak-{i}"] = answered[i] - int(view["query_count"])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    half = [m for t, m in memory if t >= duration / 2 + 30]
    first = [m for t, m in memory if 60 <= t < duration / 2]
    report: dict[str, Any] = {
        "config": vars(args),
        "requests": len(lat),
        "errors": sum(errors),
        "refused_during_restart": sum(refused),
        "restart_s": restart_s,
        "latency_median_ms": float(np.median(lat) * 1000),
        "latency_p99_ms": float(np.quantile(lat, 0.99) * 1000),
        "samples_lost_per_client": lost,
        "rss_kib": memory,
        "rss_children_kib": child_memory,
        "rss_growth_first_half_kib": (first[-1] - first[0]) if len(first) > 1 else None,
        "rss_growth_second_half_kib": (half[-1] - half[0]) if len(half) > 1 else None,
        "load_avg": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_kib"}, indent=1))


if __name__ == "__main__":
    main()
