"""Extraction detection through the running gateway, over real HTTP.

Serves a victim with ``tripwire guard``'s own gateway (the shipped extraction monitor,
fitted on a reference sample of the training data, SQLite store) on a free port, then:

- benign clients (``--benign-clients`` of ``--benign-queries`` samples each, cycling
  through the kinds of :mod:`tripwire.attacks.benign`: ordinary, batch-scorer,
  repeater, explainer, class-sweep) query it through
  :class:`~tripwire.attacks.oip_client.OIPClient`;
- each extraction attack of ``--kinds`` runs through ``Victim.from_oip`` under its own
  client id (sybil under ``sybil-00`` ...), and its stolen model is measured at the
  budgets of ``--report-at``.

The alerts are read back from the admin API: for each attack the cumulative query count
of its first alert (``query_count`` as the gateway recorded it) and the stolen model's
accuracy at the budgets; for the benign side, how many clients got any alert and from
which detector. Arrival times are real (the attacks are not paced in wall-clock time).

    PYTHONPATH=src python benchmarks/gateway_detection.py --data ../shared/datasets/mnist.npz \
        --natural ../shared/datasets/fashion_mnist.npz --out runs/gateway_detection.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.bench.extraction_detection import BENIGN

ADMIN = "detect-admin"


def alerts(port: int) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/tripwire/v1/alerts", headers={"Authorization": f"Bearer {ADMIN}"})
    out = json.loads(conn.getresponse().read())["alerts"]
    conn.close()
    return list(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bundled:mnist")
    ap.add_argument("--natural", default="bundled:digits", help="Knockoff's other-domain images")
    ap.add_argument("--model", help="a victim model file (default: train one, 3 epochs)")
    ap.add_argument("--kinds", default="random,jbda,knockoff,knockoff-adaptive,sybil")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--report-at", default="100,500")
    ap.add_argument("--benign-clients", type=int, default=50)
    ap.add_argument("--benign-queries", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4, help="benign clients in parallel")
    ap.add_argument("--out", default="runs/gateway_detection.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tripwire.attacks.benign import benign_stream
    from tripwire.attacks.extraction import Victim, extract
    from tripwire.attacks.oip_client import OIPClient
    from tripwire.cli.commands.guard import build_gateway, guard_args
    from tripwire.gateway import GatewayServer
    from tripwire.io import load_dataset, save_dataset
    from tripwire.models.loading import load_model
    from tripwire.models.train import TrainConfig, save_model, train_model

    work = Path(tempfile.mkdtemp(prefix="tw_gw_detect_"))
    train = load_dataset(args.data, split="train")
    test = load_dataset(args.data, split="test")
    natural = load_dataset(args.natural, split="train")
    model_path = Path(args.model) if args.model else work / "victim.pt"
    if not args.model:
        res = train_model(train, TrainConfig(epochs=3, seed=0), show_progress=False)
        save_model(res, model_path, train)
    rng = np.random.default_rng(0)
    ref = train.subset(np.sort(rng.choice(len(train), min(2000, len(train)), replace=False)))
    save_dataset(ref, work / "reference.npz")
    gw = build_gateway(
        guard_args(
            str(model_path),
            "--name",
            "victim",
            "--reference",
            str(work / "reference.npz"),
            "--store",
            f"sqlite:{work / 'guard.db'}",
            f"--admin-token={ADMIN}",
            "--threads",
            "1",
            "--port",
            "0",
        )
    )
    server = GatewayServer(gw, "127.0.0.1", 0).start()
    local = load_model(model_path, device="cpu")
    t0 = time.perf_counter()

    def benign(i: int) -> None:
        kind = BENIGN[i % len(BENIGN)]
        stream = benign_stream(
            test,
            kind,
            n_queries=args.benign_queries,
            seed=100 + i,
            client_id=f"benign-{kind}-{i:02d}",
        )
        client = OIPClient(server.url, "victim", client_id=f"benign-{kind}-{i:02d}")
        for _, _, x in stream.requests():
            client.infer(x)

    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(benign, range(args.benign_clients)))
    benign_s = time.perf_counter() - t0
    report_at = sorted({int(b) for b in args.report_at.split(",") if b} | {args.budget})
    eval_data = test.subset(np.sort(rng.choice(len(test), min(1000, len(test)), replace=False)))
    seed_data = train.subset(np.sort(rng.choice(len(train), 100, replace=False)))
    attacks: dict[str, Any] = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        ts = time.perf_counter()
        r = extract(
            Victim.from_oip(server.url, "victim"),
            kind,
            budget=args.budget,
            input_shape=train.input_shape,
            n_classes=train.n_classes,
            eval_data=eval_data,
            seed=0,
            seed_data=seed_data,
            natural_data=natural,
            budgets_to_report=report_at,
            client_id=f"atk-{kind}",
            reference=local.probabilities,
            epochs=5,
        )
        mine = [
            a
            for a in alerts(server.port)
            if (
                a["client"].startswith("sybil-")
                if kind == "sybil"
                else a["client"] == f"atk-{kind}"
            )
        ]
        first = min(mine, key=lambda a: a["query_count"]) if mine else None
        attacks[kind] = {
            "first_alert_query_count": None if first is None else first["query_count"],
            "first_alert_detector": None if first is None else first["detector"],
            "first_alert_severity": None if first is None else first["severity"],
            "alerted_clients": sorted({a["client"] for a in mine}),
            "budgets": r.budgets,
            "stolen_accuracy": [round(a, 4) for a in r.accuracy],
            "victim_accuracy": round(r.victim_accuracy, 4),
            "seconds": round(time.perf_counter() - ts, 1),
        }
        print(kind, json.dumps(attacks[kind]), flush=True)
    all_alerts = alerts(server.port)
    benign_alerts = [a for a in all_alerts if a["client"].startswith("benign-")]
    server.stop()
    report = {
        "config": vars(args),
        "benign": {
            "clients": args.benign_clients,
            "queries_each": args.benign_queries,
            "clients_alerted": sorted({a["client"] for a in benign_alerts}),
            "alerts_by_detector": {
                d: sum(a["detector"] == d for a in benign_alerts)
                for d in sorted({a["detector"] for a in benign_alerts})
            },
            "seconds": round(benign_s, 1),
        },
        "attacks": attacks,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["benign"], indent=1))


if __name__ == "__main__":
    main()
