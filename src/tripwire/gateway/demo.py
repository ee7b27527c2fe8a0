"""The gateway's scene in ``tripwire demo``: an extraction attack against a guarded model.

A local gateway serves the demo's model with the shipped extraction monitor; an ordinary
client and a random-noise extraction attacker (Tramèr et al., 2016) query it over HTTP;
the alerts are read back through the admin API, as an operator would.
"""

from __future__ import annotations

import http.client
import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.attacks.benign import benign_stream
from tripwire.attacks.extraction import Victim, extract
from tripwire.attacks.oip_client import OIPClient
from tripwire.io import Dataset


def extraction_scenario(
    model_path: str | Path,
    train: Dataset,
    test: Dataset,
    out_dir: str | Path,
    *,
    budget: int = 512,
    benign_queries: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the scenario; returns what happened (alerts, when, the stolen model's accuracy).

    The gateway's store and alert log are written to ``out_dir`` (``guard.db``,
    ``alerts.jsonl``).
    """
    from tripwire.detectors.extraction import default_monitor
    from tripwire.detectors.extraction.base import Reference
    from tripwire.gateway.backend import LocalBackend
    from tripwire.gateway.config import GuardConfig
    from tripwire.gateway.core import Gateway
    from tripwire.gateway.server import GatewayServer
    from tripwire.gateway.store import SQLiteStore
    from tripwire.models.loading import load_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "guard.db", out / "alerts.jsonl"):
        stale.unlink(missing_ok=True)
    model = load_model(model_path, device="cpu")
    backend = LocalBackend(model, train.input_shape)
    rng = np.random.default_rng(seed)
    ref_x = train.model_input(np.sort(rng.choice(len(train), min(2000, len(train)), replace=False)))
    monitor = default_monitor().fit(
        Reference(
            x=ref_x,
            probs=model.probabilities(ref_x),
            n_classes=int(backend.n_classes or 0),
            input_shape=train.input_shape,
        )
    )
    token = secrets.token_urlsafe(16)
    store = SQLiteStore(out / "guard.db")
    gateway = Gateway(
        backend,
        "demo",
        monitor=monitor,
        store=store,
        config=GuardConfig(alert_log=str(out / "alerts.jsonl")),
        admin_token=token,
    )
    server = GatewayServer(gateway, "127.0.0.1", 0).start()
    try:
        stream = benign_stream(
            test, "ordinary", n_queries=benign_queries, seed=seed, client_id="app-frontend"
        )
        client = OIPClient(server.url, "demo", client_id="app-frontend")
        for _, _, x in stream.requests():
            client.infer(x)
        result = extract(
            Victim.from_oip(server.url, "demo"),
            "random",
            budget=budget,
            input_shape=train.input_shape,
            n_classes=int(backend.n_classes or 0),
            eval_data=test.subset(
                np.sort(rng.choice(len(test), min(500, len(test)), replace=False))
            ),
            epochs=3,
            seed=seed,
            reference=model.probabilities,
        )
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/tripwire/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        alerts = json.loads(conn.getresponse().read())["alerts"]
        conn.close()
    finally:
        server.stop()
        store.close()
    attacker = [a for a in alerts if a["client"] == "attacker-0"]
    return {
        "alerts": alerts,
        "attacker_alerts": len(attacker),
        "attacker_first_alert_at": min((a["query_count"] for a in attacker), default=None),
        "benign_alerts": sum(a["client"] == "app-frontend" for a in alerts),
        "attack_budget": budget,
        "stolen_accuracy": result.accuracy[-1],
        "victim_accuracy": result.victim_accuracy,
        "summary": _summary(attacker, alerts, budget, result.accuracy[-1]),
    }


def _summary(
    attacker: list[dict[str, Any]], alerts: list[dict[str, Any]], budget: int, stolen: float
) -> str:
    benign = sum(a["client"] == "app-frontend" for a in alerts)
    if attacker:
        first = min(attacker, key=lambda a: a["query_count"])
        caught = (
            f"flagged by {first['detector']} ({first['severity']}) after "
            f"{first['query_count']} of {budget} queries"
        )
    else:
        caught = f"not flagged within {budget} queries"
    return (
        f"gateway: extraction attacker {caught}; stolen model accuracy {stolen:.3f}; "
        f"{benign} alert(s) on the ordinary client"
    )


__all__ = ["extraction_scenario"]
