"""Remove a backdoor from a trained model with its reversed trigger(s) and clean data.

Two methods, combined by default:

- **Fine-pruning** (Liu et al., "Fine-Pruning: Defending Against Backdooring Attacks on
  Deep Neural Networks", RAID 2018), steered by the trigger: the penultimate neurons that
  the reversed trigger drives most (mean activation on triggered minus clean inputs) are
  disconnected from the classifier head, step by step, until the trigger stops working on
  the fitting data or clean accuracy falls too far.
- **Unlearning** (Wang et al., "Neural Cleanse", IEEE S&P 2019): fine-tune on the clean
  data where a share of each batch carries a reversed trigger but keeps its TRUE label,
  so the model learns that the trigger means nothing. Pruned neurons stay pruned.
  Each input is also distilled towards the original model's softened prediction on its
  clean version (self-distillation; knowledge distillation after Hinton et al., 2015):
  a few hundred hard labels cannot hold what the model learnt from its training set,
  the original's soft labels on the same images do.

Only the reversed triggers of the searches that flagged a class are unlearnt: every
class has a trigger of every search, and one that did not fire is what a clean model of
that class has too (:func:`triggers_to_remove`).

Everything is measured on a held-out part of the clean data that neither method sees:
clean accuracy and the reversed trigger's attack success rate, before and after.

The module works on any contract-following TorchScript model (``forward``, ``features``,
``forward_features``); the classifier head is found as the last ``(C, F)`` weight matrix
that maps the ``F`` features to the ``C`` logits.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from tripwire.detectors.backdoor.trigger import ReversedTrigger, load_triggers
from tripwire.errors import InputError
from tripwire.reports.jsonutil import to_json_object

Method = Literal["both", "unlearn", "prune"]
#: A reversed patch smaller than this (mask L1, in pixels) is worth a warning: real
#: triggers are seldom one pixel, and the playbook's one-pixel reversed patch was part
#: of a 3x3 one that unlearning the pixel missed (see ``RepairConfig.refresh``).
TINY_PATCH = 2.0
FloatArray = npt.NDArray[np.float32]
#: A trigger as a function of model-space inputs (the real one, when the data records it).
TriggerFn = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True)
class RepairConfig:
    """Hyperparameters of a repair (all have defaults).

    Attributes
    ----------
    method
        ``both`` (prune, then unlearn), ``unlearn`` or ``prune`` (prune, then plain
        fine-tuning on clean data).
    epochs, lr, batch_size
        Fine-tuning: SGD with momentum, cosine-decayed learning rate. BatchNorm statistics
        stay frozen (a few hundred clean inputs estimate them worse than the training set did).
        0.001: at 0.01 the full-recipe CIFAR-10 model lost 3.9 points of test accuracy
        with 300 clean images and 2.5 with 500 (overfitting the few images does not
        lower accuracy on them, so the guard below cannot see it), at 0.001 none and 0.2;
        every other model measured met the repair bar at both rates (docs/benchmarks.md,
        session 28).
    trigger_share
        Share of each fine-tuning batch stamped with a reversed trigger (true labels kept).
        0.5: a reversed trigger only approximates the real one, and at 0.2 the real
        trigger kept 15% success after repair with scan-model's triggers on MNIST
        BadNets, against 4% at 0.5; on GTSRB (BadNets, blend) and CIFAR-10 (blend) both
        shares meet the bar (docs/benchmarks.md, sessions 3 and 25).
    prune_step, max_prune
        Share of penultimate neurons pruned per step, and the most that may be pruned.
    prune_accuracy_drop
        Pruning stops before clean accuracy on the fitting data drops by more than this.
    tune_accuracy_drop, lr_backoffs
        Fine-tuning that loses more than ``tune_accuracy_drop`` of clean accuracy on the
        fitting data it trains on (checked after each epoch) has diverged: the weights
        are restored and it starts again at a tenth of the learning rate, at most
        ``lr_backoffs`` times. A learning rate that suits one model wrecks another (the
        standard suite's CIFAR-10 ``cnn-compact``: plain fine-tuning at 0.01 fell from
        70% to chance, at 0.001 it kept 69.9%; docs/benchmarks.md, session 25).
    distill, temperature
        Weight of self-distillation in the fine-tuning loss, and its temperature: each
        input (stamped or not) is also pulled towards the ORIGINAL model's softened
        prediction on its clean version, ``(1 - distill) * CE(true label) + distill *
        T^2 * KL(teacher || student)``. The teacher's soft labels carry what the model
        learnt from its whole training set, which a few hundred hard labels cannot
        (the full-recipe CIFAR-10 BadNets model, 700 clean images: 0.87 points of test
        accuracy lost without it, 0.05 with 0.9; docs/benchmarks.md, session 27);
        0 turns it off (plain unlearning).
    refresh
        Rounds of adversarial unlearning after the first, in the manner of I-BAU (Zeng
        et al., ICLR 2022): each searches the fine-tuned model again for the flagged
        classes' triggers (the scan's searches, on the fitting data) and unlearns what
        it finds with the rest. For a PARTIAL reversed trigger: on the playbook's MNIST
        model the reversed patch was one pixel beside the real 3x3 patch, and unlearning
        it left the real trigger at 95% success (88% at learning rate 0.01); one round
        took it to 1.0% (0.3%), clean accuracy kept. The fresh trigger did not stand
        out by the scan's rule there (index 0.67; -0.15 at 0.01: a trigger that sends
        88% of inputs is not one that sends 99%, what the search asks for), so a round
        unlearns it whether or not it does. Off by default (0) because where the first
        unlearning already worked, a round unlearns what any model of the class answers
        to: the full-recipe CIFAR-10 model lost 2.1 points of test accuracy with one
        round, 0.04 without (docs/benchmarks.md, session 28). The rounds stop early once
        no search reaches the class.
    asr_goal
        Pruning stops once the reversed trigger's success on the fitting data is below this.
    holdout
        Share of the clean data held out for the before/after measurements.
    seed
        Seeds the split, the batches and which inputs get the trigger.
    """

    method: Method = "both"
    epochs: int = 10
    lr: float = 0.001
    batch_size: int = 64
    trigger_share: float = 0.5
    prune_step: float = 0.05
    max_prune: float = 0.8
    prune_accuracy_drop: float = 0.03
    tune_accuracy_drop: float = 0.1
    lr_backoffs: int = 2
    distill: float = 0.9
    temperature: float = 2.0
    refresh: int = 0
    asr_goal: float = 0.05
    holdout: float = 0.3
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.method in ("both", "unlearn", "prune"), "method must be both, unlearn or prune"),
            (self.epochs >= 0, "epochs must be at least 0"),
            (self.lr > 0.0, "lr must be positive"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0.0 < self.trigger_share < 1.0, "trigger_share must lie in (0, 1)"),
            (0.0 < self.prune_step <= 1.0, "prune_step must lie in (0, 1]"),
            (0.0 <= self.max_prune < 1.0, "max_prune must lie in [0, 1)"),
            (0.0 < self.holdout < 1.0, "holdout must lie in (0, 1)"),
            (0.0 < self.tune_accuracy_drop <= 1.0, "tune_accuracy_drop must lie in (0, 1]"),
            (self.lr_backoffs >= 0, "lr_backoffs must be at least 0"),
            (0.0 <= self.distill < 1.0, "distill must lie in [0, 1)"),
            (self.temperature > 0.0, "temperature must be positive"),
            (self.refresh >= 0, "refresh must be at least 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg, "repair")


@dataclass
class TriggerEffect:
    """One trigger's attack success rate on held-out clean inputs, before and after."""

    target: int
    method: str
    before: float
    after: float


@dataclass
class RefreshedTrigger:
    """A trigger that a refresh round found on the fine-tuned model and unlearnt.

    ``trigger_norm`` and ``anomaly_index`` are on the scan's scale (mask L1 or opacity;
    index against the scan's other classes); ``found`` is its attack success on the
    fitting data when found, ``after`` on the held-out data after the repair.
    """

    round: int
    target: int
    method: str
    trigger_norm: float
    anomaly_index: float
    found: float
    after: float = float("nan")


@dataclass
class RepairResult:
    """What :func:`repair_model` did and measured (held-out clean data throughout)."""

    method: str
    accuracy_before: float
    accuracy_after: float
    triggers: list[TriggerEffect]
    real_asr_before: float | None
    real_asr_after: float | None
    pruned_neurons: list[int]
    n_features: int
    n_fit: int
    n_holdout: int
    epochs: int
    time_s: float
    notes: list[str] = field(default_factory=list)
    refreshed: list[RefreshedTrigger] = field(default_factory=list)

    @property
    def accuracy_drop(self) -> float:
        return self.accuracy_before - self.accuracy_after

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracy_drop"] = self.accuracy_drop
        for k, v in list(d.items()):
            if isinstance(v, float):
                d[k] = round(v, 6)
        d["triggers"] = [
            {**t, "before": round(t["before"], 6), "after": round(t["after"], 6)}
            for t in d["triggers"]
        ]
        d["refreshed"] = [
            {k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()}
            for r in d["refreshed"]
        ]
        # Strict JSON: a measure that could not be taken (NaN) is null.
        return to_json_object(d, "repair result")


# -- reading the scan report ----------------------------------------------------------------
@dataclass
class ScanSummary:
    """The parts of a ``scan-model`` report that repair needs."""

    verdict: str
    target_classes: list[int]
    triggers: list[ReversedTrigger]
    #: Per class, the trigger searches whose evidence flagged it (``classes[].fired``;
    #: empty where the report predates that field).
    fired: dict[int, list[str]] = field(default_factory=dict)
    #: Per search (``patch``, ``blend``), every class's trigger size in class order
    #: (``classes[].<search>.trigger_norm``); a search is absent where a class lacks it.
    norms: dict[str, list[float]] = field(default_factory=dict)


def read_scan_report(path: str | Path) -> ScanSummary:
    """Read ``REPORT.json`` and the triggers file it names (``allow_pickle=False``).

    Raises
    ------
    InputError
        Missing or unreadable files, or a report without ``verdict``,
        ``target_classes`` or ``triggers_file``.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("no such file", p) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"is not a readable JSON report ({exc})", p) from None
    if not isinstance(doc, dict):
        raise InputError("is not a scan-model report (not a JSON object)", p)
    missing = [k for k in ("verdict", "target_classes", "triggers_file") if k not in doc]
    if missing:
        raise InputError(
            f"is not a scan-model report (lacks {', '.join(missing)}); "
            "run tripwire scan-model first",
            p,
        )
    verdict = str(doc["verdict"])
    if verdict not in ("backdoored", "clean"):
        raise InputError(f"has an unknown verdict '{verdict}'", p)
    targets = doc["target_classes"]
    if not isinstance(targets, list) or not all(isinstance(t, int) for t in targets):
        raise InputError("target_classes must be a list of class numbers", p)
    trig_path = p.parent / str(doc["triggers_file"])
    triggers = load_triggers(str(trig_path))
    fired: dict[int, list[str]] = {}
    classes = doc.get("classes")
    entries = [
        e
        for e in (classes if isinstance(classes, list) else [])
        if isinstance(e, dict) and isinstance(e.get("class"), int)
    ]
    for entry in entries:
        methods = entry.get("fired")
        if isinstance(methods, list) and all(isinstance(m, str) for m in methods):
            fired[int(entry["class"])] = list(methods)
    norms: dict[str, list[float]] = {}
    entries.sort(key=lambda e: int(e["class"]))
    if [int(e["class"]) for e in entries] == list(range(len(entries))):
        for m in ("patch", "blend"):
            vals = [
                (e.get(m) or {}).get("trigger_norm") if isinstance(e.get(m), dict) else None
                for e in entries
            ]
            if vals and all(isinstance(v, (int, float)) and v > 0 for v in vals):
                norms[m] = [float(v) for v in vals if v is not None]
    return ScanSummary(
        verdict=verdict,
        target_classes=list(targets),
        triggers=triggers,
        fired=fired,
        norms=norms,
    )


def search_method(trigger: ReversedTrigger) -> str:
    """The scan-model search a reversed trigger came from (``patch``, ``blend``): its
    ``method`` without the ``-batched`` suffix; Neural Cleanse's is a patch search."""
    if trigger.method == "neural-cleanse":
        return "patch"
    return trigger.method.removesuffix("-batched")


def triggers_to_remove(summary: ScanSummary, *, force: bool = False) -> list[ReversedTrigger]:
    """The reversed triggers of the flagged target classes (every trigger with ``force``
    on a report that flagged none).

    Of a flagged class, only the triggers of the searches whose evidence fired are
    taken (all of its triggers where the report does not say which fired, or names
    searches none of them came from). Every
    class has a trigger of every search, and a search that did not fire found what
    any clean model of that class has: a full-image blend towards class 6 of the
    full-recipe CIFAR-10 model, unlearnt beside the patch that fired, cost 2-3 points
    of clean accuracy (docs/benchmarks.md, session 27).

    Raises
    ------
    InputError
        A clean verdict without ``force``, or no trigger for a flagged class.
    """
    if summary.verdict == "clean" and not force:
        raise InputError(
            "the scan found no backdoor (verdict clean); nothing to repair (use --force to "
            "unlearn every reversed trigger anyway)",
            "--report",
        )
    if summary.target_classes:
        chosen = []
        for c in sorted(set(summary.target_classes)):
            own = [t for t in summary.triggers if t.target == c]
            fired = [t for t in own if search_method(t) in summary.fired.get(c, [])]
            chosen.extend(fired or own)
        if not chosen:
            raise InputError(
                f"holds no reversed trigger for the flagged classes {summary.target_classes}",
                "--report",
            )
        return chosen
    if not summary.triggers:
        raise InputError("holds no reversed trigger", "--report")
    return list(summary.triggers)


def trigger_from_attack(
    attack: dict[str, Any], input_shape: tuple[int, ...], *, seed: int = 0
) -> ReversedTrigger:
    """The (mask, pattern) form of a recorded attack's trigger, where it has one.

    Per-pixel affine triggers (patches, blends) are ``T(x) = x (1 - m) + p m``; then
    ``m = 1 - (T(1) - T(0))`` and ``p = T(0) / m``. Used to measure repair against the
    real trigger, and as the "reversed" trigger when no scan has run.

    Raises
    ------
    InputError
        The trigger is not of that form (warps, per-sample randomness).
    """
    from tripwire.attacks import apply_trigger

    if len(input_shape) != 3:
        raise InputError("trigger masks need image inputs (C, H, W)", "attack")
    zeros = np.zeros((1, *input_shape), dtype=np.float32)
    t0 = apply_trigger(zeros, attack, seed=seed)[0]
    t1 = apply_trigger(zeros + 1.0, attack, seed=seed)[0]
    mask = np.clip(1.0 - (t1 - t0), 0.0, 1.0).mean(axis=0)
    pattern = np.where(mask[None] > 1e-6, t0 / np.maximum(mask[None], 1e-6), 0.0)
    trig = ReversedTrigger(
        target=int(attack.get("target") or 0),
        mask=mask.astype(np.float32),
        pattern=np.clip(pattern, 0.0, 1.0).astype(np.float32),
        method=f"known:{attack.get('kind')}",
        attack_success=float("nan"),
    )
    probe = np.random.default_rng(seed).random((4, *input_shape)).astype(np.float32)
    if not np.allclose(trig.apply(probe), apply_trigger(probe, attack, seed=seed), atol=2e-3):
        raise InputError(
            f"the '{attack.get('kind')}' trigger is not a mask and pattern "
            "(a warp or a per-sample trigger)",
            "attack",
        )
    return trig


# -- torch helpers --------------------------------------------------------------------------
def _batches(n: int, size: int) -> range:
    return range(0, n, size)


def logits(module: Any, x: FloatArray, device: str, batch_size: int = 512) -> FloatArray:
    """Logits ``(N, C)`` of model-space inputs."""
    module.eval()
    out = []
    with torch.inference_mode():
        for s in _batches(len(x), batch_size):
            out.append(module(torch.from_numpy(x[s : s + batch_size]).to(device)).float().cpu())
    return torch.cat(out).numpy()


def predict(
    module: Any, x: FloatArray, device: str, batch_size: int = 512
) -> npt.NDArray[np.int64]:
    """Top-1 class of model-space inputs."""
    if len(x) == 0:
        return np.empty(0, np.int64)
    return np.asarray(logits(module, x, device, batch_size).argmax(axis=1), dtype=np.int64)


def features(module: Any, x: FloatArray, device: str, batch_size: int = 512) -> FloatArray:
    """Penultimate activations ``(N, F)``."""
    module.eval()
    out = []
    with torch.inference_mode():
        for s in _batches(len(x), batch_size):
            f = module.features(torch.from_numpy(x[s : s + batch_size]).to(device))
            out.append(f.reshape(f.shape[0], -1).float().cpu())
    return torch.cat(out).numpy()


def trigger_success(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    trigger: TriggerFn,
    target: int,
    device: str,
) -> float:
    """Share of inputs not of ``target`` that ``trigger`` sends to ``target``."""
    keep = y != target
    if not keep.any():
        return float("nan")
    return float((predict(module, trigger(x[keep]), device) == target).mean())


def find_head(module: Any, n_features: int, n_classes: int) -> torch.Tensor:
    """The classifier's last ``(n_classes, n_features)`` weight matrix.

    Raises
    ------
    InputError
        No such matrix (the features do not feed a linear head directly).
    """
    found = [
        p
        for name, p in module.named_parameters()
        if name.endswith("weight") and p.ndim == 2 and tuple(p.shape) == (n_classes, n_features)
    ]
    if not found:
        raise InputError(
            f"has no linear head mapping its {n_features} features to {n_classes} logits; "
            "fine-pruning needs one (use --method unlearn)",
            "model",
        )
    head: torch.Tensor = found[-1]
    return head


def classifier_head(module: Any, x: FloatArray, device: str) -> torch.Tensor:
    """:func:`find_head` with the feature and class counts read from two of ``x``'s
    inputs."""
    n_feat = int(features(module, x[:2], device).shape[1])
    n_cls = int(logits(module, x[:2], device).shape[1])
    return find_head(module, n_feat, n_cls)


def _freeze_batchnorm(module: Any) -> None:
    for m in module.modules():
        name = getattr(m, "original_name", type(m).__name__)
        if name.startswith("BatchNorm"):
            m.eval()


def _stamp(
    xb: torch.Tensor,
    triggers: list[tuple[torch.Tensor, torch.Tensor]],
    share: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """Stamp a random one of ``triggers`` on a ``share`` of the batch (labels untouched)."""
    n = xb.shape[0]
    pick = torch.rand(n, generator=gen) < share
    if not bool(pick.any()):
        return xb
    which = torch.randint(0, len(triggers), (n,), generator=gen)
    out = xb.clone()
    for k, (mask, pattern) in enumerate(triggers):
        sel = (pick & (which == k)).to(xb.device)
        if bool(sel.any()):
            out[sel] = xb[sel] * (1.0 - mask) + pattern * mask
    return out


def fine_tune(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    triggers: list[ReversedTrigger],
    cfg: RepairConfig,
    device: str,
    *,
    head: torch.Tensor | None = None,
    pruned: npt.NDArray[np.int64] | None = None,
    teacher: FloatArray | None = None,
) -> float | None:
    """Fine-tune in place on clean data; with ``triggers``, a share of each batch carries
    one of them and keeps its true label (unlearning). Pruned head columns stay zero.
    With ``teacher`` (logits of the original model on ``x``, one row per input) and
    ``cfg.distill > 0``, every input is also distilled towards its row.

    Returns the learning rate it finished with: ``cfg.lr``, or a tenth of it for each
    time the run diverged (see :class:`RepairConfig`'s ``tune_accuracy_drop``); None
    when it diverged at every rate and the model was left as it came.
    """
    if cfg.epochs == 0:
        return cfg.lr
    start = {k: v.detach().clone() for k, v in module.state_dict().items()}
    base = float((predict(module, x, device) == y).mean())

    tt = [
        (torch.from_numpy(t.mask)[None].to(device), torch.from_numpy(t.pattern).to(device))
        for t in triggers
    ]
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    soft = None
    if teacher is not None and cfg.distill > 0.0:
        if teacher.shape[0] != len(x):
            raise InputError(f"teacher has {teacher.shape[0]} rows for {len(x)} inputs", "repair")
        soft = torch.softmax(torch.from_numpy(teacher).float() / cfg.temperature, dim=1)
    cols = None if pruned is None or len(pruned) == 0 else torch.from_numpy(pruned).to(device)

    def run(lr: float) -> bool:
        """One fine-tuning run at ``lr``; False as soon as an epoch leaves the accuracy
        on ``x`` more than ``cfg.tune_accuracy_drop`` below ``base``."""
        gen = torch.Generator().manual_seed(cfg.seed)
        params = [p for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
        for _ in range(cfg.epochs):
            module.train()
            _freeze_batchnorm(module)
            perm = torch.randperm(len(x), generator=gen)
            for s in _batches(len(x), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                xb = xt[idx].to(device)
                if tt:
                    xb = _stamp(xb, tt, cfg.trigger_share, gen)
                out = module(xb)
                loss = loss_fn(out, yt[idx].to(device))
                if soft is not None:
                    logp = torch.log_softmax(out / cfg.temperature, dim=1)
                    kl = torch.nn.functional.kl_div(
                        logp, soft[idx].to(device), reduction="batchmean"
                    )
                    loss = (1.0 - cfg.distill) * loss + cfg.distill * cfg.temperature**2 * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if cols is not None and head is not None:
                    with torch.no_grad():
                        head[:, cols] = 0.0
            module.eval()
            if float((predict(module, x, device) == y).mean()) < base - cfg.tune_accuracy_drop:
                return False
        return True

    lr = cfg.lr
    gpu = torch.device(device)
    for attempt in range(cfg.lr_backoffs + 1):
        # Dropout draws from torch's global generator: seeded here, inside a fork of it
        # so that the caller's stream is left as it was.
        with torch.random.fork_rng(devices=[gpu.index or 0] if gpu.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            ok = run(lr)
        if ok:
            return lr
        module.load_state_dict(start)
        if attempt < cfg.lr_backoffs:
            lr /= 10.0
    # Every rate diverged: the model is left as it came, not wrecked.
    return None


def neuron_drive(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    triggers: list[ReversedTrigger],
    device: str,
) -> FloatArray:
    """Per penultimate neuron: how much the triggers raise its mean activation over clean
    inputs (the largest rise over the triggers), in units of its clean spread."""
    clean = features(module, x, device)
    spread = clean.std(axis=0) + 1e-6
    drive = np.full(clean.shape[1], -np.inf, dtype=np.float64)
    for t in triggers:
        keep = y != t.target
        trig = features(module, t.apply(x[keep]), device)
        drive = np.maximum(drive, (trig.mean(axis=0) - clean[keep].mean(axis=0)) / spread)
    return drive.astype(np.float32)


def prune_by_drive(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    triggers: list[ReversedTrigger],
    head: torch.Tensor,
    cfg: RepairConfig,
    device: str,
) -> npt.NDArray[np.int64]:
    """Disconnect the most trigger-driven neurons from the head, step by step (in place).

    Stops when every trigger's success on ``x`` falls below ``asr_goal``, or before the
    accuracy on ``x`` drops by more than ``prune_accuracy_drop``. Returns the pruned
    neuron indices.
    """
    drive = neuron_drive(module, x, y, triggers, device)
    order = np.argsort(-drive, kind="stable")
    order = order[drive[order] > 0]  # only neurons the trigger raises
    n_feat = len(drive)
    step = max(1, round(cfg.prune_step * n_feat))
    limit = min(len(order), int(cfg.max_prune * n_feat))
    base_acc = float((predict(module, x, device) == y).mean())
    original = head.detach().clone()
    pruned = np.empty(0, dtype=np.int64)
    for k in range(step, limit + step, step):
        cand = order[: min(k, limit)].astype(np.int64)
        with torch.no_grad():
            head.copy_(original)
            head[:, torch.from_numpy(cand).to(head.device)] = 0.0
        acc = float((predict(module, x, device) == y).mean())
        if base_acc - acc > cfg.prune_accuracy_drop:
            break
        pruned = cand
        asr = max(trigger_success(module, x, y, t.apply, t.target, device) for t in triggers)
        if asr < cfg.asr_goal or k >= limit:
            break
    with torch.no_grad():
        head.copy_(original)
        if len(pruned):
            head[:, torch.from_numpy(pruned).to(head.device)] = 0.0
    return pruned


def refresh_triggers(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    pool: list[ReversedTrigger],
    device: str,
    *,
    round_no: int,
    scan_norms: dict[str, list[float]] | None = None,
    seed: int = 0,
) -> list[tuple[RefreshedTrigger, ReversedTrigger]]:
    """Search the (fine-tuned) model again for the classes and searches of ``pool``.

    Returns, for each (class, search) whose search still reaches its attack-success
    threshold, its :class:`RefreshedTrigger` record and the trigger itself. Whether
    the fresh trigger still stands out is recorded, not required: a class reachable
    with a larger trigger may still answer to the attacker's (see
    :class:`RepairConfig`'s ``refresh``). The anomaly index is the scan's (log sizes,
    robust scale floored at ``MIN_LOG_SCALE``) with the class's size replaced by the
    fresh one; NaN without ``scan_norms``.
    """
    from tripwire.detectors.backdoor.reverse import mad_anomaly, search_module
    from tripwire.scan.model import METHODS, MIN_LOG_SCALE

    wanted: dict[str, set[int]] = {}
    for t in pool:
        m = search_method(t)
        if m in METHODS:
            wanted.setdefault(m, set()).add(t.target)
    out: list[tuple[RefreshedTrigger, ReversedTrigger]] = []
    params = list(module.parameters())
    grads = [p.requires_grad for p in params]
    module.eval()
    try:
        for p in params:
            p.requires_grad_(False)
        for m, targets in sorted(wanted.items()):
            tl = sorted(targets)
            res = search_module(
                module, x, y, tl, config=METHODS[m], device=device, random_state=seed + round_no
            )
            for i, c in enumerate(tl):
                if not bool(res.converged[i]):
                    continue  # no trigger reaches the class any more at the search's budget
                index = float("nan")
                sizes = np.asarray((scan_norms or {}).get(m, []), dtype=np.float64)
                if 0 <= c < len(sizes):
                    sizes[c] = max(float(res.norms[i]), 1e-12)
                    index = float(mad_anomaly(np.log(sizes), min_scale=MIN_LOG_SCALE)[0][c])
                found = res.triggers[i]
                trig = ReversedTrigger(
                    target=c,
                    mask=found.mask,
                    pattern=found.pattern,
                    method=f"{m}-refresh{round_no}",
                    attack_success=found.attack_success,
                )
                rec = RefreshedTrigger(
                    round=round_no,
                    target=c,
                    method=m,
                    trigger_norm=float(res.norms[i]),
                    anomaly_index=index,
                    found=float(found.attack_success),
                )
                out.append((rec, trig))
    finally:
        for p, g in zip(params, grads, strict=True):
            p.requires_grad_(g)
    return out


def _refresh_rounds(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    triggers: list[ReversedTrigger],
    pool: list[ReversedTrigger],
    cfg: RepairConfig,
    device: str,
    rounds: int,
    lr: float | None,
    notes: list[str],
    *,
    head: torch.Tensor | None,
    pruned: npt.NDArray[np.int64],
    teacher: FloatArray | None,
    scan_norms: dict[str, list[float]] | None,
) -> tuple[list[tuple[RefreshedTrigger, ReversedTrigger]], float | None]:
    """``rounds`` of search-then-unlearn after the first fine-tuning (see
    :class:`RepairConfig`'s ``refresh``); ``pool`` grows by each round's triggers and
    ``notes`` by a line per round. Returns the refreshed triggers and the learning rate
    the last fine-tuning ran at."""
    fresh: list[tuple[RefreshedTrigger, ReversedTrigger]] = []
    for r in range(1, rounds + 1):
        found = refresh_triggers(
            module, x, y, triggers, device, round_no=r, scan_norms=scan_norms, seed=cfg.seed
        )
        if not found:
            notes.append(f"refresh round {r}: no search reaches the flagged classes any more")
            break
        fresh.extend(found)
        pool.extend(t for _, t in found)
        notes.append(
            f"refresh round {r}: unlearnt "
            + ", ".join(
                f"class {rec.target} {rec.method} (size {rec.trigger_norm:.3g}"
                + ("" if np.isnan(rec.anomaly_index) else f", index {rec.anomaly_index:.2f}")
                + ")"
                for rec, _ in found
            )
        )
        lr_r = fine_tune(
            module,
            x,
            y,
            pool,
            replace(cfg, lr=cfg.lr if lr is None else lr),
            device,
            head=head,
            pruned=pruned,
            teacher=teacher,
        )
        if lr_r is None:
            notes.append(f"refresh round {r}: fine-tuning diverged; stopped refreshing")
            break
        lr = lr_r
    return fresh, lr


def stratified_split(
    y: npt.NDArray[np.int64], share: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(fit, holdout) positions, stratified by label."""
    rng = np.random.default_rng(seed)
    hold = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        hold[idx[: round(len(idx) * share)]] = True
    return np.flatnonzero(~hold), np.flatnonzero(hold)


def repair_model(
    module: Any,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    triggers: list[ReversedTrigger],
    config: RepairConfig | None = None,
    *,
    device: str = "cpu",
    real_trigger: TriggerFn | None = None,
    real_target: int | None = None,
    scan_norms: dict[str, list[float]] | None = None,
) -> RepairResult:
    """Repair ``module`` (a TorchScript contract model) in place; measure before and after.

    Parameters
    ----------
    module
        The model; modified in place (load a fresh copy to keep the original).
    x, y
        Clean model-space inputs and their true labels.
    triggers
        Reversed triggers to remove (see :func:`triggers_to_remove`).
    real_trigger, real_target
        The real trigger where it is known (an attack record): measured too, never used.
    scan_norms
        The scan's per-class trigger sizes by search (:attr:`ScanSummary.norms`), to
        give each refreshed trigger its anomaly index on the scan's scale.

    Raises
    ------
    InputError
        Bad configuration, too little clean data, or a model without the features needed.
    """
    cfg = config or RepairConfig()
    cfg.validate()
    if not triggers:
        raise InputError("no reversed trigger to remove", "repair")
    if len(x) < 20:
        raise InputError(f"repair needs at least 20 clean inputs, got {len(x)}", "--data")
    t0 = time.perf_counter()
    module.to(device)
    fit_idx, hold_idx = stratified_split(y, cfg.holdout, cfg.seed)
    xf, yf, xh, yh = x[fit_idx], y[fit_idx], x[hold_idx], y[hold_idx]

    def measure() -> tuple[float, list[float], float | None]:
        acc = float((predict(module, xh, device) == yh).mean())
        asr = [trigger_success(module, xh, yh, t.apply, t.target, device) for t in triggers]
        real = (
            trigger_success(module, xh, yh, real_trigger, real_target, device)
            if real_trigger is not None and real_target is not None
            else None
        )
        return acc, asr, real

    acc0, asr0, real0 = measure()
    # The original model's view of the fitting data, before any pruning changes it.
    teacher = logits(module, xf, device) if cfg.distill > 0.0 else None
    notes: list[str] = []
    pruned = np.empty(0, dtype=np.int64)
    head: torch.Tensor | None = None
    n_feat = 0
    if cfg.method in ("both", "prune"):
        if not hasattr(module, "features"):
            raise InputError(
                "exports no features(x) method; fine-pruning needs it (use --method unlearn)",
                "model",
            )
        head = classifier_head(module, xf, device)
        n_feat = int(head.shape[1])
        pruned = prune_by_drive(module, xf, yf, triggers, head, cfg, device)
        notes.append(f"pruned {len(pruned)} of {n_feat} penultimate neurons")
    unlearn = cfg.method in ("both", "unlearn")
    pool = list(triggers) if unlearn else []
    lr = fine_tune(module, xf, yf, pool, cfg, device, head=head, pruned=pruned, teacher=teacher)
    rounds = cfg.refresh if unlearn and lr is not None else 0
    if unlearn and not cfg.refresh:
        tiny = sorted(
            {t.target for t in triggers if search_method(t) == "patch" and t.norm < TINY_PATCH}
        )
        if tiny:
            notes.append(
                f"the reversed patch of class(es) {tiny} covers under {TINY_PATCH:g} pixels: "
                "it may be part of a larger real trigger that unlearning it misses; check "
                "the repaired model with the real trigger where you have it, or repair "
                "with refresh rounds (--refresh 1)"
            )
    fresh, lr = _refresh_rounds(
        module,
        xf,
        yf,
        triggers,
        pool,
        cfg,
        device,
        rounds,
        lr,
        notes,
        head=head,
        pruned=pruned,
        teacher=teacher,
        scan_norms=scan_norms,
    )
    if lr is None:
        notes.append(
            f"fine-tuning diverged at every learning rate from {cfg.lr:g} down to "
            f"{cfg.lr / 10**cfg.lr_backoffs:g}; the model was left as it was before fine-tuning"
        )
    elif lr != cfg.lr:
        notes.append(
            f"fine-tuning diverged at learning rate {cfg.lr:g} (clean accuracy on the "
            f"fitting data fell by more than {cfg.tune_accuracy_drop:g}); ran at {lr:g}"
        )
    acc1, asr1, real1 = measure()
    for rec, trig in fresh:
        rec.after = trigger_success(module, xh, yh, trig.apply, trig.target, device)
    return RepairResult(
        method=cfg.method,
        accuracy_before=acc0,
        accuracy_after=acc1,
        triggers=[
            TriggerEffect(target=t.target, method=t.method, before=b, after=a)
            for t, b, a in zip(triggers, asr0, asr1, strict=True)
        ],
        real_asr_before=real0,
        real_asr_after=real1,
        pruned_neurons=[int(i) for i in pruned],
        n_features=n_feat,
        n_fit=len(fit_idx),
        n_holdout=len(hold_idx),
        epochs=cfg.epochs,
        time_s=time.perf_counter() - t0,
        notes=notes,
        refreshed=[rec for rec, _ in fresh],
    )


def save_repaired(module: Any, out: str | Path) -> None:
    """Write the repaired model as TorchScript (forward, features, forward_features kept).

    Raises
    ------
    InputError
        The file cannot be written.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if not isinstance(module, torch.jit.ScriptModule):
        module = torch.jit.script(module.cpu().eval())
    try:
        torch.jit.save(module.cpu().eval(), str(tmp))
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write model ({exc})", target) from None


__all__ = [
    "RefreshedTrigger",
    "RepairConfig",
    "RepairResult",
    "ScanSummary",
    "TriggerEffect",
    "classifier_head",
    "find_head",
    "fine_tune",
    "neuron_drive",
    "prune_by_drive",
    "read_scan_report",
    "refresh_triggers",
    "repair_model",
    "save_repaired",
    "search_method",
    "trigger_from_attack",
    "triggers_to_remove",
]
