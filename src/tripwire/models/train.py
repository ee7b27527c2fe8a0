"""The reference trainer: seeded, CPU-friendly recipes that write contract-following models.

Recipe: SGD with Nesterov momentum, one-cycle learning rate, weight decay, and for images
random-crop augmentation (plus horizontal flips where asked: flips change the meaning
of some classes, traffic signs among them, so they are off by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tripwire import __version__
from tripwire.errors import InputError
from tripwire.io.dataset import Dataset
from tripwire.models.arch import ContractModule, auto_arch, build_model
from tripwire.progress import progress_enabled

#: Default epochs per architecture, measured to reach the accuracy targets in
#: docs/benchmarks.md; small datasets get more epochs (see :func:`default_epochs`).
DEFAULT_EPOCHS = {"cnn-small": 4, "cnn-compact": 18, "resnet-mini": 18, "mlp": 30}
#: Small datasets are trained for at least this many optimiser steps.
MIN_STEPS = 500


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (all have recipe defaults)."""

    arch: str = "auto"
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    augment: str = "auto"  # auto | none | crop | crop+flip
    val_fraction: float = 0.1
    seed: int = 0
    device: str | None = None
    threads: int | None = None


@dataclass
class TrainResult:
    """What :func:`train_model` returns: the trained module and how it did."""

    model: ContractModule
    arch: str
    epochs: int
    seed: int
    accuracy: float
    eval_split: str
    eval_samples: int
    train_samples: int
    train_accuracy: float
    train_time_s: float
    num_classes: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    device: str = "cpu"
    #: With ``record_margins``: ``(epochs, len(train))`` margins of each training item
    #: as the training pass saw it, ``z_label - max_{j != label} z_j`` (NaN for items
    #: held out for validation): the training dynamics that label-noise and
    #: backdoor-isolation scores read (see :mod:`tripwire.detectors.poisoning.dynamics`).
    margins: npt.NDArray[np.float32] | None = None


def default_epochs(arch: str, n_train: int, batch_size: int) -> int:
    """The recipe's epochs, raised so that small datasets get :data:`MIN_STEPS` steps."""
    steps_per_epoch = max(1, -(-n_train // batch_size))
    return max(DEFAULT_EPOCHS[arch], -(-MIN_STEPS // steps_per_epoch))


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (train, validation), stratified by label."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = round(len(idx) * fraction)
        if len(idx) > 1:
            val[idx[: max(1, k)]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def _augment(xb: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    if mode == "none" or xb.ndim != 4:
        return xb
    n, _, h, w = xb.shape
    pad = max(1, h // 8)
    padded = nn.functional.pad(xb, (pad, pad, pad, pad), mode="constant", value=0.0)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    # Gather crops with one indexing op instead of a Python loop over the batch.
    rows = (oy[:, None] + torch.arange(h)[None, :]).to(xb.device)
    cols = (ox[:, None] + torch.arange(w)[None, :]).to(xb.device)
    out = padded[
        torch.arange(n, device=xb.device)[:, None, None, None],
        torch.arange(xb.shape[1], device=xb.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    if "flip" in mode:
        flip = (torch.rand(n, generator=gen) < 0.5).to(xb.device)
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, device: str, batch_size: int = 512
) -> float:
    """Top-1 accuracy of ``model`` on float32 model-space inputs."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[s : s + batch_size]).to(device)
            pred = model(xb).argmax(1).cpu().numpy()
            correct += int((pred == y[s : s + batch_size]).sum())
    return correct / max(1, len(x))


def train_model(
    train: Dataset,
    config: TrainConfig | None = None,
    *,
    test: Dataset | None = None,
    show_progress: bool = True,
    record_margins: bool = False,
) -> TrainResult:
    """Train a reference model on ``train``; evaluate on ``test`` or a held-out split.

    Parameters
    ----------
    train
        Training data (any :class:`~tripwire.io.Dataset`).
    config
        Hyperparameters; recipe defaults when omitted.
    test
        Evaluation data. Without it, ``config.val_fraction`` of ``train`` is held out
        (stratified, seeded) and accuracy is reported on that validation split; with
        ``val_fraction`` 0, every item trains and the accuracy is the training data's.
    record_margins
        Keep every training item's margin in each epoch (``TrainResult.margins``): read
        from the training pass itself (augmented, dropout on), so it costs no extra
        forward pass.

    Raises
    ------
    InputError
        Data too small to train on, or test data that does not match the training data.
    """
    cfg = config or TrainConfig()
    if len(train) < 2 or len(np.unique(train.y)) < 2:
        raise InputError("training needs at least two samples of two classes", train.path)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")

    x_all = train.model_input()
    y_all = train.y
    if test is not None:
        if test.input_shape != train.input_shape:
            raise InputError(
                f"test samples have shape {test.input_shape}, training samples {train.input_shape}",
                test.path,
            )
        tr_idx = np.arange(len(train))
        x_ev, y_ev, eval_split = test.model_input(), test.y, "test"
    elif cfg.val_fraction <= 0.0:
        # Every item trains (a proxy whose per-item training dynamics are read): the
        # accuracy reported is then the training data's own.
        tr_idx = np.arange(len(train))
        x_ev, y_ev, eval_split = x_all, y_all, "train"
    else:
        tr_idx, ev_idx = stratified_holdout(y_all, cfg.val_fraction, cfg.seed)
        x_ev, y_ev, eval_split = x_all[ev_idx], y_all[ev_idx], "validation"
    x_tr, y_tr = x_all[tr_idx], y_all[tr_idx]
    n_classes = max(train.n_classes, int(y_all.max()) + 1)
    if test is not None:
        n_classes = max(n_classes, test.n_classes, int(test.y.max()) + 1)

    arch = auto_arch(train.input_shape) if cfg.arch == "auto" else cfg.arch
    try:
        model = build_model(arch, train.input_shape, n_classes)
    except ValueError as exc:
        raise InputError(str(exc), train.path) from None
    if arch == "mlp":
        xt = torch.from_numpy(x_tr)
        model.set_standardisation(xt.mean(0), xt.std(0))  # type: ignore[operator]
    model.to(device)
    epochs = cfg.epochs or default_epochs(arch, len(x_tr), cfg.batch_size)
    augment = cfg.augment
    if augment == "auto":
        augment = "crop" if train.is_image and min(train.input_shape[1:]) >= 16 else "none"

    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
    )
    steps_per_epoch = -(-len(x_tr) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr * 2, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )
    loss_fn = nn.CrossEntropyLoss()
    xt_all = torch.from_numpy(x_tr)
    yt_all = torch.from_numpy(y_tr)
    history: list[dict[str, float]] = []
    margins = np.full((epochs, len(train)), np.nan, dtype=np.float32) if record_margins else None
    tr_pos = torch.from_numpy(tr_idx)
    start = time.perf_counter()

    progress = None
    task = None
    if progress_enabled(show_progress):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]training[/] {task.fields[info]}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        progress.start()
        task = progress.add_task("train", total=epochs * steps_per_epoch, info="")
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(x_tr), generator=gen)
            total_loss, seen, correct = 0.0, 0, 0
            for s in range(0, len(x_tr), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                xb = _augment(xt_all[idx], augment, gen).to(device)
                yb = yt_all[idx].to(device)
                out = model(xb)
                loss = loss_fn(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if margins is not None:
                    margins[epoch, tr_pos[idx].numpy()] = _margins(out.detach(), yb).cpu().numpy()
                total_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                correct += int((out.argmax(1) == yb).sum())
                if progress is not None and task is not None:
                    progress.update(
                        task,
                        advance=1,
                        info=f"epoch {epoch + 1}/{epochs} loss {total_loss / seen:.3f}",
                    )
            history.append(
                {"epoch": epoch + 1, "loss": total_loss / seen, "train_accuracy": correct / seen}
            )
    finally:
        if progress is not None:
            progress.stop()
    train_time = time.perf_counter() - start
    acc = evaluate(model, x_ev, y_ev, device)
    history[-1][f"{eval_split}_accuracy"] = acc
    model.eval()
    return TrainResult(
        model=model.cpu(),
        arch=arch,
        epochs=epochs,
        seed=cfg.seed,
        accuracy=acc,
        eval_split=eval_split,
        eval_samples=len(x_ev),
        train_samples=len(x_tr),
        train_accuracy=history[-1]["train_accuracy"],
        train_time_s=train_time,
        num_classes=n_classes,
        history=history,
        device=device,
        margins=margins,
    )


def _margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` per row (negative: another class wins)."""
    own = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    return own - other


def metadata_path(model_path: str | Path) -> Path:
    """Where the metadata of a model file lives: ``model.pt`` -> ``model.meta.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".meta.json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(
    result: TrainResult, out: str | Path, train: Dataset, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Script the model to TorchScript at ``out`` and write its metadata beside it.

    Returns the metadata written.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(result.model.cpu().eval())
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        scripted.save(str(tmp))  # type: ignore[no-untyped-call]
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write model ({exc.strerror or exc})", target) from None
    meta: dict[str, Any] = {
        "format": "torchscript",
        "model_sha256": file_sha256(target),
        "arch": result.arch,
        "epochs": result.epochs,
        "seed": result.seed,
        "accuracy": round(result.accuracy, 6),
        "eval_split": result.eval_split,
        "eval_samples": result.eval_samples,
        "train_samples": result.train_samples,
        "train_accuracy": round(result.train_accuracy, 6),
        "train_time_s": round(result.train_time_s, 2),
        "input_shape": list(train.input_shape),
        "num_classes": result.num_classes,
        "classes": list(train.classes) if train.classes else None,
        "dataset": {
            "path": train.path,
            "split": train.split,
            "samples": len(train),
            "sha256": train.content_sha256(),
        },
        "exports": ["forward", "features", "forward_features"],
        "history": result.history,
        "device": result.device,
        "environment": {
            "tripwire": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
    }
    if extra:
        meta.update(extra)
    # Atomic like the model: a stopped run never leaves half a metadata file.
    meta_file = metadata_path(target)
    meta_tmp = meta_file.with_name(f".{meta_file.name}.tmp")
    meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(meta_tmp, meta_file)
    return meta


__all__ = [
    "DEFAULT_EPOCHS",
    "TrainConfig",
    "TrainResult",
    "default_epochs",
    "evaluate",
    "metadata_path",
    "save_model",
    "train_model",
]
