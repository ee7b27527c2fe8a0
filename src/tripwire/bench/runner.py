"""The attack x detector matrix: poison, train, extract features, detect, measure.

Each poisoning cell (dataset, attack, rate, seed) trains one model on the attacked data,
computes its penultimate features and cross-validated out-of-sample probabilities, and
runs every registered detector whose needs those satisfy, plus installed baselines. For
backdoor cells it also retrains without each detector's flags and measures the attack
success rate and clean accuracy before and after. Models and finished cells are cached
under ``cache_dir`` by a key of data, attack, seed and recipe, so a suite resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tripwire import __version__
from tripwire.attacks import attack_success_rate, get_kind, poison_dataset
from tripwire.bench.metrics import curve_points, detection_metrics
from tripwire.bench.suites import AttackCell, DataSpec, Suite
from tripwire.detectors import DetectorInput, DetectorResult, Need, available
from tripwire.detectors.poisoning.dynamics import (
    MIN_EPOCHS,
    PLANTED_SHARE,
    Dynamics,
    record_dynamics,
)
from tripwire.errors import InputError
from tripwire.io import Dataset, load_dataset
from tripwire.models.loading import model_from_module
from tripwire.progress import progress_enabled
from tripwire.reports.render import write_text_atomic
from tripwire.scan.data import scan_ensemble, scan_inputs
from tripwire.scan.ensemble import FAMILIES

Log = Callable[[str], None]

#: The row of the combined verdict that scan-data reports (tripwire.scan.ensemble).
ENSEMBLE_ROW = "tripwire:ensemble"
#: Offset of the seed that draws a cell's verified samples (``--trusted``), so that the
#: draw is not that of any other subset of the same seed.
TRUSTED_SEED = 1000


@dataclass
class Trained:
    """A trained model behind plain NumPy functions."""

    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]
    features: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
    accuracy: float
    #: The torch module, for baselines that need the framework model (ART).
    module: Any = None
    #: ``(epochs, N)`` margins of every training item in each epoch of this model's
    #: training run (``training-margin`` reads them); None for models cached before
    #: they were recorded.
    margins: npt.NDArray[np.float32] | None = None


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def stratified_subset(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A class-balanced subset of ``n`` samples (all of ``ds`` when ``n`` is None)."""
    if n is None or n >= len(ds):
        return ds
    rng = np.random.default_rng(seed)
    classes = np.unique(ds.y)
    per = n // len(classes)
    idx = np.concatenate([rng.permutation(np.flatnonzero(ds.y == c))[:per] for c in classes])
    return ds.subset(np.sort(idx))


def load_suite_data(spec: DataSpec, data_dir: str | None) -> tuple[Dataset, Dataset]:
    path = spec.spec.format(data_dir=data_dir or "")
    if "{data_dir}" in spec.spec and not data_dir:
        raise InputError("this suite needs --data-dir (the shared datasets)", spec.name)
    train = load_dataset(path, split="train", show_progress=progress_enabled())
    test = load_dataset(path, split="test", show_progress=progress_enabled())
    return stratified_subset(train, spec.train_subset), stratified_subset(test, spec.test_subset)


def suite_grid(
    suite: Suite, log: Log = print, seeds: Collection[int] | None = None
) -> Iterator[tuple[DataSpec, AttackCell, float, int]]:
    """Every poisoning cell of ``suite`` as ``(spec, attack, rate, seed)``, in run order.

    Seed-major: every dataset's first seed comes before any second seed, so a long suite
    stopped part-way (it resumes) already holds one complete table over all datasets.
    ``seeds``: only the cells of these seeds (a cell keeps its key and its settings, such
    as retraining on a dataset's first seed, whichever seeds are selected).
    """
    registered = set(_attack_kinds())
    missing = {
        a.kind
        for spec in suite.data
        for a in suite.attacks_for(spec)
        if a.kind != "clean" and a.kind not in registered
    }
    for kind in sorted(missing):
        log(f"skipping attack '{kind}': not available in this version")
    rounds = max(len(spec.seeds) for spec in suite.data)
    for r in range(rounds):
        for spec in suite.data:
            if r >= len(spec.seeds):
                continue
            if seeds is not None and spec.seeds[r] not in seeds:
                continue
            for attack in suite.attacks_for(spec):
                if attack.kind in missing:
                    continue
                for rate in attack.rates:
                    yield spec, attack, rate, spec.seeds[r]


def suite_cells(
    suite: Suite, data_dir: str | None, log: Log = print, seeds: Collection[int] | None = None
) -> Iterator[tuple[DataSpec, Dataset, Dataset, AttackCell, float, int]]:
    """:func:`suite_grid` with each cell's data, as ``(spec, train, test, attack, rate,
    seed)``; each dataset is loaded once, when its first cell comes."""
    loaded: dict[str, tuple[Dataset, Dataset]] = {}
    for spec, attack, rate, seed in suite_grid(suite, log, seeds):
        if spec.name not in loaded:
            loaded[spec.name] = load_suite_data(spec, data_dir)
        train, test = loaded[spec.name]
        yield spec, train, test, attack, rate, seed


def cell_file(
    suite: Suite,
    spec: DataSpec,
    attack: AttackCell,
    rate: float,
    seed: int,
    cache_dir: Path,
    trusted: int | None = None,
    dynamics: bool = False,
) -> Path:
    """Where a finished cell's rows are cached: keyed by the cell, how its data and
    model are made, whether it retrains, the detectors that exist, the ensemble's
    families, the version, the number of verified samples that calibrate it and
    whether a recording run with calibrators feeds ``training-margin``. Suites
    that hold the same cell share it (the standard suite's cells are the full suite's
    too); the key does not hold the code itself, so a run after a change of detection
    starts from an empty ``cells`` folder."""
    data = {k: v for k, v in asdict(spec).items() if k not in ("seeds", "attacks")}
    key = _key(
        {
            "data": data,
            "attack": attack.kind,
            "target": attack.target,
            "source": attack.source,
            "rate": rate,
            "seed": seed,
            "params": attack.params,
            "retrain": _retrain_settings(suite, spec, attack, rate, seed),
            "detectors": [c.name for c in available()],
            "ensemble": [ENSEMBLE_ROW, sorted(FAMILIES)],
            "v": __version__,
            # Only where set, so that the cells run without one keep their keys.
            **({"trusted": trusted} if trusted else {}),
            **({"dynamics": PLANTED_SHARE} if dynamics else {}),
        }
    )
    return cache_dir / "cells" / f"{key}.json"


def _retrain_settings(
    suite: Suite, spec: DataSpec, attack: AttackCell, rate: float, seed: int
) -> list[str] | None:
    """The rows (detector names) a cell retrains for, ``["*"]`` for every row, or None
    where it does not retrain. Only backdoor cells (an attack with a trigger) retrain,
    and only where a row flagged something."""
    if (
        not suite.retrain
        or attack.kind == "clean"
        or get_kind(attack.kind).trigger is None
        or seed != spec.seeds[0]
        or (suite.retrain_rates is not None and rate not in suite.retrain_rates)
        or (suite.retrain_data is not None and spec.name not in suite.retrain_data)
    ):
        return None
    return ["*"] if suite.retrain_detectors is None else sorted(suite.retrain_detectors)


def cached_model_path(ds: Dataset, spec: DataSpec, seed: int, cache_dir: Path) -> Path:
    """Where :func:`train_cached` keeps the suite's model of ``ds`` (its metadata beside
    it, ``.meta.json`` for ``.pt``): keyed by the data's content, the recipe, the seed
    and tripwire's version."""
    key = _key(
        {
            "data": ds.content_sha256(),
            "arch": spec.arch,
            "epochs": spec.epochs,
            "seed": seed,
            "v": __version__,
        }
    )
    return cache_dir / "models" / f"{key}.pt"


def dynamics_cached(ds: Dataset, spec: DataSpec, seed: int, cache_dir: Path) -> Dynamics:
    """The recording run ``scan-data --dynamics`` makes on ``ds`` (the suite's recipe,
    :data:`~tripwire.detectors.poisoning.dynamics.PLANTED_SHARE` of the labels planted
    as calibrators; :func:`record_dynamics`), or its margins and calibrators from the
    cache, beside the suite's model of the same data (plain arrays, no pickle)."""
    model_path = cached_model_path(ds, spec, seed, cache_dir)
    path = model_path.with_name(f"{model_path.stem}.dynamics-{PLANTED_SHARE}.npz")
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return Dynamics(margins=z["margins"], calibrators=z["calibrators"])
    dyn = record_dynamics(
        ds, arch=spec.arch, epochs=spec.epochs, seed=seed, show_progress=progress_enabled()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")  # a stopped run leaves no half file
    np.savez(tmp, margins=dyn.margins, calibrators=dyn.calibrators)
    tmp.replace(path)
    return dyn


def train_cached(ds: Dataset, test: Dataset, spec: DataSpec, seed: int, cache_dir: Path) -> Trained:
    """Train (or load from the cache) the suite's recipe on ``ds``."""
    import torch

    from tripwire.models.loading import load_model
    from tripwire.models.train import TrainConfig, save_model, train_model

    path = cached_model_path(ds, spec, seed, cache_dir)
    meta = path.with_suffix(".meta.json")
    # The training run's own dynamics, kept beside the model (a plain array, no pickle).
    margins_path = path.with_suffix(".margins.npy")
    # Both files, or the run was stopped between them (the model is written first).
    if path.exists() and meta.exists():
        model = load_model(path, device="cpu")
        acc = float(json.loads(meta.read_text())["accuracy"])

        def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
            return np.asarray(model.logits(x).argmax(1), dtype=np.int64)

        return Trained(
            predict=predict,
            features=model.features,
            accuracy=acc,
            module=getattr(model, "_module", None),
            margins=(np.load(margins_path, allow_pickle=False) if margins_path.exists() else None),
        )
    result = train_model(
        ds,
        TrainConfig(arch=spec.arch, epochs=spec.epochs, seed=seed),
        test=test,
        show_progress=progress_enabled(),
        record_margins=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if result.margins is not None:
        np.save(margins_path, result.margins)  # before the model: the model marks it done
    save_model(result, path, ds)
    net = result.model.eval()

    def predict_t(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), 512):
                out.append(net(torch.from_numpy(x[s : s + 512])).argmax(1).numpy())
        return np.concatenate(out).astype(np.int64)

    def features_t(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), 512):
                out.append(net.features(torch.from_numpy(x[s : s + 512])).numpy())
        return np.concatenate(out).astype(np.float32)

    return Trained(
        predict=predict_t,
        features=features_t,
        accuracy=result.accuracy,
        module=net,
        margins=result.margins,
    )


def baselines(
    features: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    ds: Dataset | None = None,
    module: Any = None,
    log: Log = print,
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Installed third-party baselines fed the same inputs: name -> (scores, flags, seconds).

    cleanlab's ``find_label_issues`` gets the same out-of-sample probabilities; ART's
    ActivationDefence and SpectralSignatureDefense get the same trained model and data,
    with ART's default settings. ART returns verdicts only, so its scores are its flags.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    if find_spec("cleanlab") is not None:
        from cleanlab.filter import find_label_issues

        t0 = time.perf_counter()
        flags = find_label_issues(labels, probs)
        scores = 1.0 - probs[np.arange(len(labels)), labels]
        out["cleanlab:find_label_issues"] = (
            scores,
            np.asarray(flags, bool),
            time.perf_counter() - t0,
        )
    if ds is not None and module is not None:
        out.update(_art_baselines(ds, module, log))
    return out


def _art_view(module: Any) -> Any:
    """The model as ART sees layers: its last top-level child is the penultimate layer.

    ART's poison defences take the activations of the classifier's *last* top-level
    child, which for a plain model is the logits, and hook it with
    ``register_forward_hook``, which TorchScript modules refuse. This view runs the
    model's ``forward_features`` and passes the features through an identity child
    registered last, so ART analyses the same penultimate activations as tripwire's
    detectors, for cached (TorchScript) and fresh models alike.
    """
    import torch

    class ArtView(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.output = torch.nn.Identity()
            self.penultimate = torch.nn.Identity()
            # Not a child: ART must not list or hook the wrapped model's own layers.
            object.__setattr__(self, "_inner", inner)

        def forward(self, x: Any) -> Any:
            inner: Any = self.__dict__["_inner"]
            logits, feats = inner.forward_features(x)
            self.penultimate(feats)
            return self.output(logits)

    return ArtView(module)


def _art_baselines(
    ds: Dataset, module: Any, log: Log
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    try:
        import torch
        from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return {}
    out: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    x = ds.model_input()
    y = np.eye(ds.n_classes, dtype=np.float32)[ds.y]
    try:
        clf = PyTorchClassifier(
            model=_art_view(module),
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=ds.input_shape,
            nb_classes=ds.n_classes,
            clip_values=(0.0, 1.0),
        )
        defences: list[tuple[str, Any]] = [
            ("art:ActivationDefence", ActivationDefence),
            ("art:SpectralSignatureDefense", SpectralSignatureDefense),
        ]
        for name, defence in defences:
            t0 = time.perf_counter()
            _, is_clean = defence(clf, x, y).detect_poison()
            flags = ~np.asarray(is_clean, dtype=bool)
            out[name] = (flags.astype(np.float64), flags, time.perf_counter() - t0)
    except Exception as exc:  # a third-party baseline must not stop the suite
        log(f"ART baselines skipped: {exc.__class__.__name__}: {str(exc)[:120]}")
    return out


class InfeasibleCellError(InputError):
    """The cell's attack cannot run on this data (for example a clean-label rate above
    the target class's share of the set: 10% of MNIST is more than its 0s). A suite
    skips such a cell, says so and goes on."""


def attacked(
    train: Dataset, attack: AttackCell, rate: float, seed: int
) -> tuple[Dataset, npt.NDArray[np.bool_], dict[str, Any] | None]:
    """The cell's training set, its ground-truth mask and the attack record.

    Raises
    ------
    InfeasibleCellError
        The attack refuses this data at this rate.
    """
    if attack.kind == "clean":
        return train, np.zeros(len(train), bool), None
    try:
        ds = poison_dataset(
            train,
            attack.kind,
            rate=rate,
            target=attack.target,
            source=attack.source,
            seed=seed,
            **attack.params,
        )
    except InputError as exc:
        raise InfeasibleCellError(exc.message, exc.path) from None
    truth = ds.poisoned if ds.poisoned is not None else np.zeros(len(ds), bool)
    return ds, truth, ds.attack


def detector_input(
    ds: Dataset, model: Trained, seed: int, dynamics: Dynamics | None = None
) -> tuple[DetectorInput, float]:
    """What scan-data gives the detectors for a trained model, and the seconds of one
    forward pass over ``ds`` (each detector's cost is reported against it).

    ``training-margin`` reads the margins of ``dynamics`` (a recording run with
    calibrators, what ``scan-data --dynamics`` adds) where given, else those of the
    model's own training run (no calibrators: its robust cut).

    The model's features, the scan's cross-validated two-view probabilities (cleanlab
    gets the same), the shared input-space graph, and the model itself for the
    behavioural detectors. The pass timed is a second, warm one: the first also
    runs TorchScript's profiling, up to 1.6x slower on the suite's models, which made
    the detectors' ratios to it flattering (docs/benchmarks.md, session 30).
    """
    x = ds.model_input()
    feats = model.features(x)
    t0 = time.perf_counter()
    model.features(x)
    forward_s = time.perf_counter() - t0
    net = None if model.module is None else model_from_module(model.module, "suite model")
    inputs, *_ = scan_inputs(
        ds,
        feats,
        seed,
        model=net,
        margins=model.margins if dynamics is None else dynamics.margins,
        calibrators=None if dynamics is None else dynamics.calibrators,
    )
    return inputs, forward_s


def verified_subset(
    labels: npt.NDArray[np.int64], poisoned: npt.NDArray[np.bool_], n: int, seed: int
) -> npt.NDArray[np.bool_]:
    """A mask of ``n`` training samples drawn class-balanced among the unpoisoned ones:
    the part of a delivery a person has checked, as a benchmark stands it in. (A check
    of a random sample would find its poisons; those are not left in it.)"""
    rng = np.random.default_rng(TRUSTED_SEED + seed)
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    mask = np.zeros(len(labels), dtype=bool)
    for c in classes:
        pool = np.flatnonzero((labels == c) & ~poisoned)
        mask[rng.permutation(pool)[:per]] = True
    return mask


def run_poison_cell(
    train: Dataset,
    test: Dataset,
    spec: DataSpec,
    attack: AttackCell,
    rate: float,
    seed: int,
    *,
    cache_dir: Path,
    log: Log,
    retrain_rows: list[str] | None = None,
    trusted: int | None = None,
    dynamics: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one cell; returns its rows (one per detector) and curve data for the report.

    ``retrain_rows``: the rows whose flags are removed before retraining (``["*"]``:
    every row; None: no retraining), as :func:`_retrain_settings` gives them.
    ``trusted``: calibrate every detector on the scores of this many verified training
    samples (:func:`verified_subset`; what ``scan-data --trusted-source`` does with a
    source a user has checked) instead of by robust statistics. ``dynamics``: feed
    ``training-margin`` a recording run with calibrators (:func:`dynamics_cached`,
    what ``scan-data --dynamics`` does) instead of the suite model's own run.
    """
    t_start = time.perf_counter()
    ds, truth, record = attacked(train, attack, rate, seed)
    has_trigger = record is not None and get_kind(attack.kind).trigger is not None
    model = train_cached(ds, test, spec, seed, cache_dir)
    asr_before = (
        attack_success_rate(model.predict, test, record)
        if has_trigger and record is not None
        else None
    )
    dyn = dynamics_cached(ds, spec, seed, cache_dir) if dynamics else None
    inputs, forward_s = detector_input(ds, model, seed, dyn)
    feats, probs, space = inputs.features, inputs.probs, inputs.input_space
    if feats is None or probs is None or space is None:  # detector_input makes all three
        raise RuntimeError("incomplete detector input")
    verified = verified_subset(ds.y, truth, trusted, seed) if trusted else None
    ours, secs_of = run_detectors(inputs, verified)
    results = {name: (r.scores, r.flags, secs_of[name]) for name, r in ours.items()}
    # What a user of scan-data gets: every detector combined by the ensemble's rule.
    ensemble = scan_ensemble(ours, ds, space, seed, feats)
    results[ENSEMBLE_ROW] = (
        ensemble.scores,
        ensemble.flags,
        sum(secs for _, _, secs in results.values()),
    )
    results.update(baselines(feats, ds.y, probs, ds=ds, module=model.module, log=log))
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    base = {
        "dataset": spec.name,
        "attack": attack.kind,
        "rate": rate,
        "seed": seed,
        "n_samples": len(ds),
        "clean_accuracy": round(model.accuracy, 6),
        "asr": None if asr_before is None else round(asr_before, 6),
        "forward_s": round(forward_s, 3),
        "trusted": trusted or 0,
        "dynamics": dynamics,
    }
    for name, (scores, flags, secs) in results.items():
        row = {
            **base,
            "detector": name,
            **detection_metrics(truth, scores, flags),
            "time_s": round(secs, 3),
            "time_vs_forward": round(secs / max(forward_s, 1e-9), 3),
            "asr_after": None,
            "clean_accuracy_after": None,
        }
        if (
            retrain_rows is not None
            and has_trigger
            and record is not None
            and ("*" in retrain_rows or name in retrain_rows)
            and flags.any()
        ):
            kept = ds.subset(np.flatnonzero(~flags))
            again = train_cached(kept, test, spec, seed, cache_dir)
            row["asr_after"] = round(attack_success_rate(again.predict, test, record), 6)
            row["clean_accuracy_after"] = round(again.accuracy, 6)
        rows.append(row)
        curves[name] = curve_points(truth, scores)
    log(
        f"{spec.name} {attack.kind} rate={rate} seed={seed}: "
        f"{len(results)} detectors, {time.perf_counter() - t_start:.0f} s"
    )
    return rows, curves


def run_detectors(
    inputs: DetectorInput, verified: npt.NDArray[np.bool_] | None = None
) -> tuple[dict[str, DetectorResult], dict[str, float]]:
    """Every registered detector whose needs ``inputs`` meet, fitted and run as the
    bench runs a cell (calibrated on the ``verified`` samples' scores where given), and
    each one's seconds."""
    have = frozenset({Need.FEATURES, Need.LABELS, Need.PROBS, Need.DATA})
    if inputs.model is not None:
        have = have | {Need.MODEL}
    if inputs.margins is not None and len(inputs.margins) >= MIN_EPOCHS:
        have = have | {Need.DYNAMICS}  # one epoch's margins are a snapshot, not dynamics
    ours: dict[str, DetectorResult] = {}
    secs: dict[str, float] = {}
    for cls in available(satisfiable_with=have):
        t1 = time.perf_counter()
        det = cls().fit(inputs)
        if verified is not None:
            det.calibrate_fitted(inputs, verified)
        ours[cls.name] = det.detect(inputs)
        secs[cls.name] = time.perf_counter() - t1
    return ours, secs


def run_suite(
    suite: Suite,
    *,
    out_dir: Path,
    cache_dir: Path,
    data_dir: str | None = None,
    resume: bool = False,
    finished_only: bool = False,
    trusted: int | None = None,
    dynamics: bool = False,
    seeds: Collection[int] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run every cell of ``suite``; returns ``{"rows", "curves", "examples", "extraction",
    "unfinished", "skipped"}`` (``skipped``: cells the data cannot hold, with the reason).

    ``finished_only``: run nothing new, only gather the cells already finished in
    ``cache_dir`` (``unfinished`` lists the others): a long suite's table part-way.
    ``seeds``: only these seeds' cells (as :func:`suite_grid`). ``trusted`` and
    ``dynamics``: as :func:`run_poison_cell`; their cells are cached apart.
    """
    if suite.needs_data_dir and not data_dir:
        raise InputError(f"the {suite.name} suite needs --data-dir", "--data-dir")
    cells_dir = cache_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    total = sum(1 for _ in suite_grid(suite, log=lambda _: None, seeds=seeds))
    unfinished: list[str] = []
    skipped: list[dict[str, str]] = []
    run_times: list[float] = []
    for i, (spec, train, test, attack, rate, seed) in enumerate(
        suite_cells(suite, data_dir, log, seeds), start=1
    ):
        cached_cell = cell_file(suite, spec, attack, rate, seed, cache_dir, trusted, dynamics)
        if attack.kind != "clean" and f"{spec.name}/{attack.kind}" not in examples:
            examples[f"{spec.name}/{attack.kind}"] = _examples(train, attack)
        if (resume or finished_only) and cached_cell.exists():
            cached = json.loads(cached_cell.read_text())
            rows.extend(cached["rows"])
            curves.update(cached["curves"])
            continue
        label = f"{spec.name}/{attack.kind}/{rate}/{seed}"
        if finished_only:
            unfinished.append(label)
            continue
        t_cell = time.perf_counter()
        try:
            cell_rows, cell_curves = run_poison_cell(
                train,
                test,
                spec,
                attack,
                rate,
                seed,
                cache_dir=cache_dir,
                log=log,
                retrain_rows=_retrain_settings(suite, spec, attack, rate, seed),
                trusted=trusted,
                dynamics=dynamics,
            )
        except InfeasibleCellError as exc:
            log(f"cell {i}/{total} skipped ({label}): {exc}")
            skipped.append({"cell": label, "reason": str(exc)})
            continue
        tagged = {f"{label}/{k}": v for k, v in cell_curves.items()}
        write_text_atomic(cached_cell, json.dumps({"rows": cell_rows, "curves": tagged}))
        rows.extend(cell_rows)
        curves.update(tagged)
        run_times.append(time.perf_counter() - t_cell)
        # A long suite runs for hours: say where it stands (the mean of the cells run so
        # far, which mixes datasets of different cost, so only a rough guide).
        left = (total - i) * float(np.mean(run_times))
        log(
            f"cell {i}/{total} done ({label}, {run_times[-1]:.0f} s); "
            f"about {left / 3600:.1f} h left at this pace"
        )
    if unfinished:
        log(f"{len(unfinished)} of {total} cells not finished yet (left out)")
    extraction = _extraction_cell(log) if suite.extraction else None
    return {
        "rows": rows,
        "curves": curves,
        "examples": examples,
        "extraction": extraction,
        "unfinished": unfinished,
        "skipped": skipped,
    }


def train_suite_models(
    suite: Suite,
    *,
    cache_dir: Path,
    data_dir: str | None = None,
    seeds: Collection[int] | None = None,
    dynamics: bool = False,
    log: Log = print,
) -> int:
    """Train and cache the model of every cell of ``suite`` (no detection), and with
    ``dynamics`` its recording run (:func:`dynamics_cached`); returns the number of
    cells. Training dominates a long suite and does not depend on the detectors, so it
    can run ahead (or on another machine sharing ``cache_dir``)."""
    if suite.needs_data_dir and not data_dir:
        raise InputError(f"the {suite.name} suite needs --data-dir", "--data-dir")
    n = 0
    for spec, train, test, attack, rate, seed in suite_cells(suite, data_dir, log, seeds):
        t0 = time.perf_counter()
        try:
            ds, _, _ = attacked(train, attack, rate, seed)
        except InfeasibleCellError as exc:
            log(f"{spec.name} {attack.kind} rate={rate} seed={seed}: skipped ({exc})")
            continue
        model = train_cached(ds, test, spec, seed, cache_dir)
        if dynamics:
            dynamics_cached(ds, spec, seed, cache_dir)
        n += 1
        log(
            f"{spec.name} {attack.kind} rate={rate} seed={seed}: model ready "
            f"(accuracy {model.accuracy:.4f}, {time.perf_counter() - t0:.0f} s)"
        )
    return n


def _attack_kinds() -> list[str]:
    from tripwire.attacks import kinds

    return list(kinds())


def _examples(train: Dataset, attack: AttackCell) -> dict[str, Any]:
    """Four poisoned inputs beside their clean originals, for the report."""
    bad = poison_dataset(
        train,
        attack.kind,
        rate=max(0.01, 8 / len(train)),
        target=attack.target,
        source=attack.source,
        seed=0,
        **attack.params,
    )
    if bad.poisoned is None:
        return {}
    idx = np.flatnonzero(bad.poisoned)[:4]
    return {
        "clean": [train.x[i] for i in idx],
        "poisoned": [bad.x[i] for i in idx],
        "labels": [f"{int(train.y[i])}->{int(bad.y[i])}" for i in idx],
    }


def _extraction_cell(log: Log) -> dict[str, Any] | None:
    """One extraction cell (knockoff against a digits model), where the module exists."""
    try:
        from tripwire.bench.extraction_cell import run_extraction_cell
    except ImportError:
        log("extraction cell skipped: extraction attacks are not available in this version")
        return None
    return run_extraction_cell(log)
