"""Extraction detection, offline: attack and benign streams through the monitor vs PRADA.

For each victim (MNIST, CIFAR-10, GTSRB, trained with tripwire.models.train on subsets
and cached outside the repository), the red-team extraction attacks and >= 50 benign
clients of 2,000 queries each are replayed request by request through

- ``default_monitor()`` (the shipped stream classifiers: for grey models the one trained
  on bundled digits and MNIST only, for colour images of at least 16x16 the one also
  trained on a GTSRB victim of another seed, so CIFAR-10 is held out and GTSRB is not;
  ``--classifier`` scores with another, e.g. from ``stream_classifier_lodo.py``), and
- ``prada_monitor()`` (plain PRADA, the baseline),

with every client's state going through dumps/loads between its requests, as in the
gateway. Reported: queries until the first alert per attack, the clone's accuracy at
the first reported budget at or after detection (an upper bound on what it had then),
and the benign clients with any alert.

Natural data for the knockoff kinds: Fashion-MNIST for the MNIST victim, GTSRB for
CIFAR-10 and CIFAR-10 for GTSRB (resized by the attack).

    PYTHONPATH=src python benchmarks/extraction_detection.py \
        --data-dir ../shared/datasets --out /tmp/extraction_detection.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ATTACKS = {
    # kind: (budget, budgets at which a clone is trained and measured, parameters)
    "random": (300, [100, 300], {}),
    "jbda": (400, [200, 400], {}),
    "knockoff": (1000, [100, 300, 500, 1000], {}),
    "knockoff-adaptive": (1000, [300, 1000], {}),
    "paced": (1000, [1000], {}),
    "sybil": (1000, [1000], {"n_clients": 10}),
}
BENIGN_MIX = {
    "ordinary": 20,
    "batch-scorer": 10,
    "repeater": 10,
    "explainer": 10,
    "class-sweep": 10,
}


def load_setting(name: str, data_dir: Path, n_train: int, seed: int) -> tuple[Any, Any, Any]:
    from tripwire.bench.extraction_detection import file_setting

    files = {
        "mnist": "mnist.npz",
        "cifar10": "cifar10-jpeg.tar.gz",
        "gtsrb": "gtsrb_subset.npz",
        "fashion": "fashion_mnist.npz",
    }
    natural_of = {"mnist": "fashion", "cifar10": "gtsrb", "gtsrb": "cifar10"}
    st = file_setting(
        str(data_dir / files[name]),
        str(data_dir / files[natural_of[name]]),
        max_train=n_train,
        seed=seed,
    )
    return st.train, st.test, st.natural


def run_setting(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from tripwire.bench import extraction_detection as ed
    from tripwire.detectors.extraction import default_monitor, prada_monitor

    t0 = time.perf_counter()
    train, test, natural = load_setting(name, Path(args.data_dir), args.n_train, args.seed)
    cache = Path(args.cache_dir) / f"victim-{name}-{args.n_train}-{args.seed}.pt"
    cache.parent.mkdir(parents=True, exist_ok=True)
    victim, acc = ed.make_victim(train, test, epochs=args.epochs, seed=args.seed, cache=cache)
    print(f"[{name}] victim accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    ref = ed.reference_for(victim, train, seed=args.seed)
    monitors = {
        "tripwire": default_monitor(classifier=args.classifier or "default").fit(ref),
        "prada": prada_monitor().fit(ref),
    }
    out: dict[str, Any] = {"victim_accuracy": acc, "attacks": {}, "benign": {}}
    sybil_states: dict[str, dict[str, Any]] = {}
    for kind, (budget, report, params) in ATTACKS.items():
        if kind not in args.kinds.split(","):
            continue
        t1 = time.perf_counter()
        case = ed.cached_attack(
            Path(args.cache_dir) / f"case-{name}-{kind}-{budget}-{args.n_train}-{args.seed}",
            victim,
            train,
            test,
            natural,
            kind,
            budget,
            seed=args.seed,
            dataset=name,
            budgets_to_report=report,
            **params,
        )
        if args.generate_only:
            print(f"[{name}] {kind}: generated ({time.perf_counter() - t1:.0f} s)", flush=True)
            continue
        res: Any = case.result
        row: dict[str, Any] = {
            "budgets": res.budgets,
            "accuracy": [round(a, 4) for a in res.accuracy],
            "fidelity": [round(f, 4) for f in res.fidelity],
        }
        for mname, mon in monitors.items():
            traces = ed.replay(mon, case, round_trip=True)
            firsts = [t.first_alert for t in traces.values()]
            first = min((f for f in firsts if f is not None), default=None)
            det: dict[str, Any] = {"first_alert": first}
            if first is not None:
                det["first_detectors"] = sorted(
                    {t.first_alert_detector for t in traces.values() if t.first_alert == first}
                )
            if kind == "sybil":
                det["clients_alerted"] = sum(f is not None for f in firsts)
                det["clients"] = len(firsts)
                states = {}
                # Correlation over the sybils' final states alone here; next to the
                # benign clients' once those have run (below).
                for cid in traces:
                    states[cid] = _final_state(mon, case, cid)
                sybil_states[mname] = states
                det["correlated"] = [o.to_dict() for o in mon.correlate(states)]
            if first is not None:
                at = next((i for i, b in enumerate(res.budgets) if b >= first), None)
                det["clone_accuracy_at_or_after"] = (
                    None
                    if at is None
                    else {"budget": res.budgets[at], "accuracy": res.accuracy[at]}
                )
            row[mname] = det
        out["attacks"][kind] = row
        print(
            f"[{name}] {kind}: {json.dumps({k: row[k] for k in ('tripwire', 'prada')})} "
            f"acc {row['accuracy']} ({time.perf_counter() - t1:.0f} s)",
            flush=True,
        )
    if args.generate_only:
        return out
    t2 = time.perf_counter()
    benign_alarms: dict[str, dict[str, int]] = {m: {} for m in monitors}
    benign_states: dict[str, dict[str, Any]] = {m: {} for m in monitors}
    n_clients = 0
    for k, (kind, count) in enumerate(BENIGN_MIX.items()):
        cases = ed.benign_cases(
            victim,
            test,
            kinds=[kind],
            clients_per_kind=count,
            n_queries=2000,
            seed=args.seed * 7 + 1 + k,
            dataset=name,
        )
        n_clients += len(cases)
        for mname, mon in monitors.items():
            alarmed = 0
            for case in cases:
                final: dict[str, Any] = {}
                (tr,) = ed.replay(mon, case, round_trip=True, states=final).values()
                alarmed += tr.first_alert is not None
                for cid, st in final.items():
                    benign_states[mname][f"{kind}/{cid}"] = st
            benign_alarms[mname][kind] = alarmed
    out["benign"] = {"clients": n_clients, "queries_each": 2000, "alarmed": benign_alarms}
    # Cross-client correlation over every client: the sybils beside the benign clients
    # (which must not be pooled in), and the benign clients alone (no group at all).
    for mname, mon in monitors.items():
        bs = benign_states[mname]
        out["benign"].setdefault("correlated_alone", {})[mname] = [
            o.to_dict() for o in mon.correlate(bs)
        ]
        if mname in sybil_states and "sybil" in out["attacks"]:
            obs = mon.correlate({**sybil_states[mname], **bs})
            out["attacks"]["sybil"][mname]["correlated_with_benign"] = [o.to_dict() for o in obs]
    alone = {m: len(v) for m, v in out["benign"]["correlated_alone"].items()}
    syb = out["attacks"].get("sybil", {}).get("tripwire", {}).get("correlated_with_benign", [])
    print(
        f"[{name}] correlation: benign alone {alone}, sybil beside benign "
        f"{[o.get('clients') for o in syb]}",
        flush=True,
    )
    print(
        f"[{name}] benign {n_clients} clients: {benign_alarms} ({time.perf_counter() - t2:.0f} s)",
        flush=True,
    )
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _final_state(mon: Any, case: Any, cid: str) -> Any:
    from tripwire.detectors.extraction import QueryBatch

    s = case.stream
    st = mon.new_state()
    mask = s.client_id == cid
    for rid in np.unique(s.request[mask]):
        idx = np.flatnonzero(s.request == rid)
        mon.observe(st, QueryBatch(s.x[idx], case.responses[idx], float(s.t[idx[0]])))
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--settings", default="mnist,gtsrb,cifar10")
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(ATTACKS), help="attack kinds to run")
    ap.add_argument(
        "--classifier",
        help="stream classifier JSON (tripwire guard-train); default: the shipped one",
    )
    ap.add_argument(
        "--generate-only", action="store_true", help="train victims and cache streams only"
    )
    ap.add_argument(
        "--cache-dir", default=str(Path.home() / ".cache" / "tripwire" / "extraction-bench")
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    results: dict[str, Any] = {"args": vars(args)}
    outp = Path(args.out)
    if outp.exists():
        results = json.loads(outp.read_text())
    for name in args.settings.split(","):
        if args.generate_only:
            run_setting(name, args)
            continue
        if name in results:
            print(f"[{name}] already in {outp}, skipped")
            continue
        results[name] = run_setting(name, args)
        outp.write_text(json.dumps(results, indent=1))
    print(f"written {outp}")


if __name__ == "__main__":
    main()
