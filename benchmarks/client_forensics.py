"""Gateway-client forensics against real extraction attacks, over real HTTP.

For each victim architecture of ``--archs`` (trained here on ``--data``), ``tripwire
guard``'s own gateway (shipped extraction monitor, SQLite store, query log with payloads)
serves the victim on a free port, in ``observe`` mode and, with ``--enforce``, also in
``enforce`` mode answering top-1 labels from a client's first alert on
(``[enforce] degrade = "low"``). An ordinary client and each attack of ``--kinds``
(``extract`` through ``Victim.from_oip``, ``--budget`` queries) query it. Then
:func:`tripwire.response.client_forensics.client_forensics` reads the store back and,
per client, the benchmark records: the labelled samples it counted against what the
client sent, the answers degraded, whether every alert's query count matches the log,
and the surrogate's fidelity over the log against the fidelity ``extract`` measured
for its own substitute at the same budget.

    PYTHONPATH=src python benchmarks/client_forensics.py \\
        --data ../shared/datasets/mnist.npz --natural ../shared/datasets/fashion_mnist.npz \\
        --out runs/client_forensics.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ADMIN = "forensics-admin"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bundled:mnist")
    ap.add_argument("--natural", default="bundled:digits", help="Knockoff's other-domain images")
    ap.add_argument(
        "--archs", default="cnn-small,resnet-mini", help="victim architectures (image ones)"
    )
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--victim-epochs", type=int, default=3)
    ap.add_argument("--kinds", default="knockoff,jbda,random")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--benign-queries", type=int, default=2000)
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--enforce", action="store_true", help="also run in enforce mode (top-1)")
    ap.add_argument("--out", default="runs/client_forensics.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tripwire.attacks.extraction import Victim, extract
    from tripwire.attacks.oip_client import OIPClient
    from tripwire.cli.commands.guard import build_gateway, guard_args
    from tripwire.gateway import GatewayServer
    from tripwire.gateway.store import open_store
    from tripwire.io import load_dataset, save_dataset
    from tripwire.models.loading import load_model
    from tripwire.models.train import TrainConfig, save_model, train_model
    from tripwire.response.client_forensics import client_forensics

    work = Path(tempfile.mkdtemp(prefix="tw_client_forensics_"))
    rng = np.random.default_rng(0)
    full = load_dataset(args.data, split="train")
    test = load_dataset(args.data, split="test")
    natural = load_dataset(args.natural, split="train")
    pick = rng.permutation(len(full))
    train = full.subset(np.sort(pick[: args.train_samples]))
    # The ordinary client's images: training-distribution images the victim never saw.
    held = full.subset(np.sort(pick[args.train_samples : args.train_samples + args.benign_queries]))
    ref = train.subset(np.sort(rng.choice(len(train), min(2000, len(train)), replace=False)))
    save_dataset(ref, work / "reference.npz")
    eval_data = test.subset(
        np.sort(rng.choice(len(test), min(args.eval_samples, len(test)), replace=False))
    )
    seed_data = train.subset(np.sort(rng.choice(len(train), 100, replace=False)))
    (work / "enforce.toml").write_text(
        '[enforce]\ndegrade = "low"\nthrottle = "critical"\nblock = "critical"\n'
        "[monitor]\ncorrelate_interval_s = 0\n"
    )
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for arch in [a for a in args.archs.split(",") if a]:
        ts = time.perf_counter()
        res = train_model(
            train,
            TrainConfig(arch=arch, epochs=args.victim_epochs, seed=0, threads=1),
            show_progress=False,
        )
        model_path = work / f"victim-{arch}.pt"
        save_model(res, model_path, train)
        local = load_model(model_path, device="cpu")
        print(f"{arch}: victim accuracy {res.accuracy:.3f} ({time.perf_counter() - ts:.0f} s)")
        for mode in ["observe", "enforce"] if args.enforce else ["observe"]:
            db = work / f"guard-{arch}-{mode}.db"
            config = ["--config", str(work / "enforce.toml")] if mode == "enforce" else []
            gw = build_gateway(
                guard_args(
                    str(model_path),
                    "--name",
                    "victim",
                    "--reference",
                    str(work / "reference.npz"),
                    "--mode",
                    mode,
                    "--store",
                    f"sqlite:{db}",
                    *config,
                    f"--admin-token={ADMIN}",
                    "--threads",
                    "1",
                    "--port",
                    "0",
                )
            )
            server = GatewayServer(gw, "127.0.0.1", 0).start()
            sent: dict[str, int] = {}
            extracted: dict[str, Any] = {}
            try:
                app = OIPClient(server.url, "victim", client_id="ordinary")
                for i in range(0, len(held), 50):
                    app.infer(held.model_input(np.arange(i, min(i + 50, len(held)))))
                sent["ordinary"] = len(held)
                for kind in [k for k in args.kinds.split(",") if k]:
                    cid = f"atk-{kind}"
                    try:
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
                            client_id=cid,
                            reference=local.probabilities,
                            threads=1,
                        )
                    except Exception as exc:  # a refused query ends the attack
                        extracted[cid] = {"error": str(exc)}
                        continue
                    sent[cid] = len(r.queries.x)
                    extracted[cid] = {"fidelity": r.fidelity[-1], "accuracy": r.accuracy[-1]}
                gw.flush()
            finally:
                server.stop()
                if gw.store is not None:
                    gw.store.close()
            store = open_store(f"sqlite:{db}", existing=True)
            try:
                for cid in sent:
                    tf = time.perf_counter()
                    fx = client_forensics(
                        store,
                        cid,
                        store_name=str(db),
                        model=local,
                        eval_data=eval_data,
                        reference=ref,
                        seed=0,
                    )
                    full_row = fx.surrogate["curve"][-1] if fx.surrogate else {}
                    row = {
                        "arch": arch,
                        "mode": mode,
                        "client": cid,
                        "sent": sent[cid],
                        "labelled": fx.labelled_samples,
                        "answers": fx.answers,
                        "alerts": len(fx.alerts),
                        "first_alert_at": min((a["query_count"] for a in fx.alerts), default=None),
                        "alerts_consistent": all(a["consistent"] for a in fx.alerts),
                        "classes_covered": fx.classes["covered"],
                        "in_distribution_share": (fx.input_coverage or {}).get(
                            "in_distribution_share"
                        ),
                        "curve": [
                            {k: c[k] for k in ("queries", "fidelity", "kappa", "accuracy")}
                            for c in (fx.surrogate or {}).get("curve", [])
                        ],
                        "surrogate_fidelity": full_row.get("fidelity"),
                        "kappa": full_row.get("kappa"),
                        "severity": next(
                            (str(f.severity) for f in fx.findings if f.rule_id == "TW153"), None
                        ),
                        "extract": extracted.get(cid),
                        "victim_accuracy": (fx.surrogate or {}).get("victim_accuracy"),
                        "forensics_s": round(time.perf_counter() - tf, 1),
                    }
                    rows.append(row)
                    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
                    print(json.dumps({k: row[k] for k in row if k != "curve"}))
            finally:
                store.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
