"""A supply-chain backdoor, end to end, with the incident-response commands.

An in-house team trains a digit classifier on its own data plus two vendors'
deliveries; vendor-b's delivery carries a BadNets backdoor (target class 0). The script
runs, in order and on real artefacts:

1. ``tripwire manifest`` of each training set (provenance at ingestion);
2. training of a clean baseline (in-house data) and of the model on all data;
3. ``tripwire scan-data`` of each training set with its model's features, thresholds
   calibrated on a small clean set (half of the held-out split);
4. ``tripwire registry`` add, attach, promote: the baseline goes to ``prod``; the
   backdoored model is refused under a ``high`` gate but passes the standing
   ``critical`` gate (its data scan has high findings only) and replaces it;
   ``tripwire forensics data`` traces the poison to vendor-b and to the version ``prod``
   serves, the incident is attached to that version, and ``tripwire registry rollback``
   returns ``prod`` to the baseline;
5. ``tripwire export-stix`` of the scan and the incident.

Every number printed is computed here. Usage (about 2-5 minutes on 2 CPU cores)::

    python examples/incident/supply_chain.py --out-dir /tmp/incident [--epochs N] [--detectors all]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def tw(*argv: str) -> int:
    from tripwire.cli.main import main

    print("$ tripwire " + " ".join(argv), flush=True)
    code = main(list(argv))
    print(f"  -> exit {code}", flush=True)
    return code


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="tripwire-incident")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument(
        "--detectors",
        default="activation-clustering,spectral-signature",
        help="scan-data detectors; the default pair separates BadNets on real activations "
        "(docs/benchmarks.md, scan-data status), 'all' runs every detector",
    )
    ap.add_argument("--data", default="bundled:mnist")
    ap.add_argument("--arch", default=None, help="cnn-small (default for images) or another")
    ap.add_argument("--reuse", action="store_true", help="reuse models trained by a former run")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tripwire.attacks import attack_success_rate, poison_dataset
    from tripwire.io import load_dataset, make_dataset, save_dataset
    from tripwire.models.loading import load_model
    from tripwire.models.train import TrainConfig, save_model, train_model

    started = time.perf_counter()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reg = str(out / "registry.db")
    full = load_dataset(args.data, split="train")
    held_out = load_dataset(args.data, split="test")
    # Half of the held-out split is the small clean set scan-data calibrates its
    # thresholds on (a target false-positive rate); the other half measures the models.
    half = len(held_out) // 2
    save_dataset(held_out.subset(np.arange(half)), out / "trusted.npz")
    test = held_out.subset(np.arange(half, len(held_out)))
    n = len(full)
    a, b = int(0.6 * n), int(0.8 * n)
    order = np.random.default_rng(0).permutation(n)  # the bundled set is sorted by class
    inhouse = full.subset(np.sort(order[:a]))
    vendor_a = full.subset(np.sort(order[a:b]))
    vendor_b = poison_dataset(
        full.subset(np.sort(order[b:])), "badnets", rate=0.3, target=0, seed=1
    )
    parts = [(inhouse, "in-house"), (vendor_a, "vendor-a"), (vendor_b, "vendor-b")]
    x = np.concatenate([p.x for p, _ in parts])
    y = np.concatenate([p.y for p, _ in parts])
    source = np.concatenate([np.full(len(p), s) for p, s in parts])
    truth = np.concatenate(
        [np.zeros(len(inhouse), bool), np.zeros(len(vendor_a), bool), vendor_b.poisoned]
    )
    merged = make_dataset(x, y, source=source, poisoned=truth, attack=vendor_b.attack)
    save_dataset(merged, out / "train.npz")
    save_dataset(inhouse, out / "inhouse.npz")
    print(f"merged training set: {len(merged)} samples, {int(truth.sum())} poisoned (vendor-b)")

    tw("manifest", str(out / "train.npz"), "--out", str(out / "train.manifest.jsonl"))
    tw("manifest", str(out / "inhouse.npz"), "--out", str(out / "inhouse.manifest.jsonl"))

    cfg = TrainConfig(epochs=args.epochs, seed=0, arch=args.arch or "auto")
    models = {}
    for name, ds in (("baseline", load_dataset(str(out / "inhouse.npz"))),
                     ("candidate", load_dataset(str(out / "train.npz")))):  # fmt: skip
        path = out / f"{name}.pt"
        meta_path = out / f"{name}.meta.json"
        if args.reuse and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta["dataset"]["sha256"] != ds.content_sha256():
                raise SystemExit(f"{path} was trained on other data; drop --reuse")
            model = load_model(path)
            accuracy = float(meta["accuracy"])

            def predict(xb: np.ndarray, model: Any = model) -> np.ndarray:
                return np.asarray(model.logits(xb).argmax(1))
        else:
            r = train_model(ds, cfg, test=test)
            save_model(r, path, ds)
            net = r.model.eval()
            accuracy = r.accuracy

            def predict(xb: np.ndarray, net: Any = net) -> np.ndarray:
                with torch.inference_mode():
                    return np.asarray(net(torch.from_numpy(xb)).argmax(1).numpy())

        asr = attack_success_rate(predict, test, vendor_b.attack)
        models[name] = {"accuracy": round(accuracy, 4), "attack_success_rate": round(asr, 4)}
        print(f"{name}: test accuracy {accuracy:.4f}, backdoor success {asr:.4f}")

    for name in ("inhouse", "train"):
        model = "baseline" if name == "inhouse" else "candidate"
        det = [] if args.detectors == "all" else ["--detectors", args.detectors]
        tw("scan-data", str(out / f"{name}.npz"), "--model", str(out / f"{model}.pt"),
           "--trusted", str(out / "trusted.npz"), *det,
           "--out", str(out / f"scan-{name}.json"))  # fmt: skip
    scan = json.loads((out / "scan-train.json").read_text())
    flagged = np.zeros(len(merged), bool)
    flagged[scan["flagged"]] = True
    tp = int((flagged & truth).sum())
    print(
        f"scan-data: {int(flagged.sum())} flagged, recall {tp / truth.sum():.3f}, "
        f"precision {tp / max(1, flagged.sum()):.3f}"
    )

    # A lenient standing gate (critical), as some teams run: the data scan's high
    # findings on the candidate do not block it, which is how the backdoor gets out.
    tw("registry", "init", "--registry", reg, "--fail-on", "critical")
    tw("registry", "add", str(out / "baseline.pt"), "--manifest",
       str(out / "inhouse.manifest.jsonl"), "--registry", reg, "--by", "ml-team")  # fmt: skip
    tw("registry", "attach", "v1", str(out / "scan-inhouse.json"), "--registry", reg)
    gate_v1 = tw("registry", "promote", "v1", "--alias", "prod", "--registry", reg)
    tw("registry", "add", str(out / "candidate.pt"), "--manifest",
       str(out / "train.manifest.jsonl"), "--registry", reg, "--by", "ml-team")  # fmt: skip
    tw("registry", "attach", "v2", str(out / "scan-train.json"), "--registry", reg)
    strict = tw("registry", "promote", "v2", "--alias", "prod", "--fail-on", "high",
                "--registry", reg)  # fmt: skip
    # Under the standing (critical) gate the data scan's high findings do not block: v2
    # goes out. Forensics then shows what it was trained on.
    promoted = tw("registry", "promote", "v2", "--alias", "prod", "--registry", reg)
    tw("forensics", "data", "--report", str(out / "scan-train.json"), "--registry", reg,
       "--out", str(out / "incident.json"), "--html", str(out / "incident.html"))  # fmt: skip
    incident = json.loads((out / "incident.json").read_text())["forensics"]
    tw("registry", "attach", "v2", str(out / "incident.json"), "--registry", reg)
    rolled = tw("registry", "rollback", "--alias", "prod", "--registry", reg)
    tw("registry", "history", "--alias", "prod", "--registry", reg)
    tw("export-stix", str(out / "scan-train.json"), str(out / "incident.json"),
       "--out", str(out / "incident.stix.json"))  # fmt: skip
    summary = {
        "models": models,
        "scan": {"flagged": int(flagged.sum()), "true_positives": tp, "poisoned": int(truth.sum())},
        "gate": {
            "baseline_promote_exit": gate_v1,
            "candidate_promote_at_high_exit": strict,
            "candidate_promote_at_critical_exit": promoted,
        },
        "forensics": {
            "implicated_sources": incident["implicated_sources"],
            "target_class": incident["target_class"],
            "affected_versions": [
                v["version"] for v in incident["versions"] if v["attributed_samples"]
            ],
        },
        "rollback_exit": rolled,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
